/**
 * Launch and handshake, end to end with real processes: one fixture
 * (fixtures/misbehave.ts) re-run in a different mode per failure, plus the
 * example echo plugin run without a host. Every failing start must reject
 * with an exact code and a message that names the plugin and the command,
 * says what to do, and carries the stderr tail; and no process may be left.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { missingCookieMessage } from "@plugwire/proto";
import { PlugwireError, type ErrorCode, type HostOptions, type PluginConfig } from "../src/index.js";
import { assertGone, example, fixture, nodePlugin, peer, testHost, type TestHost } from "./helpers.js";

const MISBEHAVE = fixture("misbehave");
const TEST_TIMEOUT_MS = 30_000;

const scratch = mkdtempSync(join(tmpdir(), "pwh-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A marker arg unique to one test, to find its processes with ps. */
function newMarker(label: string): string {
  return `pwtest-${label}-${randomBytes(4).toString("hex")}`;
}

/** Lines of `ps` that belong to the given marker's plugin processes. */
function processesWith(marker: string, path: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile("ps", ["-ww", "-eo", "pid,args"], { timeout: 10_000 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout.split("\n").filter((line) => line.includes(marker) && line.includes(path)));
    });
  });
}

async function assertNoProcess(marker: string, path: string): Promise<void> {
  assert.deepEqual(await processesWith(marker, path), [], `processes left behind for ${marker}`);
}

/** The process state letter `ps` reports (Z for a zombie), or undefined when there is no such process. */
function processState(pid: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile("ps", ["-o", "stat=", "-p", String(pid)], { timeout: 10_000 }, (_error, stdout) => resolve(stdout.trim()[0]));
  });
}

/**
 * Waits until a plugin's grandchild is dead. The host SIGKILLs the group but
 * cannot wait for a process it did not spawn, and there is no event for
 * that: poll, bounded. A zombie counts as dead (only init can reap it).
 */
