/**
 * Hostile-input battery, config family (issue 12): bad config files and
 * HostOptions, hostile Describe answers, oversized plugin texts, an
 * ErrorDetail naming another plugin, and shadowed kinds. Real processes: the
 * CLI through its bin, real plugins (host/test/fixtures/hostile-config-raw.ts
 * speaks the wire contract directly, so it can say what the SDK refuses to).
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { MAX_ERROR_TEXT_BYTES, MAX_PAYLOAD_KINDS, PlugwireError } from "@plugwire/proto";
import { definePlugin } from "@plugwire/sdk";
import { createHost, type HostEvents, type PluginConfig } from "../src/index.js";
import { FileSnapshotStore } from "../src/snapshot/store.js";
import { alive, assertGone, example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");
const RAW = fixture("hostile-config-raw");
const TIMEOUT_MS = 60_000;
const scratch = mkdtempSync(join(tmpdir(), "pwt-hcfg-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let files = 0;
function scratchFile(name: string, text?: string | Buffer): string {
  const path = join(scratch, `${++files}-${name}`);
  if (text !== undefined) writeFileSync(path, text);
  return path;
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI through its bin to completion. */
function plugwire(args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: scratch, timeout: 30_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** `plugwire run --config FILE` on a config text; it must fail at once, with exit 1 and one message. */
async function runRefused(text: string | Buffer): Promise<{ path: string; stderr: string }> {
  const path = scratchFile("plugwire.yaml", text);
  const result = await plugwire(["run", "--config", path]);
  assert.equal(result.code, 1, `plugwire run should fail: ${result.stdout}${result.stderr}`);
  assert.equal(result.stdout, "", "nothing was started, so nothing was logged");
  assert.ok(result.stderr.length < 4096, `a short message, not ${result.stderr.length} bytes`);
  return { path, stderr: result.stderr.replaceAll(path, "FILE") };
}

/** The error `createHost` throws for these plugins (a good neighbour listed first). */
function hostOptionError(bad: Record<string, unknown>): PlugwireError {
  try {
    createHost({
      plugins: [nodePlugin("good", example("echo")), { name: "bad", command: process.execPath, ...bad } as unknown as PluginConfig],
      dataDir: scratchFile("data"),
      ports: undefined as never,
      logger: pino({ level: "silent" }),
    });
  } catch (e) {
    assert.ok(e instanceof PlugwireError, `a PlugwireError, not ${String(e)}`);
    return e;
  }
  assert.fail("createHost accepted the config");
}

/** Writes the mode the file-driven hostile plugin describes itself by at its next launch. */
function modeFile(mode: string): string {
  return scratchFile("mode", `${mode}\n`);
}

/** The error a promise rejects with. */
async function rejection(p: Promise<unknown>): Promise<PlugwireError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PlugwireError, `a PlugwireError, not ${String(e)}`);
    return e;
  }
  assert.fail("it resolved");
}

/** The neighbour still serves: echo acks a payload and sends its pong. */
async function neighbourServes(th: TestHost): Promise<void> {
  const before = th.sent.length;
  await th.host.dispatch(peer(1), "echo.ping", Buffer.from("still-here"));
  assert.deepEqual(th.sent.slice(before).map((s) => s.frame), ["pong:still-here"]);
  assert.equal(th.host.status().find((s) => s.name === "echo")?.state, "ready");
}

/** A running host of echo plus the file-driven hostile plugin (well behaved at first). */
async function hostWithHostile(): Promise<{ th: TestHost; mode: string }> {
  const mode = modeFile("ok");
  const th = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] }), nodePlugin("hostile", RAW, { args: [`file:${mode}`], maxRestarts: 3 })]);
  await th.host.start();
  return { th, mode };
}

/**
 * The hostile plugin, restarted in `mode`, is refused at Describe with
 * plugin_refused naming it; it is failed, not restarted; the host and echo
 * serve on. Returns the error's message.
 */
