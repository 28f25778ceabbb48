/**
 * The hostile-input battery, launch family (issue 12): what a plugin can do
 * to the host between its spawn and its first call, and the confinement of
 * its processes (binary pinning, resource limits, the final kill, the
 * environment). Real host, real processes, real sockets.
 *
 * Most cases run a well-behaved neighbour ('echo', fixtures/unruly.ts) next
 * to fixtures/hostile-launch-plugin.ts, start the host, then make the hostile
 * plugin's next launch misbehave (its flag file) and restart it: the restart
 * must fail with the exact error, the hostile plugin must end up failed (not
 * in a retry loop) with no process left, and the neighbour must still serve.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { createHost, MemoryPeerDirectory, PlugwireError, type Host, type PluginConfig } from "../src/index.js";
import { resolvePluginConfig } from "../src/config.js";
import { BEFORE_HANDSHAKE_MSG } from "../src/launch/logs.js";
import { readLines, type Line } from "../src/launch/lines.js";
import { addressProblem } from "../src/handshake/address.js";
import { PassThrough } from "node:stream";
import { cgroupParent, resetCgroupDetection } from "../src/launch/limits.js";
import { alive, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const HOSTILE = fixture("hostile-launch-plugin");
const UNRULY = fixture("unruly");
const T = 60_000;
const FLOOD_LINES = 2 * 1024 * 1024; // as in the fixture
const text = new TextEncoder();

const scratch = mkdtempSync(join(tmpdir(), "pwhl-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

interface LogRecord {
  level: number;
  msg: string;
  plugin?: string;
  line?: string;
  truncated?: boolean;
  dropped?: number;
}

function recordingLogger(): { logger: pino.Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) records.push(JSON.parse(line) as LogRecord);
        done();
      },
    }),
  );
  return { logger, records };
}

interface Battery {
  th: TestHost;
  host: Host;
  records: LogRecord[];
  /** Created to make the hostile plugin's next launch misbehave. */
  flag: string;
  /** The hostile plugin's command line, as errors name it. */
  command: string;
  dir: string;
}

/** A host running the neighbour 'echo' and a 'hostile' plugin in `mode`; stops it and checks no process is left. */
async function withBattery(mode: string, extra: Partial<PluginConfig>, body: (b: Battery) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(scratch, `${mode}-`));
  const flag = join(dir, "flag");
  const { logger, records } = recordingLogger();
  const hostile = nodePlugin("hostile", HOSTILE, {
    args: [mode, "hl"],
    restart: "temporary",
    ...extra,
    env: { HOSTILE_FLAG: flag, HOSTILE_OUTSIDE: join(dir, "outside.sock"), HOSTILE_TARGET: "echo-1", ...extra.env },
  });
  const th = testHost([nodePlugin("echo", UNRULY, { args: ["steady", "nb"] }), hostile], { logger });
  try {
    await th.host.start();
    for (const s of th.host.status()) if (s.pid) th.pids.add(s.pid);
    await body({ th, host: th.host, records, flag, command: [hostile.command, ...hostile.args!].join(" "), dir });
  } finally {
    await th.close();
  }
}

function statusOf(host: Host, name: string) {
  const status = host.status().find((s) => s.name === name);
  assert.ok(status, `plugin ${name} exists`);
  return status;
}

/** The host is up and its neighbour serves: a dispatch to it is acked. */
async function neighbourServes(host: Host): Promise<void> {
  assert.equal(statusOf(host, "echo").state, "ready");
  const before = statusOf(host, "echo").lastAcked;
  await host.dispatch(peer(1), "nb.k", text.encode("still there?"));
  assert.equal(statusOf(host, "echo").lastAcked, before + 1);
}

/** Makes the hostile plugin's next launch misbehave and restarts it; returns the error the restart failed with. */
async function misbehavingRestart(b: Battery): Promise<PlugwireError> {
  writeFileSync(b.flag, "");
  const error = await b.host.restart("hostile").then(
    () => assert.fail("the restart of the misbehaving plugin succeeded"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof PlugwireError, `a PlugwireError, not ${String(error)}`);
  assert.equal(error.plugin, "hostile");
  const status = statusOf(b.host, "hostile");
  assert.equal(status.state, "failed", "quarantined, not retried");
  assert.equal(status.pid, undefined);
  assert.equal(status.lastError, error.message);
  return error;
}

const tail = (mode: string): string => `\nLast stderr lines:\n  hostile-launch: misbehaving as '${mode}'`;

async function metricValue(host: Host, name: string, labels: Record<string, string>): Promise<number> {
  const metric = host.metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name} exists`);
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}

/** Waits, bounded, until `done()` holds; `what` explains a timeout. */
async function until(done: () => Promise<boolean> | boolean, what: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; !(await done()); i++) {
    assert.ok(performance.now() < deadline && i < 100_000, `timed out: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The process state letter (Z: zombie), or undefined when there is no such process. */
function processState(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0];
  } catch {
    return alive(pid) ? "?" : undefined;
  }
}

