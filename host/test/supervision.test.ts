/**
 * Supervision end to end, with real processes: one fixture (fixtures/unruly.ts)
 * re-run with one misbehaviour per mode. Crashes, crash loops, hangs, ack
 * timeouts, the shutdown ladder, a host that dies, restart types, queue
 * overflow during a restart, log floods and the supervision metrics.
 *
 * Nothing here sleeps to let things happen: each test waits for the host's
 * events, with a bound. The only polls are for processes the host did not
 * spawn (a plugin's child, a dead host's plugins), which no event reports.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { pino, type Logger } from "pino";
import type { Host, HostEvents, PluginConfig, PluginStatus, PlugwireError } from "../src/index.js";
import { alive, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const UNRULY = fixture("unruly");
/** Generous: a loaded 2-core machine slows process starts a lot; the waits inside are bounded too. */
const TEST_TIMEOUT_MS = 60_000;
const text = new TextEncoder();

type ExitEvent = HostEvents["plugin:exit"][0];
type StateEvent = HostEvents["plugin:state"][0];
type RestartEvent = HostEvents["plugin:restart"][0];
type LogEvent = HostEvents["plugin:log"][0];

/** The unruly fixture in `mode`, its kinds prefixed with `prefix`. */
function unruly(name: string, mode: string, extra: Partial<PluginConfig> = {}, prefix = "unruly"): PluginConfig {
  return nodePlugin(name, UNRULY, { args: [mode, prefix], ...extra });
}

function statusOf(host: Host, name: string): PluginStatus {
  const status = host.status().find((s) => s.name === name);
  assert.ok(status, `no plugin named ${name}`);
  return status;
}

function pidOf(host: Host, name: string): number {
  const { pid } = statusOf(host, name);
  assert.ok(pid !== undefined, `${name} has a pid`);
  return pid;
}

/** Resolves once `name` is in `state` (at once if it already is); rejects after `timeoutMs`. */
function untilState(host: Host, name: string, state: StateEvent["state"], timeoutMs = 20_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error): void => {
      clearTimeout(timer);
      host.off("plugin:state", listener);
      if (error) reject(error);
      else resolve();
    };
    const listener = (e: StateEvent): void => {
      if (e.plugin === name && e.state === state) done();
    };
    const timer = setTimeout(() => done(new Error(`${name} did not become ${state} within ${timeoutMs} ms`)), timeoutMs);
    host.on("plugin:state", listener);
    if (statusOf(host, name).state === state) done();
  });
}

const stateIs = (plugin: string, state: StateEvent["state"]) => (e: StateEvent) => e.plugin === plugin && e.state === state;
const forPlugin = (plugin: string) => (e: { plugin: string }) => e.plugin === plugin;

/** How a dispatch ended: undefined when acked, else the error's code. */
interface Outcome {
  code: string | undefined;
  message: string;
  plugin?: string;
}
function outcome(p: Promise<void>): Promise<Outcome> {
  return p.then(
    () => ({ code: undefined, message: "" }),
    (e: PlugwireError) => ({ code: e.code ?? String(e), message: e.message, plugin: e.plugin }),
  );
}

/**
 * Whether a process is gone. A zombie counts as gone: a plugin's orphaned
 * child, or a dead host's plugins, are reparented to init, which may never
 * reap them here.
 */
function gone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z";
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw e;
  }
}

/** Polls (every 20 ms, bounded) until every pid is gone; returns how long it took. */
async function waitGone(pids: number[], timeoutMs: number, since = performance.now()): Promise<number> {
  for (;;) {
    const left = pids.filter((pid) => !gone(pid));
    const elapsed = performance.now() - since;
    if (left.length === 0) return elapsed;
    if (elapsed > timeoutMs) assert.fail(`processes ${left.join(", ")} still alive ${Math.round(elapsed)} ms later`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function metricValue(host: Host, name: string, labels: Record<string, string>): Promise<number> {
  const metric = host.metrics.registry.getSingleMetric(name);
  assert.ok(metric, `metric ${name} exists`);
  const { values } = await metric.get();
  return values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
}

/** A pino logger that keeps every record it writes. */
function recordingLogger(level = "info"): { logger: Logger; records: Array<{ level: number; msg: string; plugin?: string }> } {
  const records: Array<{ level: number; msg: string; plugin?: string }> = [];
  const logger = pino(
    { level },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) records.push(JSON.parse(line));
        done();
      },
    }),
  );
  return { logger, records };
}