async function waitUntilKilled(pid: number, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const state = await processState(pid);
    if (state === undefined || state === "Z") return;
    if (performance.now() > deadline) assert.fail(`process ${pid} (a plugin's child) is still alive (state ${state})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A directory whose path is exactly `length` bytes, nested under `base`. */
function dirOfLength(base: string, length: number): string {
  let dir = base;
  while (dir.length < length) {
    const room = length - dir.length - 1; // one byte for the separator
    dir = join(dir, "d".repeat(Math.max(1, Math.min(room, 200))));
  }
  assert.equal(Buffer.byteLength(dir), length, "could not build a directory of the wanted length (is TMPDIR very long?)");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Stops the host and checks its pids are gone; removes its dirs even when that check fails. */
async function closeHost(th: TestHost, ...dirs: string[]): Promise<void> {
  try {
    await th.close();
  } finally {
    for (const dir of [th.dataDir, ...dirs]) rmSync(dir, { recursive: true, force: true });
  }
}

interface FailedStart {
  error: PlugwireError;
  /** The command line the error must name. */
  command: string;
  /** The pid the fixture recorded, if it got far enough to run. */
  pid: number | undefined;
}

/**
 * Starts a host with one plugin that must fail to start; checks that no
 * process of it is left (by pid and by ps) and cleans up.
 */
async function failingStart(
  plugin: PluginConfig,
  marker: string,
  hostOptions: Partial<HostOptions> = {},
  launched = true,
): Promise<FailedStart> {
  const dir = mkdtempSync(join(scratch, "run-"));
  const pidFile = join(dir, "pid");
  const config: PluginConfig = { ...plugin, env: { ...plugin.env, MISBEHAVE_PID_FILE: pidFile } };
  const th = testHost([config], hostOptions);
  try {
    const error = await th.host.start().then(
      () => assert.fail(`host.start() resolved, but plugin '${plugin.name}' should have failed to start`),
      (e: unknown) => e,
    );
    assert.ok(error instanceof PlugwireError, `expected a PlugwireError, got ${String(error)}`);
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8")) : undefined;
    if (pid !== undefined) th.pids.add(pid);
    // Checked right after start() rejects, before any teardown of ours.
    assertGone(th.pids);
    if (existsSync(`${pidFile}.child`)) await waitUntilKilled(Number(readFileSync(`${pidFile}.child`, "utf8")));
    const args = plugin.args ?? [];
    await assertNoProcess(marker, plugin.command === process.execPath ? args[0]! : plugin.command);
    assert.equal(th.host.status()[0]!.state, launched ? "failed" : "stopped");
    assert.equal(th.host.status()[0]!.pid, undefined);
    return { error, command: [plugin.command, ...args].join(" "), pid };
  } finally {
    await closeHost(th, dir);
  }
}

function assertFailure(error: PlugwireError, code: ErrorCode, plugin: string, command: string): void {
  assert.equal(error.code, code, `code of: ${error.message}`);
  assert.ok(error.message.startsWith(`plugin '${plugin}' (command: ${command})`), `should name the plugin and command: ${error.message}`);
}

describe("a plugin run without a host", () => {
  it("explains on stderr that it is a plugwire plugin and exits non-zero", { timeout: TEST_TIMEOUT_MS }, async () => {
    const echo = example("echo");
    // No PLUGWIRE_* variables at all: only what node needs.
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [echo], { env: { PATH: process.env.PATH ?? "" }, timeout: 20_000 }, (error, out, err) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout: out, stderr: err }),
      );
      child.stdin?.end();
    });
    assert.equal(code, 1);
    assert.equal(stdout, "", "no handshake, no output");
    assert.equal(stderr, missingCookieMessage("echo.js"));
    assert.match(stderr, /^This is a plugwire plugin \(echo\.js\); it is started by a plugwire host, not run directly\.\n/);
  });
});

describe("launch and handshake failures", () => {
  it("rejects a garbage handshake line with handshake_failed", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("garbage");
    const { error, command } = await failingStart(nodePlugin("garbler", MISBEHAVE, { args: ["garbage", marker] }), marker);
    assertFailure(error, "handshake_failed", "garbler", command);
    assert.equal(
      error.message,
      `plugin 'garbler' (command: ${command}) printed a bad handshake line: field 'this' is not key=value. ` +
        `Line: "PLUGWIRE_HANDSHAKE this is not right". ` +
        `Plugins must print 'PLUGWIRE_HANDSHAKE protocol=1 network=unix address=<socket> transport=grpc' (see docs/protocol.md).` +
        `\nLast stderr lines:\n  garbage: printing a broken handshake`,
    );
    assert.equal(error.plugin, "garbler");
  });

  it("rejects a handshake with an unsupported protocol version with protocol_mismatch", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("version");
    const { error, command } = await failingStart(nodePlugin("future", MISBEHAVE, { args: ["wrong-version", marker] }), marker);
    assertFailure(error, "protocol_mismatch", "future", command);
    assert.match(error.message, /printed a bad handshake line: protocol version 99 is not one the host accepts \(1\)\./);
    assert.match(error.message, /Plugins must print 'PLUGWIRE_HANDSHAKE protocol=1 /);
    assert.ok(error.message.endsWith("\nLast stderr lines:\n  wrong-version: speaking protocol 99"), error.message);
  });

  it("reports a plugin that exits before its handshake with plugin_exited and its stderr", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("exit");
    const { error, command, pid } = await failingStart(nodePlugin("quitter", MISBEHAVE, { args: ["exit-early", marker] }), marker);
    assertFailure(error, "plugin_exited", "quitter", command);
    assert.ok(pid !== undefined, "the fixture ran");
    assert.equal(
      error.message,
      `plugin 'quitter' (command: ${command}) exited with code 3 before its handshake. Its stderr should say why; ` +
        `also check the command, args and env in the plugin config.\nLast stderr lines:\n  boom: config missing`,
    );
  });

  it("reports a plugin that exits before its handshake but leaves a child holding its output", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("orphan");
    const { error, command } = await failingStart(
      nodePlugin("leaver", MISBEHAVE, { args: ["orphan", marker], handshakeTimeoutMs: 20_000 }),
      marker,
    );
    assertFailure(error, "plugin_exited", "leaver", command);
    assert.match(error.message, /\) exited with code 3 before its handshake\./);
    assert.ok(error.message.endsWith("\nLast stderr lines:\n  boom: leaving a child behind"), error.message);
  });

  it("times out a plugin that never handshakes and kills it", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("never");
    const started = performance.now();
    const { error, command } = await failingStart(
      nodePlugin("silent", MISBEHAVE, { args: ["never", marker], handshakeTimeoutMs: 500 }),
      marker,
    );
    assert.ok(performance.now() - started >= 500, "not before the timeout");
    assertFailure(error, "handshake_timeout", "silent", command);
    assert.equal(
      error.message,
      `plugin 'silent' (command: ${command}) did not print its handshake line within 500 ms. ` +
        `A plugin must call serve() (or print the PLUGWIRE_HANDSHAKE line) soon after it starts; ` +
        `raise handshakeTimeoutMs if it is just slow. It wrote nothing to stderr.`,
    );
  });

  it("rejects a command that does not exist, naming it", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("ghost");
    const command = "/nonexistent/plugin-binary";
    const { error, pid } = await failingStart({ name: "ghost", command, args: [marker] }, marker);
    assertFailure(error, "plugin_exited", "ghost", `${command} ${marker}`);
    assert.equal(pid, undefined);
    assert.match(error.message, /could not be started: .*ENOENT/);
    assert.match(error.message, /Check the command and its path in the plugin config\./);
  });

  it("rejects a run dir whose host socket path is too long", { timeout: TEST_TIMEOUT_MS }, async () => {
    const parent = dirOfLength(mkdtempSync(join(scratch, "long-")), 112);
    const marker = newMarker("longhost");
    const { error, pid } = await failingStart(nodePlugin("deep", MISBEHAVE, { args: ["noise", marker] }), marker, { runDirParent: parent }, false);
    assert.equal(error.code, "socket_path_too_long");
    assert.match(error.message, new RegExp(`^plugwire host: socket path ${parent}/pw-[^/]+/host\\.sock is 132 bytes, over the 103-byte unix socket limit\\. `));
    assert.match(error.message, /Set a shorter runDirParent \(or TMPDIR\)/);
    assert.equal(pid, undefined, "no plugin was launched");
    assert.deepEqual(readdirSync(parent), [], "the run dir was removed");
  });

  it("rejects a plugin whose socket path is too long before launching it", { timeout: TEST_TIMEOUT_MS }, async () => {
    // The host's own socket fits (80 + 20 = 100 bytes); the plugin's (123 bytes) does not.
    const parent = dirOfLength(mkdtempSync(join(scratch, "long-")), 80);
    const marker = newMarker("longplugin");
    const name = "a-plugin-with-a-long-name";
    const { error, command, pid } = await failingStart(nodePlugin(name, MISBEHAVE, { args: ["noise", marker] }), marker, {
      runDirParent: parent,
    });
    assertFailure(error, "socket_path_too_long", name, command);
    assert.match(error.message, new RegExp(`: socket path ${parent}/pw-[^/]+/${name}-1\\.sock is 123 bytes, over the 103-byte unix socket limit\\. `));
    assert.match(error.message, /Set a shorter runDirParent \(or TMPDIR\)/);
    assert.equal(error.plugin, name);
    assert.equal(pid, undefined, "the plugin was never launched");
    assert.deepEqual(readdirSync(parent), [], "the run dir was removed");
  });
});

describe("stdout noise before the handshake", () => {
  it("is logged, not fatal: the plugin becomes ready and handles payloads", { timeout: TEST_TIMEOUT_MS }, async () => {
    const logged: Array<{ level: number; msg: string; line?: string; plugin?: string }> = [];
    const logger = pino(
      { level: "warn" },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          for (const line of chunk.toString().split("\n").filter(Boolean)) logged.push(JSON.parse(line));
          done();
        },
      }),
    );
    const marker = newMarker("noise");
    const th = testHost([nodePlugin("noisy", MISBEHAVE, { args: ["noise", marker] })], { logger });
    try {
      await th.host.start();
      const [status] = th.host.status();
      assert.equal(status!.state, "ready");
      assert.ok(status!.pid !== undefined);
      th.pids.add(status!.pid!);
      assert.deepEqual(status!.kinds, ["noise.k"]);
      assert.equal(th.host.ownerOf("noise.k"), "noisy");
      await th.host.dispatch(peer(1), "noise.k", new TextEncoder().encode("hello"));
      assert.equal(th.host.status()[0]!.lastAcked, 1);
      const ignored = logged.filter((l) => l.msg === "plugin printed before its handshake line (ignored)");
      assert.deepEqual(
        ignored.map((l) => l.line),
        ["loading libfoo 1.2", "libbar: init ok", "", "PLUGWIRE_HANDSHAKEISH not a handshake"],
      );
      assert.ok(ignored.every((l) => l.plugin === "noisy"), "tagged with the plugin");
    } finally {
      await closeHost(th);
    }
    await assertNoProcess(marker, MISBEHAVE);
  });
});

describe("the socket dir (spec §4)", () => {
  it("works with a space in TMPDIR: the host puts its sockets under /tmp and says why", { timeout: TEST_TIMEOUT_MS }, async () => {
    const spacey = join(scratch, "with space");
    mkdirSync(spacey, { recursive: true });
    const logged: Array<{ msg: string; runDirParent?: string }> = [];
    const logger = pino(
      { level: "info" },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          logged.push(JSON.parse(chunk.toString()) as { msg: string });
          done();
        },
      }),
    );
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = spacey;
    let th: TestHost | undefined;
    try {
      th = testHost([nodePlugin("spaced", example("echo"), { capabilities: ["control"] })], { logger, dataDir: mkdtempSync(join(scratch, "data-")) });
      await th.host.start();
      assert.equal(th.host.status()[0]!.state, "ready");
      assert.match(th.host.runDirectory!, /^\/tmp\/pw-[^/ ]+$/);
      await th.host.dispatch(peer(1), "echo.ping", new TextEncoder().encode("hi"));
      const note = logged.find((l) => l.msg.startsWith("the OS temp dir"));
      assert.equal(note?.runDirParent, "/tmp");
      assert.match(note!.msg, /contains whitespace/);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      if (th) await closeHost(th);
    }
  });

  it("refuses a runDirParent with a space before launching anything", { timeout: TEST_TIMEOUT_MS }, async () => {
    const marker = newMarker("spacedparent");
    const parent = join(scratch, "run dir");
    const { error, pid } = await failingStart(nodePlugin("spaced", MISBEHAVE, { args: ["noise", marker] }), marker, { runDirParent: parent }, false);
    assert.equal(error.code, "invalid_config");
    assert.equal(
      error.message,
      `runDirParent ${JSON.stringify(parent)} cannot hold the host's socket dir: it contains whitespace or a control character, ` +
        `which cannot go in the handshake line. Set runDirParent to a short absolute path without spaces, such as /tmp (docs/protocol.md §4).`,
    );
    assert.equal(pid, undefined);
  });
});