function dead(pid: number): boolean {
  const state = processState(pid);
  return state === undefined || state === "Z";
}

const sha256sum = (file: string): string => execFileSync("sha256sum", [file], { encoding: "utf8" }).split(" ")[0]!;

describe("hostile launch: the handshake", () => {
  it("H-LAUNCH-01: a garbage handshake line -> handshake_failed naming the plugin, its line and what to print; neighbour serves", { timeout: T }, () =>
    withBattery("garbage", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      assert.equal(
        error.message,
        `plugin 'hostile' (command: ${b.command}) printed a bad handshake line: field 'this' is not key=value. ` +
          `Line: "PLUGWIRE_HANDSHAKE this is not right". ` +
          `Plugins must print 'PLUGWIRE_HANDSHAKE protocol=1 network=unix address=<socket> transport=grpc' (see docs/protocol.md).${tail("garbage")}`,
      );
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-02: binary junk and a handshake line with NUL/0xff bytes -> handshake_failed (control character); neighbour serves", { timeout: T }, () =>
    withBattery("binary", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      assert.ok(
        error.message.startsWith(`plugin 'hostile' (command: ${b.command}) printed a bad handshake line: the line contains a control character. Line: "PLUGWIRE_HANDSHAKE protocol=1 \\u0000`),
        error.message,
      );
      assert.ok(error.message.endsWith(tail("binary")), error.message);
      const junk = b.records.filter((r) => r.plugin === "hostile" && r.msg === BEFORE_HANDSHAKE_MSG);
      assert.equal(junk.length, 1, "the junk line is logged once, as a warning");
      assert.equal(junk[0]!.level, 40);
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-03: a 1 MiB line without a newline (the handshake at its end) -> kept to maxLogLineBytes, handshake_timeout; neighbour serves", { timeout: T }, () =>
    withBattery("long-line", { handshakeTimeoutMs: 4_000 }, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_timeout");
      assert.equal(
        error.message,
        `plugin 'hostile' (command: ${b.command}) did not print its handshake line within 4000 ms. ` +
          `A plugin must call serve() (or print the PLUGWIRE_HANDSHAKE line) soon after it starts; raise handshakeTimeoutMs if it is just slow.${tail("long-line")}`,
      );
      const long = b.records.filter((r) => r.plugin === "hostile" && r.msg === BEFORE_HANDSHAKE_MSG);
      assert.equal(long.length, 1, "one line, logged once");
      assert.equal(long[0]!.truncated, true);
      assert.equal(long[0]!.line, "x".repeat(16 * 1024), "cut at maxLogLineBytes (16 KiB)");
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-04: 2 MiB of newlines before the handshake -> rate-limited warnings, every line logged or counted, drops aggregated; the plugin starts", { timeout: T }, async () => {
    const RATE = 100;
    const t0 = performance.now();
    await withBattery("flood-before", { maxLogLinesPerSecond: RATE }, async (b) => {
      assert.equal(statusOf(b.host, "hostile").state, "ready");
      const warned = (): number => b.records.filter((r) => r.plugin === "hostile" && r.msg === BEFORE_HANDSHAKE_MSG).length;
      let dropped = 0;
      await until(
        async () => (dropped = await metricValue(b.host, "plugwire_log_lines_dropped_total", { plugin: "hostile" })) + warned() >= FLOOD_LINES,
        () => `${warned()} warned + ${dropped} dropped of ${FLOOD_LINES}`,
      );
      const elapsed = performance.now() - t0;
      assert.equal(dropped + warned(), FLOOD_LINES, "warned + dropped = printed");
      assert.ok(warned() <= RATE * (Math.floor(elapsed / 1000) + 1), `${warned()} warnings in ${Math.round(elapsed)} ms at ${RATE}/s`);
      const reports = b.records.filter((r) => r.plugin === "hostile" && r.msg.startsWith("plugin log flood: dropped "));
      assert.ok(reports.length >= 1 && reports.length <= Math.floor(elapsed / 1000) + 2, `${reports.length} drop reports: aggregated, not per line`);
      assert.equal(
        reports.reduce((n, r) => n + r.dropped!, 0),
        dropped,
        "the reports add up to the count",
      );
      await b.host.dispatch(peer(2), "hl.k", text.encode("hello"));
      await neighbourServes(b.host);
    });
  });

  it("H-LAUNCH-05: 2 MiB of newlines on stdout after the handshake -> rate-limited, every line forwarded or counted; neighbour serves meanwhile", { timeout: T }, async () => {
    const RATE = 100;
    await withBattery("steady", { maxLogLinesPerSecond: RATE }, async (b) => {
      let forwarded = 0;
      b.host.on("plugin:log", (e) => {
        if (e.plugin === "hostile" && e.stream === "stdout") forwarded++;
      });
      await b.host.dispatch(peer(2), "hl.flood", text.encode(""));
      await neighbourServes(b.host);
      let dropped = 0;
      await until(
        async () => (dropped = await metricValue(b.host, "plugwire_log_lines_dropped_total", { plugin: "hostile" })) + forwarded >= FLOOD_LINES,
        () => `${forwarded} forwarded + ${dropped} dropped of ${FLOOD_LINES}`,
      );
      assert.equal(forwarded + dropped, FLOOD_LINES);
      assert.ok(forwarded < FLOOD_LINES / 100, `${forwarded} forwarded`);
      assert.equal(statusOf(b.host, "hostile").state, "ready");
      await neighbourServes(b.host);
    });
  });

  it("H-LAUNCH-06: a config that sets the magic cookie (or any PLUGWIRE_* variable) -> invalid_config naming the plugin and key; nothing spawned", () => {
    for (const key of ["PLUGWIRE_MAGIC_COOKIE", "PLUGWIRE_SOCKET_DIR", "PLUGWIRE_INSTANCE_ID"]) {
      const plugin = nodePlugin("cookie", HOSTILE, { args: ["steady"], env: { [key]: "wrong" } });
      assert.throws(
        () => createHost({ plugins: [plugin], dataDir: scratch, ports: { peers: new MemoryPeerDirectory(), control: { sendDirect() {}, sendRouted: () => false }, identity: { signingSeed: () => new Uint8Array(32) } } }),
        (e: unknown) =>
          e instanceof PlugwireError &&
          e.code === "invalid_config" &&
          e.plugin === "cookie" &&
          e.message ===
            `plugin 'cookie': env may not set ${key}: the host sets the PLUGWIRE_* variables of each launch itself (docs/protocol.md §1); remove it from the plugin's env`,
      );
    }
  });
});

/** The message of a refused handshake address. */
function refusedAddress(b: Battery, problem: string): string {
  const expected = join(b.host.runDirectory!, "hostile-2.sock");
  return (
    `plugin 'hostile' (command: ${b.command}) announced an address the host will not dial: ${problem}. ` +
    `A plugin must listen on, and announce, exactly ${expected} (PLUGWIRE_SOCKET_DIR/PLUGWIRE_INSTANCE_ID.sock, docs/protocol.md §4), as the SDKs do; fix the plugin.`
  );
}

describe("hostile launch: the handshake address", () => {
  it("H-LAUNCH-07: an address outside the run dir -> handshake_failed before dialing, naming the address; neighbour serves", { timeout: T }, () =>
    withBattery("outside", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const outside = join(b.dir, "outside.sock");
      assert.equal(error.message, refusedAddress(b, `it announced ${outside}, which is outside the host's socket dir ${b.host.runDirectory}`) + tail("outside"));
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-08: the address of another plugin's socket -> handshake_failed blaming the announcer, naming the other plugin; it is never dialed", { timeout: T }, () =>
    withBattery("other", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const echo = join(b.host.runDirectory!, "echo-1.sock");
      assert.equal(error.message, refusedAddress(b, `it announced ${echo}, the socket of plugin 'echo' (launch echo-1), not its own`) + tail("other"));
      assert.doesNotMatch(error.message, /refused Describe/);
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-09: the host's own host.sock -> handshake_failed naming the plugin (not an UNIMPLEMENTED text); neighbour serves", { timeout: T }, () =>
    withBattery("host-sock", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const hostSock = join(b.host.runDirectory!, "host.sock");
      assert.equal(error.message, refusedAddress(b, `it announced ${hostSock}, the host's own socket (host.sock), as its address`) + tail("host-sock"));
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-10: a symlink (to another plugin's socket) in place of its socket -> handshake_failed, not dialed; neighbour serves", { timeout: T }, () =>
    withBattery("symlink", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const own = join(b.host.runDirectory!, "hostile-2.sock");
      const echo = join(b.host.runDirectory!, "echo-1.sock");
      assert.equal(error.message, refusedAddress(b, `${own} is a symbolic link (to ${echo}), not a socket; a plugin must listen on the path itself`) + tail("symlink"));
      assert.ok(!existsSync(own), "the host removed the launch's socket path");
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-11: a regular file in place of its socket -> handshake_failed (not a unix socket); neighbour serves", { timeout: T }, () =>
    withBattery("not-socket", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const own = join(b.host.runDirectory!, "hostile-2.sock");
      assert.equal(error.message, refusedAddress(b, `${own} is a regular file, not a unix socket`) + tail("not-socket"));
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-23: a hard link to another plugin's socket at its socket path -> handshake_failed (2 hard links), never dialed; neighbour serves", { timeout: T }, () =>
    withBattery("hardlink", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const own = join(b.host.runDirectory!, "hostile-2.sock");
      assert.equal(error.message, refusedAddress(b, `${own} has 2 hard links: it is another socket linked in place, not one the plugin bound`) + tail("hardlink"));
      assert.ok(existsSync(join(b.host.runDirectory!, "echo-1.sock")), "the neighbour's socket is untouched");
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-24: a handshake with no socket behind it -> handshake_failed (nothing exists at the path); neighbour serves", { timeout: T }, () =>
    withBattery("no-socket", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const own = join(b.host.runDirectory!, "hostile-2.sock");
      assert.equal(error.message, refusedAddress(b, `nothing exists at ${own}: a plugin must listen on its socket before it prints its handshake`) + tail("no-socket"));
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-25: a plugin that removes its socket and exits right after its handshake -> plugin_exited with its exit code (not an address error); neighbour serves", { timeout: T }, () =>
    withBattery("exit-unlink", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "plugin_exited");
      // Either the host saw the socket gone (and then the exit), or it dialed the socket before it went.
      const gone = `plugin 'hostile' (command: ${b.command}) exited with code 7 right after its handshake, before the host could dial it (its socket ${join(b.host.runDirectory!, "hostile-2.sock")} was already gone). Its stderr should say why.${tail("exit-unlink")}`;
      const dialed = `plugin 'hostile' (command: ${b.command}) exited with code 7 while starting, after its handshake (before it answered Describe: `;
      assert.ok(error.message === gone || error.message.startsWith(dialed), error.message);
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-22: its socket owned by another user -> handshake_failed naming both uids; neighbour serves", { timeout: T, skip: process.getuid?.() !== 0 && "the fixture must be root to chown its socket" }, () =>
    withBattery("foreign", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "handshake_failed");
      const own = join(b.host.runDirectory!, "hostile-2.sock");
      assert.equal(error.message, refusedAddress(b, `${own} is owned by uid 4242, not by the host's user (uid 0)`) + tail("foreign"));
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-12: a plugin that exits between its handshake and Describe -> plugin_exited with its exit code and the step; neighbour serves", { timeout: T }, () =>
    withBattery("exit-after", {}, async (b) => {
      const error = await misbehavingRestart(b);
      assert.equal(error.code, "plugin_exited");
      const prefix = `plugin 'hostile' (command: ${b.command}) exited with code 7 while starting, after its handshake (before it answered Describe: `;
      assert.ok(error.message.startsWith(prefix), error.message);
      assert.ok(error.message.endsWith(`). Its stderr should say why.${tail("exit-after")}`), error.message);
      await neighbourServes(b.host);
    }));
});

const pinCopies: string[] = [];
/** A copy of the fixture next to it (so that its imports resolve), to pin and then tamper with. */
function pinCopy(): string {
  const copy = join(dirname(HOSTILE), `hostile-launch-pin-${randomBytes(4).toString("hex")}.js`);
  pinCopies.push(copy);
  return copy;
}
after(() => {
  for (const copy of pinCopies) rmSync(copy, { force: true });
});

describe("hostile launch: binary pinning", () => {
  it("H-LAUNCH-13: sha256 that matches (command, and a script by sha256File) -> launched; a mismatch -> permission_denied naming file and both hashes, not retried", { timeout: T }, async () => {
    const script = pinCopy();
    writeFileSync(script, readFileSync(HOSTILE));
    const nodeHash = sha256sum(process.execPath);
    const scriptHash = sha256sum(script);
    const { logger } = recordingLogger();
    const th = testHost(
      [
        nodePlugin("echo", UNRULY, { args: ["steady", "nb"] }),
        { name: "pinned-bin", command: process.execPath, args: [script, "steady", "pb"], sha256: nodeHash },
        { name: "pinned-script", command: process.execPath, args: [script, "steady", "ps"], sha256File: script, sha256: scriptHash, restart: "permanent" },
      ],
      { logger },
    );
    try {
      await th.host.start();
      for (const s of th.host.status()) if (s.pid) th.pids.add(s.pid);
      await th.host.dispatch(peer(1), "ps.k", text.encode("pinned"));
      await th.host.dispatch(peer(1), "pb.k", text.encode("pinned"));
      // The script is replaced: the next launch is refused.
      writeFileSync(script, `${readFileSync(HOSTILE, "utf8")}\n// tampered\n`);
      const actual = sha256sum(script);
      const error = await th.host.restart("pinned-script").then(
        () => assert.fail("a tampered script was launched"),
        (e: unknown) => e as PlugwireError,
      );
      assert.equal(error.code, "permission_denied");
      assert.equal(error.plugin, "pinned-script");
      assert.equal(
        error.message,
        `plugin 'pinned-script' was not launched: the SHA-256 of ${script} (its sha256File) is ${actual}, but its config pins sha256 ${scriptHash}. ` +
          `The file changed since it was pinned. If the change is intended, set sha256 to ${actual} in the plugin's config; otherwise find out who replaced the file. ` +
          `The plugin stays failed (it is not retried) until it is restarted.`,
      );
      assert.equal(statusOf(th.host, "pinned-script").state, "failed");
      assert.equal(statusOf(th.host, "pinned-bin").state, "ready", "pinning node itself still matches");
      for (const s of th.host.status()) if (s.pid) th.pids.add(s.pid);
      await neighbourServes(th.host);
    } finally {
      await th.close();
    }
  });

  it("H-LAUNCH-14: a pinned plugin whose file changes while it runs -> its crash relaunch is refused once and it stays failed (no restart loop)", { timeout: T }, async () => {
    const script = pinCopy();
    writeFileSync(script, readFileSync(HOSTILE));
    const th = testHost([
      nodePlugin("echo", UNRULY, { args: ["steady", "nb"] }),
      { name: "pinned", command: process.execPath, args: [script, "steady", "pn"], sha256File: script, sha256: sha256sum(script), backoffInitialMs: 10 },
    ]);
    try {
      await th.host.start();
      for (const s of th.host.status()) if (s.pid) th.pids.add(s.pid);
      writeFileSync(script, "process.exit(0)\n");
      const failed = waitFor<{ plugin: string; state: string; reason?: string }>(th.host, "plugin:state", (e) => e.plugin === "pinned" && e.state === "failed");
      process.kill(statusOf(th.host, "pinned").pid!, "SIGKILL");
      const event = await failed;
      assert.match(event.reason!, /^plugin 'pinned' was not launched: the SHA-256 of .*hostile-launch-pin-[0-9a-f]+\.js \(its sha256File\) is [0-9a-f]{64}, but its config pins sha256 [0-9a-f]{64}\./);
      const status = statusOf(th.host, "pinned");
      assert.equal(status.restarts, 1, "one relaunch attempt, refused; no loop");
      assert.equal(status.lastError, event.reason);
      await neighbourServes(th.host);
    } finally {
      await th.close();
    }
  });
});

const cgroups = cgroupParent();
const noCgroup = cgroups ? false : "no cgroup can be created here (not Linux, not root, or no delegated cgroup)";

describe("hostile launch: resource limits", () => {
  it("H-LAUNCH-15: a plugin that allocates past limits.memoryMiB -> killed, reported as 'exceeded its memory limit (memoryMiB: 128)'; neighbour serves", { timeout: T, skip: noCgroup && `memory limit needs a cgroup: ${noCgroup}` }, () =>
    withBattery("steady", { limits: { memoryMiB: 128 } }, async (b) => {
      const exited = waitFor<{ plugin: string; signal: string | null }>(b.host, "plugin:exit", (e) => e.plugin === "hostile");
      void b.host.dispatch(peer(2), "hl.eat", text.encode("")).catch(() => undefined);
      const exit = await exited;
      assert.equal(exit.signal, "SIGKILL");
      const status = statusOf(b.host, "hostile");
      assert.equal(status.lastError, "exceeded its memory limit (memoryMiB: 128) and was killed by SIGKILL");
      assert.equal(status.lastExit, "exceeded its memory limit (memoryMiB: 128) and was killed by SIGKILL (crash)");
      assert.ok(
        b.records.some((r) => r.plugin === "hostile" && r.level === 50 && r.msg === "plugin 'hostile' exceeded its memory limit (memoryMiB: 128) and was killed by SIGKILL (crash)"),
        "the error log line names the limit",
      );
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-16: a plugin that spins past limits.cpuSeconds -> SIGXCPU, reported as 'exceeded its CPU-time limit (cpuSeconds: 1)'; neighbour serves", { timeout: T }, () =>
    withBattery("steady", { limits: { cpuSeconds: 1 } }, async (b) => {
      const exited = waitFor<{ plugin: string; signal: string | null }>(b.host, "plugin:exit", (e) => e.plugin === "hostile");
      void b.host.dispatch(peer(2), "hl.spin", text.encode("")).catch(() => undefined);
      const exit = await exited;
      assert.equal(exit.signal, "SIGXCPU");
      const status = statusOf(b.host, "hostile");
      assert.equal(status.lastError, "exceeded its CPU-time limit (cpuSeconds: 1) and was killed by SIGXCPU");
      await neighbourServes(b.host);
    }));

  it("H-LAUNCH-17: a plugin that opens files past limits.openFiles -> EMFILE crash, reported as 'exceeded its open-files limit (openFiles: 200)'; neighbour serves", { timeout: T }, () =>
    withBattery("steady", { limits: { openFiles: 200 } }, async (b) => {
      const exited = waitFor<{ plugin: string; code: number | null }>(b.host, "plugin:exit", (e) => e.plugin === "hostile");
      void b.host.dispatch(peer(2), "hl.open", text.encode("")).catch(() => undefined);
      const exit = await exited;
      assert.notEqual(exit.code, 0);
      const status = statusOf(b.host, "hostile");
      assert.equal(status.lastError, `exceeded its open-files limit (openFiles: 200) and exited with code ${exit.code}`);
      await neighbourServes(b.host);
    }));
});

describe("hostile launch: resource limits without a cgroup", () => {
  it("H-LAUNCH-21: memoryMiB without a cgroup -> RLIMIT_DATA; an allocating plugin aborts, reported as exceeding its memory limit (RLIMIT_DATA)", { timeout: T, skip: process.platform !== "linux" && "needs Linux" }, () =>
    withoutCgroups(() =>
      withBattery("steady", { limits: { memoryMiB: 256 } }, async (b) => {
        const exited = waitFor<{ plugin: string; signal: string | null; code: number | null }>(b.host, "plugin:exit", (e) => e.plugin === "hostile");
        void b.host.dispatch(peer(2), "hl.eat", text.encode("")).catch(() => undefined);
        const exit = await exited;
        const status = statusOf(b.host, "hostile");
        const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
        assert.equal(status.lastError, `exceeded its memory limit (memoryMiB: 256, enforced as RLIMIT_DATA: no cgroup was available) and ${how}`);
        await neighbourServes(b.host);
      }),
    ));
});

/** Runs `body` with cgroups off (the /proc fallback), then restores detection. */
async function withoutCgroups(body: () => Promise<void>): Promise<void> {
  const before = process.env.PLUGWIRE_NO_CGROUP;
  process.env.PLUGWIRE_NO_CGROUP = "1";
  resetCgroupDetection();
  try {
    assert.equal(cgroupParent(), null);
    await body();
  } finally {
    if (before === undefined) delete process.env.PLUGWIRE_NO_CGROUP;
    else process.env.PLUGWIRE_NO_CGROUP = before;
    resetCgroupDetection();
  }
}

async function setsidEscape(): Promise<void> {
  let grandchild = 0;
  await withBattery("setsid", {}, async (b) => {
    const pidFile = join(b.th.dataDir, "plugins", "hostile", "grandchild.pid");
    await until(() => existsSync(pidFile) && readFileSync(pidFile, "utf8") !== "", () => "the grandchild's pid file");
    grandchild = Number(readFileSync(pidFile, "utf8"));
    assert.ok(!dead(grandchild), "the grandchild runs");
    // It left the plugin's session and process group.
    const [pgid, sid] = readFileSync(`/proc/${grandchild}/stat`, "utf8").replace(/^.*\) /s, "").split(" ").slice(2, 4).map(Number);
    assert.equal(sid, grandchild);
    assert.equal(pgid, grandchild);
    await neighbourServes(b.host);
  });
  // withBattery stopped the host: no process of the launch may remain.
  await until(() => dead(grandchild), () => `the setsid grandchild ${grandchild} outlived host.stop() (state ${processState(grandchild)})`, 5_000);
}

describe("hostile launch: the final kill", () => {
  it("H-LAUNCH-18: a grandchild that calls setsid and sleeps -> killed with the launch (cgroup); none outlives host.stop()", { timeout: T, skip: noCgroup }, () => setsidEscape());

  it("H-LAUNCH-19: the same without cgroups -> killed by the /proc scan for its launch's PLUGWIRE_INSTANCE_ID", { timeout: T, skip: process.platform !== "linux" && "needs /proc" }, () =>
    withoutCgroups(() => setsidEscape()));
});

describe("hostile launch: the environment", () => {
  it("H-LAUNCH-20: a secret in the host's environment -> not passed to a plugin unless its config's env names it", { timeout: T }, async () => {
    const before = process.env.MY_SECRET;
    const secret = `s3cr3t-${randomBytes(6).toString("hex")}`;
    process.env.MY_SECRET = secret;
    const th = testHost([
      nodePlugin("plain", HOSTILE, { args: ["steady", "pl"] }),
      nodePlugin("granted", HOSTILE, { args: ["steady", "gr"], env: { MY_SECRET: process.env.MY_SECRET } }),
    ]);
    try {
      await th.host.start();
      for (const s of th.host.status()) if (s.pid) th.pids.add(s.pid);
      const envOf = (name: string): Record<string, string> => JSON.parse(readFileSync(join(th.dataDir, "plugins", name, "env.json"), "utf8"));
      assert.equal(envOf("plain").MY_SECRET, undefined, "the host's secret did not reach the plugin");
      assert.equal(envOf("granted").MY_SECRET, secret, "the allowlisted one did");
      // Nor can another plugin read it from the first one's /proc/<pid>/environ.
      const environ = readFileSync(`/proc/${statusOf(th.host, "plain").pid}/environ`, "latin1");
      assert.ok(!environ.includes(secret));
      await th.host.dispatch(peer(1), "pl.k", text.encode("x"));
    } finally {
      if (before === undefined) delete process.env.MY_SECRET;
      else process.env.MY_SECRET = before;
      await th.close();
    }
  });
});

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("launch internals (pure)", () => {
  const PREFIX = Buffer.from("PLUGWIRE_HANDSHAKE");
  const MAX = 40;

  async function split(data: Buffer, chunks: number[], skipping: boolean): Promise<{ lines: Line[]; skipped: number }> {
    const stream = new PassThrough();
    const lines: Line[] = [];
    let skipped = 0;
    const done = readLines(stream, {
      maxLineBytes: MAX,
      onLine: (line) => lines.push(line),
      skip: skipping ? { active: () => true, keepPrefix: () => PREFIX, onSkipped: (n) => (skipped += n) } : undefined,
    });
    let at = 0;
    for (const size of chunks) {
      stream.write(data.subarray(at, at + size));
      at += size;
    }
    stream.end(data.subarray(at));
    await done;
    return { lines, skipped };
  }

  it("readLines: every line is handed over or counted; lines with the handshake prefix are never skipped, whatever the chunking", async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const random = prng(seed);
      const kinds = ["", "a", "short line", "x".repeat(100), "PLUGWIRE_HANDSHAKE protocol=1", "PLUGWIRE_HANDSHAKEISH", "PLUGWIRE_HANDSHAKE " + "y".repeat(60), "\r"];
      const expected: string[] = [];
      for (let i = 0, n = Math.floor(random() * 40); i < n; i++) expected.push(kinds[Math.floor(random() * kinds.length)]!);
      const data = Buffer.from(expected.map((l) => `${l}\n`).join(""));
      const chunks: number[] = [];
      for (let left = data.length; left > 0; ) {
        const size = 1 + Math.floor(random() * 30);
        chunks.push(Math.min(size, left));
        left -= size;
      }
      const plain = await split(data, chunks, false);
      assert.deepEqual(
        plain.lines.map((l) => l.text),
        expected.map((l) => Buffer.from(l).subarray(0, MAX).toString().replace(/\r$/, "")),
        `seed ${seed}`,
      );
      assert.deepEqual(plain.lines.map((l) => l.truncated), expected.map((l) => Buffer.byteLength(l) > MAX), `seed ${seed}`);
      const skipping = await split(data, chunks, true);
      assert.equal(skipping.lines.length + skipping.skipped, expected.length, `seed ${seed}: handed over + skipped = lines`);
      const withPrefix = expected.filter((l) => l.startsWith("PLUGWIRE_HANDSHAKE")).map((l) => l.slice(0, MAX));
      assert.deepEqual(skipping.lines.filter((l) => l.startsWith(PREFIX)).map((l) => l.text), withPrefix, `seed ${seed}: prefix lines kept`);
    }
  });

  it("config: limits, sha256 and sha256File are checked, each error naming the plugin and the key", () => {
    const bad: Array<[Partial<PluginConfig>, string]> = [
      [{ limits: { memoryMiB: 0 } }, "limits.memoryMiB must be a whole number of at least 1, not 0"],
      [{ limits: { openFiles: 1.5 } }, "limits.openFiles must be a whole number of at least 1, not 1.5"],
      [{ limits: { swapMiB: 1 } as never }, "limits.swapMiB is not a limit (use memoryMiB, openFiles, cpuSeconds)"],
      [{ limits: 5 as never }, "limits must be a mapping of memoryMiB, openFiles, cpuSeconds, not 5"],
      [{ sha256: "abc" }, 'sha256 must be 64 hex digits (the SHA-256 of the file it pins, e.g. from `sha256sum FILE`), not "abc"'],
      [{ sha256File: "x.js" }, "sha256File names the file sha256 pins, so sha256 must be set too"],
    ];
    for (const [extra, message] of bad) {
      assert.throws(
        () => resolvePluginConfig({ name: "cfg", command: "node", ...extra }),
        (e: unknown) => e instanceof PlugwireError && e.code === "invalid_config" && e.plugin === "cfg" && e.message === `plugin 'cfg': ${message}`,
        message,
      );
    }
    assert.deepEqual(resolvePluginConfig({ name: "cfg", command: "node", limits: { cpuSeconds: 5 } }).limits, { cpuSeconds: 5 });
  });

  it("addressProblem: only the exact socket path passes; each other address is named for what it is", () => {
    const run = "/tmp/pw-abc123";
    const own = `${run}/p-2.sock`;
    const hs = (address: string, network: "unix" | "tcp" = "unix") => ({ protocolVersion: 1, network, address, transport: "grpc" as const });
    assert.equal(addressProblem(hs(own), run, own), undefined);
    assert.equal(addressProblem(hs(`${run}/./p-2.sock`), run, own), `it announced ${run}/./p-2.sock, which is its socket path written otherwise; announce the path exactly`);
    assert.equal(addressProblem(hs(`${run}/echo-1.sock`), run, own), `it announced ${run}/echo-1.sock, the socket of plugin 'echo' (launch echo-1), not its own`);
    assert.equal(addressProblem(hs(`${run}/host.sock`), run, own), `it announced ${run}/host.sock, the host's own socket (host.sock), as its address`);
    assert.equal(addressProblem(hs(`${run}/admin.sock`), run, own), `it announced ${run}/admin.sock, a file in the host's socket dir that is not its socket`);
    assert.equal(addressProblem(hs(`${run}/../pw-other/x-1.sock`), run, own), `it announced ${run}/../pw-other/x-1.sock, which is outside the host's socket dir ${run}`);
    assert.equal(
      addressProblem(hs("127.0.0.1:7000", "tcp"), run, own),
      "it announced network=tcp address=127.0.0.1:7000, but the host dials only the unix socket it assigned to the launch",
    );
  });
});