async function withHost(plugins: PluginConfig[], body: (th: TestHost) => Promise<void>, options: Parameters<typeof testHost>[1] = {}): Promise<void> {
  const th = testHost(plugins, options);
  try {
    await th.host.start();
    await body(th);
  } finally {
    await th.close();
  }
}

describe("supervision", () => {
  it("restarts a plugin SIGKILLed during a stream of deliveries; every dispatch resolves", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost([unruly("steady", "steady")], async ({ host }) => {
      const TOTAL = 5_000;
      const CONCURRENCY = 64;
      const KILL_AFTER = 1_500;
      const pid = pidOf(host, "steady");
      const exited = waitFor<ExitEvent>(host, "plugin:exit", forPlugin("steady"));
      const restarted = waitFor<RestartEvent>(host, "plugin:restart", forPlugin("steady"));
      const readyAgain = waitFor<StateEvent>(host, "plugin:state", stateIs("steady", "ready"));
      let next = 0;
      let acked = 0;
      let killedAt = 0;
      const worker = async (): Promise<void> => {
        while (next < TOTAL) {
          const i = next++;
          await host.dispatch(peer(1), "unruly.k", text.encode(String(i)));
          if (++acked === KILL_AFTER) {
            killedAt = next;
            process.kill(pid, "SIGKILL");
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      assert.equal(acked, TOTAL);
      assert.ok(killedAt < TOTAL, "the kill came while payloads were still being dispatched");

      const exit = await exited;
      assert.equal(exit.pid, pid);
      assert.equal(exit.signal, "SIGKILL");
      assert.equal(exit.code, null);
      const restart = await restarted;
      assert.deepEqual(restart, { plugin: "steady", attempt: 1, delayMs: 0, restarts: 1 });
      await readyAgain;

      const status = statusOf(host, "steady");
      assert.equal(status.state, "ready");
      assert.equal(status.restarts, 1);
      assert.notEqual(status.pid, pid);
      assert.equal(alive(pid), false);
      assert.equal(status.lastAcked, TOTAL, "every payload got its seq and was acked once");
      assert.equal(status.queued + status.inFlight, 0);
      assert.equal(status.deadLetters, 0, "a single crash parks nothing");
      assert.match(status.lastExit ?? "", /^was killed by SIGKILL \((crash|stream-broken)\)$/);
    }));

  it("quarantines a crash-looping plugin as failed; its kinds answer plugin_failed until an operator restart", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost([unruly("loopy", "exit-at-once", { maxRestarts: 2, restartWindowMs: 60_000, backoffInitialMs: 10, backoffMaxMs: 50 })], async (th) => {
      const { host } = th;
      const flag = join(th.dataDir, "plugins", "loopy", "crash");
      writeFileSync(flag, "set by the test\n");
      const restarts: RestartEvent[] = [];
      // Each restart must follow an exit of its own: one failed relaunch, one restart.
      let exits = 0;
      const exitsBeforeRestart: number[] = [];
      host.on("plugin:exit", () => exits++);
      host.on("plugin:restart", (e) => {
        restarts.push(e);
        exitsBeforeRestart.push(exits);
      });
      const failed = waitFor<StateEvent>(host, "plugin:state", stateIs("loopy", "failed"));
      process.kill(pidOf(host, "loopy"), "SIGKILL");
      const event = await failed;

      assert.equal(event.previous, "restarting");
      assert.equal(event.reason, "crash loop: more than 2 restarts in 60000 ms; last: failed to relaunch");
      assert.deepEqual(
        restarts.map((r) => r.attempt),
        [1, 2],
        "two restarts are allowed in the window; the third is refused",
      );
      assert.deepEqual(exitsBeforeRestart, [1, 2], "restart n follows exit n");
      assert.equal(exits, 3, "the SIGKILL, then two relaunches that died in Start");
      const status = statusOf(host, "loopy");
      assert.equal(status.state, "failed");
      assert.equal(status.pid, undefined);
      assert.equal(status.restarts, 2);

      const error = await outcome(host.dispatch(peer(1), "unruly.k", text.encode("x")));
      assert.equal(error.code, "plugin_failed");
      assert.equal(
        error.message,
        "plugin 'loopy' has failed (crash loop: more than 2 restarts in 60000 ms; last: failed to relaunch), " +
          "so payload kind 'unruly.k' cannot be delivered. Fix the plugin and restart it with host.restart('loopy') or `plugwire restart loopy`." +
          "\nLast stderr lines:\n  unruly: the crash flag is set; exiting 1",
      );
      assert.equal(error.plugin, "loopy");
      // Still failed: no timer brings it back by itself.
      assert.equal((await outcome(host.dispatch(peer(1), "unruly.k", text.encode("y")))).code, "plugin_failed");

      unlinkSync(flag);
      const ready = waitFor<StateEvent>(host, "plugin:state", stateIs("loopy", "ready"));
      await host.restart("loopy");
      assert.equal((await ready).previous, "starting");
      assert.equal(statusOf(host, "loopy").state, "ready");
      await host.dispatch(peer(1), "unruly.k", text.encode("back"));
    }));

  it("fails host.start() with plugin_exited, naming the plugin and its stderr, when a plugin dies after its handshake", { timeout: TEST_TIMEOUT_MS }, async () => {
    const config = unruly("early", "exit-at-once");
    const th = testHost([config]);
    try {
      const dataDir = join(th.dataDir, "plugins", "early");
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(join(dataDir, "crash"), "");
      const exited = waitFor<ExitEvent>(th.host, "plugin:exit", forPlugin("early"));
      const error = await outcome(th.host.start());
      assert.equal(error.code, "plugin_exited");
      assert.equal(error.plugin, "early");
      const command = [config.command, ...config.args!].join(" ");
      const prefix = `plugin 'early' (command: ${command}) exited with code 1 while starting, after its handshake (`;
      assert.ok(error.message.startsWith(prefix), error.message);
      assert.match(error.message.slice(prefix.length), /^[^\n]+\)\. Its stderr should say why\.\n/);
      assert.ok(error.message.endsWith("\nLast stderr lines:\n  unruly: the crash flag is set; exiting 1"), error.message);
      const exit = await exited;
      assert.deepEqual([exit.code, exit.signal, exit.reason], [1, null, "launch-failed"]);
      th.pids.add(exit.pid);
      assert.equal(statusOf(th.host, "early").state, "failed");
    } finally {
      await th.close();
    }
  });

  it("kills and restarts a plugin whose health checks fail (reason 'hung'); a payload that hangs it twice is parked", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost(
      [unruly("hangs", "hang", { healthIntervalMs: 200, healthTimeoutMs: 200, healthFailures: 3, backoffInitialMs: 10, shutdownTimeoutMs: 500, killGraceMs: 500 })],
      async ({ host }) => {
        const pid = pidOf(host, "hangs");
        const exits: ExitEvent[] = [];
        host.on("plugin:exit", (e) => exits.push(e));
        const firstExit = waitFor<ExitEvent>(host, "plugin:exit", forPlugin("hangs"));
        const readyAgain = waitFor<StateEvent>(host, "plugin:state", stateIs("hangs", "ready"));
        const hanging = outcome(host.dispatch(peer(1), "unruly.hang", text.encode("spin")));

        const exit = await firstExit;
        assert.equal(exit.reason, "hung");
        assert.equal(exit.pid, pid);
        assert.equal(exit.signal, "SIGKILL");
        await readyAgain;
        assert.notEqual(statusOf(host, "hangs").pid, pid);
        assert.match(statusOf(host, "hangs").lastError ?? "", /^hung: 3 health checks failed in a row$/);

        // The payload is redelivered, hangs the next launch too, and is parked.
        const parked = await hanging;
        assert.equal(parked.code, "handler_failed");
        assert.match(parked.message, /crashed plugin 'hangs' twice and was moved to its dead letters/);
        await untilState(host, "hangs", "ready");
        assert.deepEqual(
          exits.map((e) => e.reason),
          ["hung", "hung"],
        );
        assert.equal(statusOf(host, "hangs").restarts, 2);
        assert.deepEqual(
          host.listDeadLetters("hangs").map((d) => d.kind),
          ["unruly.hang"],
        );
        await host.dispatch(peer(1), "unruly.k", text.encode("fine"));
      },
    ));

  it("counts a plugin that stops acking as hung after ackTimeoutMs, though its health checks pass", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost([unruly("stalls", "hang", { ackTimeoutMs: 300, healthIntervalMs: 100, backoffInitialMs: 10 })], async ({ host }) => {
      const pid = pidOf(host, "stalls");
      const exited = waitFor<ExitEvent>(host, "plugin:exit", forPlugin("stalls"));
      const readyAgain = waitFor<StateEvent>(host, "plugin:state", stateIs("stalls", "ready"));
      const stalled = outcome(host.dispatch(peer(1), "unruly.stall", text.encode("wait")));
      const exit = await exited;
      assert.equal(exit.reason, "hung");
      assert.equal(exit.pid, pid);
      assert.equal(exit.signal, "SIGKILL");
      await readyAgain;
      assert.match(statusOf(host, "stalls").lastError ?? "", /^hung: no ack for 300 ms with 1 payloads in flight$/);
      // Redelivered, it stalls the next launch as well, and is parked.
      assert.equal((await stalled).code, "handler_failed");
      await untilState(host, "stalls", "ready");
      await host.dispatch(peer(1), "unruly.k", text.encode("fine"));
    }));

  it("stop() takes a plugin that ignores Shutdown and SIGTERM down with SIGKILL, its child too", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { logger, records } = recordingLogger("warn");
    const th = testHost([unruly("stubborn", "ignore-sigterm", { shutdownTimeoutMs: 300, killGraceMs: 300 })], { logger });
    let pids: number[] = [];
    try {
      await th.host.start();
      const pid = pidOf(th.host, "stubborn");
      const child = Number(readFileSync(join(th.dataDir, "plugins", "stubborn", "child.pid"), "utf8"));
      pids = [pid, child];
      assert.ok(!gone(pid) && !gone(child), "the plugin and its child run");

      await th.host.stop();
      assert.ok(gone(pid), "the plugin is gone when stop() resolves");
      // The child is SIGKILLed with the group, but not ours to wait for: poll, bounded.
      await waitGone([child], 5_000);
      assert.equal(statusOf(th.host, "stubborn").state, "stopped");
      const ladder = records.filter((r) => r.plugin === "stubborn").map((r) => r.msg);
      assert.ok(ladder.includes("Shutdown RPC failed; escalating to SIGTERM"), ladder.join("\n"));
      assert.ok(ladder.includes("plugin ignored SIGTERM; sending SIGKILL to its process group"), ladder.join("\n"));
    } finally {
      for (const pid of pids) if (!gone(pid)) process.kill(pid, "SIGKILL");
      await th.close();
    }
  });

  it("a host killed with SIGKILL leaves no plugin behind: they exit on stdin EOF within 1 s", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const proc = spawn(process.execPath, [fixture("host-proc")], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    let info: { pids: number[]; runDir: string; dataDir: string } | undefined;
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("host-proc printed nothing within 20 s")), 20_000);
        createInterface({ input: proc.stdout! }).once("line", (l) => {
          clearTimeout(timer);
          resolve(l);
        });
        proc.once("exit", (code, signal) => reject(new Error(`host-proc exited (${code ?? signal}) before printing its plugins`)));
      });
      info = JSON.parse(line) as { pids: number[]; runDir: string; dataDir: string };
      assert.equal(info.pids.length, 2);
      for (const pid of info.pids) assert.ok(!gone(pid), `plugin ${pid} runs`);

      const killedAt = performance.now();
      proc.kill("SIGKILL");
      const took = await waitGone(info.pids, 1_000, killedAt);
      assert.ok(took <= 1_000, `plugins were gone ${Math.round(took)} ms after the host died`);
      t.diagnostic(`plugins gone ${Math.round(took)} ms after the host's SIGKILL`);
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
      for (const pid of info?.pids ?? []) if (!gone(pid)) process.kill(-pid, "SIGKILL");
      // SIGKILL leaves the run dir behind; the test removes it.
      if (info) for (const dir of [info.runDir, info.dataDir]) rmSync(dir, { recursive: true, force: true });
    }
  });

  it("restart types: permanent and transient restart after crashes, transient not after exit 0, temporary never", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost(
      [
        unruly("perm", "exit-clean", { restart: "permanent", backoffInitialMs: 10 }, "perm"),
        unruly("trans0", "exit-clean", { restart: "transient", backoffInitialMs: 10 }, "trans0"),
        unruly("trans3", "exit-dirty", { restart: "transient", backoffInitialMs: 10 }, "trans3"),
        unruly("temp", "exit-dirty", { restart: "temporary", backoffInitialMs: 10 }, "temp"),
      ],
      async ({ host }) => {
        const exits: ExitEvent[] = [];
        const states: StateEvent[] = [];
        host.on("plugin:exit", (e) => exits.push(e));
        host.on("plugin:state", (e) => states.push(e));
        const of = (plugin: string) => ({
          exits: exits.filter((e) => e.plugin === plugin).map((e) => `${e.code}/${e.signal}/${e.reason}`),
          states: states.filter((e) => e.plugin === plugin).map((e) => e.state),
        });

        const trans0Stopped = waitFor<StateEvent>(host, "plugin:state", stateIs("trans0", "stopped"));
        const tempStopped = waitFor<StateEvent>(host, "plugin:state", stateIs("temp", "stopped"));
        // Each exit payload exits the plugin; the ones after it are still pending then.
        const perm = outcome(host.dispatch(peer(1), "perm.exit0", text.encode("")));
        const trans3 = outcome(host.dispatch(peer(1), "trans3.exit3", text.encode("")));
        const trans0 = [outcome(host.dispatch(peer(1), "trans0.exit0", text.encode(""))), outcome(host.dispatch(peer(1), "trans0.k", text.encode("")))];
        const temp = [outcome(host.dispatch(peer(1), "temp.exit3", text.encode(""))), ...[1, 2, 3].map((i) => outcome(host.dispatch(peer(1), "temp.k", text.encode(String(i)))))];

        // transient, exit 0: stopped, not restarted; what was pending is rejected.
        assert.equal((await trans0Stopped).reason, "restart policy 'transient' does not restart after exit");
        for (const o of await Promise.all(trans0)) {
          assert.equal(o.code, "plugin_unavailable");
          assert.match(o.message, /for plugin 'trans0' was not acked: the plugin exited and its restart policy is 'transient'$/);
        }
        assert.deepEqual(of("trans0"), { exits: ["0/null/exit"], states: ["stopped"] });
        assert.equal(statusOf(host, "trans0").restarts, 0);
        const later = await outcome(host.dispatch(peer(1), "trans0.k", text.encode("")));
        assert.equal(later.code, "plugin_unavailable");
        assert.match(later.message, /^plugin 'trans0' is stopped, so payload kind 'trans0\.k' cannot be delivered/);

        // temporary, even after a crash: stopped; every pending payload rejected.
        assert.equal((await tempStopped).reason, "restart policy 'temporary' does not restart after crash");
        assert.deepEqual(
          (await Promise.all(temp)).map((o) => o.code),
          ["plugin_unavailable", "plugin_unavailable", "plugin_unavailable", "plugin_unavailable"],
        );
        assert.deepEqual(of("temp"), { exits: ["3/null/crash"], states: ["stopped"] });
        assert.equal(statusOf(host, "temp").restarts, 0);

        // permanent after exit 0, transient after exit 3: restarted. The exit
        // payload is redelivered, ends the next launch too, and is parked.
        for (const [name, result, exit] of [
          ["perm", perm, "0/null/exit"],
          ["trans3", trans3, "3/null/crash"],
        ] as const) {
          const o = await result;
          assert.equal(o.code, "handler_failed", `${name}: ${o.message}`);
          await untilState(host, name, "ready");
          assert.equal(statusOf(host, name).state, "ready");
          assert.deepEqual(of(name), { exits: [exit, exit], states: ["restarting", "ready", "restarting", "ready"] });
          assert.equal(statusOf(host, name).restarts, 2);
          await host.dispatch(peer(1), `${name}.k`, text.encode("alive"));
        }
      },
    ));

  describe("queue overflow while a plugin restarts", () => {
    /**
     * SIGKILLs the plugin and, in the same tick as its plugin:restart event
     * (the plugin is restarting, no stream is attached), dispatches `count`
     * payloads; returns the status then and how each dispatch ended.
     */
    async function floodDuringRestart(host: Host, name: string, count: number): Promise<{ status: PluginStatus; outcomes: Outcome[] }> {
      const pending: Array<Promise<Outcome>> = [];
      const status = new Promise<PluginStatus>((resolve) => {
        const listener = (e: RestartEvent): void => {
          if (e.plugin !== name) return;
          host.off("plugin:restart", listener);
          for (let i = 0; i < count; i++) pending.push(outcome(host.dispatch(peer(1), `${name}.k`, text.encode(String(i)))));
          resolve(statusOf(host, name));
        };
        host.on("plugin:restart", listener);
      });
      process.kill(pidOf(host, name), "SIGKILL");
      const seen = await Promise.race([
        status,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${name} did not restart within 20 s`)), 20_000).unref()),
      ]);
      return { status: seen, outcomes: await Promise.all(pending) };
    }

    it("'reject' refuses the dispatches past maxQueued with queue_full and delivers the rest", { timeout: TEST_TIMEOUT_MS }, () =>
      withHost([unruly("rej", "steady", { maxQueued: 10, overflow: "reject" }, "rej")], async ({ host }) => {
        const { status, outcomes } = await floodDuringRestart(host, "rej", 15);
        assert.equal(status.state, "restarting");
        assert.equal(status.queued, 10);
        assert.deepEqual(
          outcomes.map((o) => o.code),
          [...Array(10).fill(undefined), ...Array(5).fill("queue_full")],
        );
        assert.equal(
          outcomes[10]!.message,
          "plugin 'rej' has 10 payloads waiting (maxQueued 10); payload of kind 'rej.k' was rejected. Retry later, raise maxQueued, or use overflow: drop-oldest.",
        );
        assert.equal(await metricValue(host, "plugwire_queue_overflow_total", { plugin: "rej", policy: "reject" }), 5);
        assert.equal(statusOf(host, "rej").lastAcked, 10);
      }));

    it("'drop-oldest' rejects the oldest queued payloads with queue_full and delivers the newest", { timeout: TEST_TIMEOUT_MS }, () =>
      withHost([unruly("drop", "steady", { maxQueued: 10, overflow: "drop-oldest" }, "drop")], async ({ host }) => {
        const { status, outcomes } = await floodDuringRestart(host, "drop", 15);
        assert.equal(status.state, "restarting");
        assert.equal(status.queued, 10);
        assert.deepEqual(
          outcomes.map((o) => o.code),
          [...Array(5).fill("queue_full"), ...Array(10).fill(undefined)],
        );
        assert.equal(
          outcomes[0]!.message,
          "plugin 'drop' dropped a queued payload of kind 'drop.k' because its queue was full (overflow: drop-oldest)",
        );
        assert.equal(await metricValue(host, "plugwire_queue_overflow_total", { plugin: "drop", policy: "drop-oldest" }), 5);
        assert.equal(await metricValue(host, "plugwire_queue_overflow_total", { plugin: "drop", policy: "reject" }), 0);
        assert.equal(statusOf(host, "drop").lastAcked, 10);
      }));
  });

  it("rate-limits a log flood and truncates long lines; the host keeps delivering meanwhile", { timeout: TEST_TIMEOUT_MS }, async () => {
    const FLOOD_LINES = 100_000; // as in fixtures/unruly.ts
    const MAX_LINE = 1024;
    const RATE = 100;
    const t0 = performance.now();
    let events = 0;
    let floodEvents = 0;
    const th = testHost([unruly("flood", "flood", { maxLogLinesPerSecond: RATE, maxLogLineBytes: MAX_LINE, capabilities: ["control"] })]);
    th.host.on("plugin:log", (e) => {
      if (e.plugin !== "flood") return;
      events++;
      if (e.msg.startsWith("flood ")) floodEvents++;
    });
    const long = waitFor<LogEvent>(th.host, "plugin:log", (e) => e.plugin === "flood" && e.msg.startsWith("LONG:"));
    try {
      await th.host.start();
      await th.host.dispatch(peer(1), "unruly.flood", text.encode(""));
      const longLine = await long;
      assert.equal(longLine.msg, `LONG:${"x".repeat(MAX_LINE - 5)}`, "cut at maxLogLineBytes");
      assert.equal(longLine.stream, "stderr");

      // Keep dispatching while the plugin floods; each answer says how far it got.
      const progress: number[] = [];
      const deadline = performance.now() + 25_000;
      while (progress.at(-1) !== FLOOD_LINES) {
        assert.ok(performance.now() < deadline, `the flood did not finish; progress ${progress.slice(-5).join(", ")}`);
        await th.host.dispatch(peer(2), "unruly.k", text.encode(""));
        const frame = th.sent.at(-1)!.frame;
        assert.match(frame, /^flood:\d+$/);
        progress.push(Number(frame.slice("flood:".length)));
      }
      const during = progress.filter((n) => n > 0 && n < FLOOD_LINES);
      assert.ok(during.length > 0, `some dispatches resolved while the plugin flooded: ${progress.slice(0, 20).join(", ")}`);

      // Every flood line is either forwarded or dropped (and counted); wait, bounded, for the pipe to drain.
      const drainDeadline = performance.now() + 10_000;
      let dropped = 0;
      for (;;) {
        dropped = await metricValue(th.host, "plugwire_log_lines_dropped_total", { plugin: "flood" });
        if (dropped + floodEvents >= FLOOD_LINES) break;
        assert.ok(performance.now() < drainDeadline, `only ${floodEvents} forwarded + ${dropped} dropped of ${FLOOD_LINES} lines`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // The limiter's windows are 1 s apart at least, each forwarding at most RATE
      // lines; so in `elapsed` ms at most RATE * (floor(elapsed / 1000) + 1) events.
      const elapsed = performance.now() - t0;
      const bound = RATE * (Math.floor(elapsed / 1000) + 1);
      assert.ok(events <= bound, `${events} plugin:log events in ${Math.round(elapsed)} ms; bound ${bound}`);
      assert.ok(floodEvents > 0, "the flood was forwarded, up to the limit");
      assert.ok(floodEvents < FLOOD_LINES / 10, `${floodEvents} of ${FLOOD_LINES} flood lines forwarded`);
      assert.equal(dropped + floodEvents, FLOOD_LINES, "forwarded + dropped = written");
    } finally {
      await th.close();
    }
  });

  it("exports supervision metrics: restarts counted after a kill, the state gauge, deliveries and acks", { timeout: TEST_TIMEOUT_MS }, () =>
    withHost([unruly("metered", "steady")], async ({ host }) => {
      const labels = { plugin: "metered" };
      assert.equal(await metricValue(host, "plugwire_plugin_restarts_total", labels), 0);
      assert.equal(await metricValue(host, "plugwire_plugin_state", { plugin: "metered", state: "ready" }), 1);
      await Promise.all([1, 2, 3].map((i) => host.dispatch(peer(1), "unruly.k", text.encode(String(i)))));
      assert.equal(await metricValue(host, "plugwire_payloads_dispatched_total", labels), 3);
      assert.equal(await metricValue(host, "plugwire_payloads_acked_total", labels), 3);

      const restarting = waitFor<StateEvent>(host, "plugin:state", stateIs("metered", "restarting"));
      const ready = waitFor<StateEvent>(host, "plugin:state", stateIs("metered", "ready"));
      process.kill(pidOf(host, "metered"), "SIGKILL");
      await restarting;
      assert.equal(await metricValue(host, "plugwire_plugin_restarts_total", labels), 1);
      assert.equal(await metricValue(host, "plugwire_plugin_state", { plugin: "metered", state: "restarting" }), 1);
      assert.equal(await metricValue(host, "plugwire_plugin_state", { plugin: "metered", state: "ready" }), 0);
      await ready;
      assert.equal(await metricValue(host, "plugwire_plugin_state", { plugin: "metered", state: "ready" }), 1);
      const exposition = await host.metrics.registry.metrics();
      assert.match(exposition, /^plugwire_plugin_restarts_total\{plugin="metered"\} 1$/m);
    }));
});