async function refusedOnRestart(mode: string): Promise<string> {
  const { th, mode: file } = await hostWithHostile();
  try {
    writeFileSync(file, `${mode}\n`);
    const restarts: unknown[] = [];
    th.host.on("plugin:restart", (e) => restarts.push(e));
    const error = await rejection(th.host.restart("hostile"));
    assert.equal(error.code, "plugin_refused");
    assert.equal(error.plugin, "hostile");
    assert.equal(error.grpcStatus, 9, "FAILED_PRECONDITION");
    assert.ok(error.message.startsWith("plugin 'hostile' was refused: its Describe "), error.message);
    assert.ok(error.message.length < 2048, `a bounded message, not ${error.message.length} characters`);
    const status = th.host.status().find((s) => s.name === "hostile")!;
    assert.equal(status.state, "failed");
    assert.equal(status.pid, undefined, "the refused launch was killed");
    assert.equal(restarts.length, 0, "a refused plugin is not restarted");
    await neighbourServes(th);
    const dispatch = await rejection(th.host.dispatch(peer(1), "hostile.k", Buffer.from("x")));
    assert.equal(dispatch.code, "plugin_failed");
    return error.message;
  } finally {
    await th.close();
  }
}

describe("hostile config battery", () => {
  test("H-CFG-01: YAML `args: 5`, and HostOptions args 5 -> invalid_config at FILE:LINE:COL naming the plugin and the fix", { timeout: TIMEOUT_MS }, async () => {
    const { stderr } = await runRefused("plugins:\n  - name: a\n    command: node\n    args: 5\n");
    assert.equal(
      stderr,
      "plugwire: FILE:4:11: plugins[0].args (plugin 'a') must be a list, not 5; write [5] for a list of one\nEvery option is in plugwire --help and docs/configuration.md.\n",
    );
    const error = hostOptionError({ args: 5 });
    assert.equal(error.code, "invalid_config");
    assert.equal(error.plugin, "bad");
    assert.equal(error.message, `plugin 'bad': args must be a list of strings, not 5; for example args: ["server.js", "--port", "8080"]`);
    assert.equal(hostOptionError({ args: ["a", 5] }).message.includes("with a non-string entry"), true);
  });

  test("H-CFG-02: YAML `cwd: 5`, and HostOptions cwd 5 -> invalid_config naming the plugin, no TypeError", { timeout: TIMEOUT_MS }, async () => {
    const { stderr } = await runRefused("plugins:\n  - name: a\n    command: node\n    cwd: 5\n");
    assert.equal(stderr, "plugwire: FILE:4:10: plugins[0].cwd (plugin 'a') must be a string, not 5\nEvery option is in plugwire --help and docs/configuration.md.\n");
    const error = hostOptionError({ cwd: 5 });
    assert.equal(error.code, "invalid_config");
    assert.equal(error.message, "plugin 'bad': cwd must be a directory path (a non-empty string), not 5");
    assert.equal(hostOptionError({ env: { A: 1 } }).message, `plugin 'bad': env must be an object of strings (NAME: "value"), not an object with a non-string value`);
  });

  test("H-CFG-03: `capabilities: control` (a string) -> says to write a list, not \"unknown capability 'c'\"", { timeout: TIMEOUT_MS }, async () => {
    const { stderr } = await runRefused("plugins:\n  - name: a\n    command: node\n    capabilities: control\n");
    assert.equal(
      stderr,
      `plugwire: FILE:4:19: plugins[0].capabilities (plugin 'a') must be a list, not "control"; write [control] for a list of one\nEvery option is in plugwire --help and docs/configuration.md.\n`,
    );
    const error = hostOptionError({ capabilities: "control" });
    assert.equal(error.code, "invalid_config");
    assert.equal(error.message, `plugin 'bad': capabilities must be a list, not the string "control"; write capabilities: ["control"] (valid: peers, control, identity)`);
  });

  test("H-CFG-04: a 20 MB plugin config (HostOptions) and a 2 MiB one (YAML) -> refused up front naming the plugin, not a 16 MiB message error", { timeout: TIMEOUT_MS }, async () => {
    const error = hostOptionError({ config: { blob: "x".repeat(20_000_000) } });
    assert.equal(error.code, "invalid_config");
    assert.equal(error.plugin, "bad");
    assert.equal(
      error.message,
      "plugin 'bad': its config is 20000011 bytes as JSON; at most 1048576 (1 MiB) travel in Start (docs/protocol.md §13). Put bulk data in a file and pass its path in the config",
    );
    const { stderr } = await runRefused(`plugins:\n  - name: a\n    command: node\n    config:\n      blob: ${"y".repeat(2 * 1024 * 1024)}\n`);
    assert.equal(
      stderr,
      "plugwire: FILE:5:7: plugins[0].config: plugin 'a': its config is 2097163 bytes as JSON; at most 1048576 (1 MiB) travel in Start (docs/protocol.md §13). Put bulk data in a file and pass its path in the config\n",
    );
    // A config that cannot be JSON is refused too (it would throw in Start).
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.match(hostOptionError({ config: cyclic }).message, /^plugin 'bad': its config cannot be sent as JSON \(/);
  });

  test("H-CFG-05: a config file that is not YAML (broken YAML, binary, an alias bomb) -> FILE:LINE:COL or what it is, exit 1", { timeout: TIMEOUT_MS }, async () => {
    const broken = await runRefused("plugins:\n  - name: a\n    command: [node\n");
    assert.match(broken.stderr, /^plugwire: FILE is not valid YAML:\nFILE:\d+:\d+: /);
    const binary = await runRefused(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x00, 0x01, 0xff]));
    assert.equal(binary.stderr, "plugwire: FILE: is not a text file (a NUL byte at offset 4); pass the path of a YAML config file\n");
    const latin1 = await runRefused(Buffer.from("plugins:\n  - name: caf\xe9\n", "latin1"));
    assert.equal(latin1.stderr, "plugwire: FILE: is not a text file (it is not valid UTF-8); pass the path of a YAML config file\n");
    const laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"];
    for (const [n, p] of [["b", "a"], ["c", "b"], ["d", "c"], ["e", "d"]]) laughs.push(`${n}: &${n} [${Array(9).fill(`*${p}`).join(", ")}]`);
    const bomb = await runRefused(`${laughs.join("\n")}\nplugins: []\n`);
    assert.equal(bomb.stderr, "plugwire: FILE: cannot be read (Excessive alias count indicates a resource exhaustion attack); use fewer YAML aliases (*name)\n");
  });

  test("H-CFG-06: an empty config file (and one of blanks) -> 'is empty', with what it must hold", { timeout: TIMEOUT_MS }, async () => {
    for (const text of ["", "\n\n   \n"]) {
      const { stderr } = await runRefused(text);
      assert.equal(stderr, "plugwire: FILE: is empty; it must be a YAML mapping with a 'plugins' list (see plugwire --help and docs/configuration.md)\n");
    }
  });

  test("H-CFG-07: a 10 MB config file -> refused by its size before it is read or parsed", { timeout: TIMEOUT_MS }, async () => {
    const { stderr } = await runRefused(`plugins:\n  - name: a\n    command: node\n# ${"p".repeat(10_000_000)}\n`);
    assert.equal(
      stderr,
      "plugwire: FILE: is 10000042 bytes; a config file may be at most 4194304 bytes (4 MiB). Keep large plugin data in files of their own and pass their paths in the plugin's config\n",
    );
  });

  test("H-CFG-08: Describe returns a name that differs from the config -> accepted under its configured name, warned, shown as describedAs", { timeout: TIMEOUT_MS }, async () => {
    const { th, mode } = await hostWithHostile();
    try {
      writeFileSync(mode, "name-other echo\n");
      await th.host.restart("hostile");
      const status = th.host.status().find((s) => s.name === "hostile")!;
      assert.equal(status.state, "ready");
      assert.equal(status.describedAs, "echo");
      // It is routed and named by its configured name; echo is untouched.
      await th.host.dispatch(peer(1), "hostile.k", Buffer.from("x"));
      await neighbourServes(th);
      // An invalid Describe name (100 KiB of control characters) is refused, and the message stays short.
      writeFileSync(mode, "name-bad\n");
      const error = await rejection(th.host.restart("hostile"));
      assert.equal(error.code, "plugin_refused");
      assert.ok(error.message.length < 1024, `bounded, not ${error.message.length}`);
      assert.match(error.message, /its name "(\\u0007\\u0000){40}…" \(102400 characters\) is not 1-64 characters of \[A-Za-z0-9._-\]/);
      await neighbourServes(th);
    } finally {
      await th.close();
    }
  });

  test("H-CFG-09: Describe claims 10,000 kinds -> plugin_refused naming the plugin and the cap; not started, not restarted; neighbour serves", { timeout: TIMEOUT_MS }, async () => {
    const message = await refusedOnRestart("kinds-10000");
    assert.equal(
      message,
      `plugin 'hostile' was refused: its Describe breaks the protocol's limits: it claims 10000 payload kinds; at most ${MAX_PAYLOAD_KINDS} are allowed. ` +
        "It was not started. Fix the plugin's name, payload kinds or stateful surface (docs/protocol.md §7 and §13).",
    );
  });

  test("H-CFG-10: Describe lists a kind twice -> plugin_refused naming the kind", { timeout: TIMEOUT_MS }, async () => {
    const message = await refusedOnRestart("kinds-dup");
    assert.match(message, /: payload kind "hostile\.k" is listed twice\. It was not started\./);
  });

  test("H-CFG-11: Describe claims kinds with control characters -> plugin_refused, the kinds quoted safely", { timeout: TIMEOUT_MS }, async () => {
    const message = await refusedOnRestart("kinds-control");
    assert.match(message, /payload kind #1 "hostile\.\\u0000k" has a control character; payload kind #2 "hostile\\n\.k" has a control character\./);
    assert.doesNotMatch(message, /[\x00-\x09\x0b-\x1f]/, "no raw control character reaches the message");
  });

  test("H-CFG-12: Describe claims the empty kind \"\" -> plugin_refused", { timeout: TIMEOUT_MS }, async () => {
    const message = await refusedOnRestart("kind-empty");
    assert.match(message, /: payload kind #2 "" is empty\. It was not started\./);
  });

  test("H-CFG-13: Describe says protocol 4294967295 (handshake said 1) -> plugin_refused naming both versions", { timeout: TIMEOUT_MS }, async () => {
    const message = await refusedOnRestart("version-absurd");
    assert.equal(
      message,
      "plugin 'hostile' was refused: its Describe says protocol version 4294967295, but its handshake line said 1. It was not started. " +
        "Describe must return the version of the handshake line (docs/protocol.md §7); fix the plugin.",
    );
  });

  test("H-CFG-14: a bad Describe at first start fails host.start() with plugin_refused; after a crash it quarantines at once, no restart loop", { timeout: TIMEOUT_MS }, async () => {
    const first = testHost([nodePlugin("echo", example("echo")), nodePlugin("hostile", RAW, { args: ["kind-empty"] })]);
    try {
      const error = await rejection(first.host.start());
      assert.equal(error.code, "plugin_refused");
      assert.equal(error.plugin, "hostile");
    } finally {
      await first.close();
    }
    // Well described at first; after its crash every relaunch is refused.
    const marker = scratchFile("launched");
    const th = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] }), nodePlugin("hostile", RAW, { args: ["refuse-on-relaunch", marker], backoffInitialMs: 1 })]);
    try {
      await th.host.start();
      const failed = waitFor<HostEvents["plugin:state"][0]>(th.host, "plugin:state", (e) => e.plugin === "hostile" && e.state === "failed");
      const crash = th.host.dispatch(peer(1), "hostile.k", Buffer.from("x"));
      crash.catch(() => undefined);
      const event = await failed;
      assert.match(event.reason ?? "", /^plugin 'hostile' was refused: its Describe breaks the protocol's limits: payload kind #1 "" is empty/);
      const status = th.host.status().find((s) => s.name === "hostile")!;
      assert.equal(status.restarts, 1, "one relaunch, refused, then quarantined");
      assert.equal(status.state, "failed");
      await rejection(crash);
      await neighbourServes(th);
    } finally {
      await th.close();
    }
  });

  test("H-CFG-15: a handler error text of 8 MiB -> cut to 4 KiB with a '…(truncated, N bytes)' marker; neighbour serves", { timeout: TIMEOUT_MS }, async () => {
    const { th } = await hostWithHostile();
    try {
      const error = await rejection(th.host.dispatch(peer(1), "hostile.k", Buffer.from("fail-big")));
      assert.equal(error.code, "handler_failed");
      assert.equal(error.plugin, "hostile");
      assert.ok(error.message.length < MAX_ERROR_TEXT_BYTES + 512, `cut, not ${error.message.length} characters`);
      assert.match(error.message, /: Ee+…\(truncated, 8388608 bytes\)$/);
      await th.host.dispatch(peer(1), "hostile.k", Buffer.from("fine"));
      await neighbourServes(th);
    } finally {
      await th.close();
    }
  });

  test("H-CFG-16: a 5 MiB log line -> forwarded cut to maxLogLineBytes (16 KiB), marked truncated", { timeout: TIMEOUT_MS }, async () => {
    const { th } = await hostWithHostile();
    try {
      const line = waitFor<HostEvents["plugin:log"][0]>(th.host, "plugin:log", (e) => e.plugin === "hostile" && e.msg.startsWith("LLL"));
      await th.host.dispatch(peer(1), "hostile.k", Buffer.from("log-big"));
      const event = await line;
      assert.equal(event.truncated, true);
      assert.ok(Buffer.byteLength(event.msg) <= 16 * 1024, `at most 16 KiB, not ${event.msg.length}`);
      await neighbourServes(th);
    } finally {
      await th.close();
    }
  });

  test("H-CFG-17: an ErrorDetail naming another plugin (counter) with 6 KB details -> reported as the sender's, claim kept apart, counter's snapshot intact", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([nodePlugin("counter", example("counter")), nodePlugin("hostile", RAW, { args: ["detail-other", "counter"] })]);
    try {
      await th.host.start();
      await th.host.dispatch(peer(1), "counter.hit", Buffer.from("one"));
      const saved = await th.host.snapshot("counter");
      const error = await rejection(th.host.snapshot("hostile"));
      assert.equal(error.code, "snapshot_failed");
      assert.equal(error.plugin, "hostile");
      assert.equal(error.detail?.plugin, "hostile", "the detail names the plugin that sent it");
      assert.equal(error.claimedPlugin, "counter");
      assert.ok(error.message.length < MAX_ERROR_TEXT_BYTES + 512, `status details cut, not ${error.message.length}`);
      assert.ok(
        error.message.startsWith(
          "plugin 'hostile' sent an error whose detail names plugin 'counter', another plugin of this host; it is 'hostile's error: plugin 'counter' failed to snapshot its state: Dddd",
        ),
        error.message.slice(0, 300),
      );
      const details = error.detail?.kind.case === "snapshotFailed" ? error.detail.kind.value.details : "";
      assert.match(details, /^Dd+…\(truncated, 6001 bytes\)$/);
      const counter = th.host.status().find((s) => s.name === "counter")!;
      assert.equal(counter.state, "ready");
      assert.equal(counter.lastError, undefined, "counter is not blamed");
      const stored = await new FileSnapshotStore({ dir: join(th.dataDir, "snapshots") }).load("example.counter", "counter");
      assert.equal(stored?.appliedSeq, saved?.appliedSeq);
      assert.deepEqual(stored?.bytes, saved?.bytes);
      await th.host.dispatch(peer(1), "counter.hit", Buffer.from("two"));
    } finally {
      await th.close();
    }
  });

  test("H-CFG-23: an SDK plugin whose Snapshot throws an 8 MiB error, whose handler an 8 MiB one -> cut at the source (4 KiB), typed errors naming it; neighbour serves", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] }), nodePlugin("big", fixture("hostile-config-sdk"))]);
    try {
      await th.host.start();
      const error = await rejection(th.host.snapshot("big"));
      assert.equal(error.code, "snapshot_failed");
      assert.equal(error.plugin, "big");
      assert.equal(error.claimedPlugin, undefined);
      assert.ok(Buffer.byteLength(error.message) <= MAX_ERROR_TEXT_BYTES, `cut at the source, not ${error.message.length}`);
      assert.match(error.message, /…\(truncated, \d+ bytes\)$/);
      const details = error.detail?.kind.case === "snapshotFailed" ? error.detail.kind.value.details : "";
      assert.match(details, /^Ss+…\(truncated, 8388609 bytes\)$/);
      const handler = await rejection(th.host.dispatch(peer(1), "big.k", Buffer.from("x")));
      assert.equal(handler.code, "handler_failed");
      assert.equal(handler.plugin, "big");
      assert.match(handler.message, /Hh+…\(truncated, 8388609 bytes\)$/);
      assert.equal(th.host.status().find((s) => s.name === "big")?.state, "ready");
      await neighbourServes(th);
    } finally {
      await th.close();
    }
  });

  test("H-CFG-18: a later plugin claims a kind an earlier one owns -> routed to the first, kind:shadowed event, shadowedKinds in status", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([
      nodePlugin("echo", example("echo"), { capabilities: ["control"] }),
      nodePlugin("late", RAW, { args: ["ok", "echo.ping,late.k"] }),
    ]);
    const events: Array<HostEvents["kind:shadowed"][0]> = [];
    th.host.on("kind:shadowed", (e) => events.push(e));
    try {
      await th.host.start();
      assert.deepEqual(events, [{ kind: "echo.ping", plugin: "late", owner: "echo" }]);
      assert.equal(th.host.ownerOf("echo.ping"), "echo");
      assert.equal(th.host.ownerOf("late.k"), "late");
      const status = th.host.status();
      assert.deepEqual(status.find((s) => s.name === "late")?.shadowedKinds, [{ kind: "echo.ping", owner: "echo" }]);
      assert.deepEqual(status.find((s) => s.name === "echo")?.shadowedKinds, []);
      await neighbourServes(th);
      await th.host.dispatch(peer(1), "late.k", Buffer.from("x"));
    } finally {
      await th.close();
    }
  });

  test("H-CFG-19: shadowed kinds show in `plugwire status` (text and --json) of a running `plugwire run`", { timeout: TIMEOUT_MS }, async () => {
    const dir = mkdtempSync(join(scratch, "run-"));
    const config = join(dir, "plugwire.yaml");
    writeFileSync(
      config,
      `dataDir: ${join(dir, "data")}\nplugins:\n` +
        `  - name: first\n    command: ${process.execPath}\n    args: [${RAW}, ok, "shared.k,first.k"]\n` +
        `  - name: second\n    command: ${process.execPath}\n    args: [${RAW}, ok, "shared.k,second.k"]\n`,
    );
    const host = spawn(process.execPath, [BIN, "run", "--config", config], { cwd: dir, stdio: ["ignore", "pipe", "inherit"] });
    let pids: number[] = [];
    try {
      const records = await logsUntil(host, (r) => r.msg === "admin API listening; try 'plugwire status'");
      const warning = records.find((r) => r.plugin === "second" && Array.isArray(r.shadowedKinds))!;
      assert.equal(
        warning.msg,
        "plugin 'second' claims 1 payload kind(s) that plugins listed before it already claim: 'shared.k' (owned by 'first'). " +
          "Those payloads go to the earlier plugin (first claim wins); remove the claims, reorder the plugins, or set strictKinds to make this an error",
      );
      const json = await plugwire(["status", "--json", "-c", config]);
      assert.equal(json.code, 0, json.stderr);
      const plugins = JSON.parse(json.stdout) as Array<{ name: string; pid: number; shadowedKinds: unknown }>;
      pids = plugins.map((p) => p.pid);
      assert.deepEqual(
        plugins.map((p) => [p.name, p.shadowedKinds]),
        [
          ["first", []],
          ["second", [{ kind: "shared.k", owner: "first" }]],
        ],
      );
      const text = await plugwire(["status", "-c", config]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /\nshadowed: second claims 'shared\.k' \(owned by first\); those payloads go to the earlier plugin\n$/);
    } finally {
      host.kill("SIGTERM");
      await exited(host);
      assertGone(pids.filter((p) => p > 0));
    }
  });

  test("H-CFG-20: strictKinds on, two plugins claim one kind -> the later is refused, naming both plugins and the kind; YAML strictKinds works the same", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([nodePlugin("echo", example("echo")), nodePlugin("late", RAW, { args: ["ok", "late.k,echo.ping"] })], { strictKinds: true });
    try {
      const error = await rejection(th.host.start());
      assert.equal(error.code, "plugin_refused");
      assert.equal(error.plugin, "late");
      assert.equal(
        error.message,
        "plugin 'late' claims payload kind 'echo.ping', which plugin 'echo' (listed before it) already claims. strictKinds is on, so 'late' is refused. " +
          "Remove the kind from one of the two plugins, or turn strictKinds off to let the first listed win.",
      );
    } finally {
      await th.close();
    }
    const dir = mkdtempSync(join(scratch, "strict-"));
    const config = join(dir, "plugwire.yaml");
    writeFileSync(
      config,
      `dataDir: ${join(dir, "data")}\nstrictKinds: true\nplugins:\n` +
        `  - name: first\n    command: ${process.execPath}\n    args: [${RAW}, ok, "shared.k"]\n` +
        `  - name: second\n    command: ${process.execPath}\n    args: [${RAW}, ok, "shared.k"]\n`,
    );
    const result = await plugwire(["run", "--config", config]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /plugin 'second' claims payload kind 'shared\.k', which plugin 'first' \(listed before it\) already claims\. strictKinds is on/);
    const typo = await runRefused("strictKinds: yes please\nplugins:\n  - name: a\n    command: node\n");
    assert.match(typo.stderr, /^plugwire: FILE:1:14: strictKinds must be true or false, not "yes please"/);
  });

  test("H-CFG-21: the SDK refuses to serve a definition the host would refuse (10,000 kinds, a duplicate, a control character, \"\")", () => {
    const base = { name: "sdk", handlePayload() {} };
    const refused = (payloadKinds: string[]): string => {
      try {
        definePlugin({ ...base, payloadKinds });
      } catch (e) {
        return (e as Error).message;
      }
      assert.fail("definePlugin accepted it");
    };
    assert.equal(
      refused(Array.from({ length: 10_000 }, (_, i) => `k${i}`)),
      `plugin 'sdk' would be refused by the host: it claims 10000 payload kinds; at most ${MAX_PAYLOAD_KINDS} are allowed (docs/protocol.md §13)`,
    );
    assert.equal(refused(["a", "a"]), `plugin 'sdk' would be refused by the host: payload kind "a" is listed twice (docs/protocol.md §13)`);
    assert.equal(refused(["a\u0001"]), `plugin 'sdk' would be refused by the host: payload kind #1 "a\\u0001" has a control character (docs/protocol.md §13)`);
    assert.equal(refused([""]), `plugin 'sdk' would be refused by the host: payload kind #1 "" is empty (docs/protocol.md §13)`);
    assert.deepEqual(definePlugin({ ...base, payloadKinds: ["ok.kind"] }).payloadKinds, ["ok.kind"]);
  });

  test("H-CFG-22: bad host-wide HostOptions (dataDir 5, maxConcurrentLaunches 0, strictKinds \"yes\", plugins not a list) -> invalid_config naming the option", () => {
    const make = (extra: Record<string, unknown>): string => {
      try {
        createHost({ plugins: [nodePlugin("good", example("echo"))], dataDir: scratchFile("d"), ports: undefined as never, logger: pino({ level: "silent" }), ...extra });
      } catch (e) {
        assert.ok(e instanceof PlugwireError);
        assert.equal(e.code, "invalid_config");
        return e.message;
      }
      assert.fail("accepted");
    };
    assert.equal(make({ dataDir: 5 }), "host option dataDir must be a directory path (a non-empty string), not 5");
    assert.equal(make({ maxConcurrentLaunches: 0 }), "host option maxConcurrentLaunches must be a whole number, at least 1, not 0");
    assert.equal(make({ strictKinds: "yes" }), `host option strictKinds must be true or false, not "yes" (a string)`);
    assert.equal(make({ plugins: { name: "x" } }), "host option plugins must be a list of plugin configs, not an object");
  });
});

/** Resolves with every JSON log line on the child's stdout up to the first that matches. */
function logsUntil(child: ChildProcess, match: (r: Record<string, unknown>) => boolean, timeoutMs = 30_000): Promise<Array<Record<string, unknown>>> {
  const seen: Array<Record<string, unknown>> = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => {
      lines.close();
      reject(new Error(`no matching log line within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      lines.close();
    };
    lines.on("line", (line) => {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      seen.push(record);
      if (!match(record)) return;
      done();
      resolve(seen);
    });
    child.once("exit", (code) => {
      done();
      reject(new Error(`plugwire run exited (${code}) first`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

void alive;
void readFileSync;
