/**
 * Lifecycle operations end to end, with real processes:
 * - restarts asked for at once (library and admin API) leave exactly one
 *   plugin process, and none after stop; a stop wins over restarts asked for
 *   before it;
 * - host.stop() ends within stopTimeoutMs even when a plugin's final Snapshot
 *   hangs after its header, or the plugin also ignores Shutdown and SIGTERM;
 *   a snapshot whose applied_seq is past anything sent fails at once;
 * - busy is not hung: under the default options a handler that awaits for
 *   40 s is not killed and its dispatch resolves, while a plugin that blocks
 *   its event loop (and so fails its health checks) is killed as hung.
 *
 * Processes are counted by a marker argument each test passes to its plugin,
 * in /proc, so a launch the host lost track of is counted too. Nothing sleeps
 * to let things happen; the waits are for events, with a bound.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { pino, type Logger } from "pino";
import { adminClient } from "../src/admin/client.js";
import { serveAdmin } from "../src/admin/server.js";
import type { Host, HostEvents, PluginConfig, PlugwireError } from "../src/index.js";
import { fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const SLOW = fixture("slow");
const STUCK = fixture("stuck-snapshot");
const UNRULY = fixture("unruly");
const TEST_TIMEOUT_MS = 60_000;
const text = new TextEncoder();

type ExitEvent = HostEvents["plugin:exit"][0];
type StateEvent = HostEvents["plugin:state"][0];

/** A fresh marker argument, to find a test's plugin processes. */
function marker(): string {
  return `pw-lifecycle-${randomBytes(6).toString("hex")}`;
}

/** Live (not zombie) processes whose command line has `mark` as an argument. */
function processesWith(mark: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (!argv.includes(mark)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z") continue;
      pids.push(Number(entry));
    } catch {
      // exited while we looked
    }
  }
  return pids;
}

function pidOf(host: Host, name: string): number | undefined {
  return host.status().find((s) => s.name === name)?.pid;
}

interface Outcome {
  code: string | undefined;
  message: string;
}
function outcome(p: Promise<unknown>): Promise<Outcome> {
  return p.then(
    () => ({ code: undefined, message: "" }),
    (e: PlugwireError) => ({ code: e.code ?? String(e), message: e.message }),
  );
}

type LogRecord = { level: number; msg: string; plugin?: string } & { [key: string]: unknown };
/** A pino logger that keeps every record it writes. */
function recordingLogger(level = "info"): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = pino(
    { level },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split("\n").filter(Boolean)) records.push(JSON.parse(line) as LogRecord);
        done();
      },
    }),
  );
  return { logger, records };
}

/** Runs `body` on a started host; stops it after, and checks no process with `mark` is left. */
async function withHost(plugins: PluginConfig[], mark: string, body: (th: TestHost) => Promise<void>, options: Parameters<typeof testHost>[1] = {}): Promise<void> {
  const th = testHost(plugins, options);
  try {
    await th.host.start();
    await body(th);
  } finally {
    await th.close();
    assert.deepEqual(processesWith(mark), [], "no plugin process is left after host.stop()");
  }
}

describe("lifecycle operations are serialised", () => {
  it("five restarts at once leave exactly one process, tracked; a kill of it is one crash", { timeout: TEST_TIMEOUT_MS }, () => {
    const mark = marker();
    return withHost([nodePlugin("echo", SLOW, { args: [mark] })], mark, async ({ host }) => {
      const first = pidOf(host, "echo");
      assert.deepEqual(processesWith(mark), [first]);
      const starts: StateEvent[] = [];
      host.on("plugin:state", (e) => {
        if (e.plugin === "echo" && e.state === "starting") starts.push(e);
      });

      await Promise.all([1, 2, 3, 4, 5].map(() => host.restart("echo")));
      const live = pidOf(host, "echo");
      assert.ok(live !== undefined && live !== first, "the plugin was restarted");
      assert.deepEqual(processesWith(mark), [live], "one process runs, and it is the tracked one");
      assert.equal(starts.length, 1, "restarts asked for together join one restart");
      await host.dispatch(peer(1), "slow.k", text.encode(""));

      // Killing it is one crash of the plugin, followed by one relaunch.
      const exits: ExitEvent[] = [];
      host.on("plugin:exit", (e) => exits.push(e));
      const ready = waitFor<StateEvent>(host, "plugin:state", (e) => e.plugin === "echo" && e.state === "ready");
      process.kill(live, "SIGKILL");
      await ready;
      assert.deepEqual(
        exits.map((e) => [e.pid, e.reason]),
        [[live, "crash"]],
      );
      assert.deepEqual(processesWith(mark), [pidOf(host, "echo")]);
      assert.equal(host.status()[0]!.restarts, 1);
    });
  });

  it("restarts asked for one after another while one runs leave exactly one process", { timeout: TEST_TIMEOUT_MS }, () => {
    const mark = marker();
    return withHost([nodePlugin("echo", SLOW, { args: [mark] })], mark, async ({ host }) => {
      // A restart asked for on each state change of the one before: they land
      // while earlier ones are stopping or starting.
      const asked: Array<Promise<void>> = [host.restart("echo")];
      const onState = (e: StateEvent): void => {
        if (e.plugin === "echo" && asked.length < 6) asked.push(host.restart("echo"));
      };
      host.on("plugin:state", onState);
      await Promise.all(asked);
      host.off("plugin:state", onState);
      await Promise.all(asked); // those asked for by the last state changes
      assert.equal(host.status()[0]!.state, "ready");
      assert.deepEqual(processesWith(mark), [pidOf(host, "echo")]);
    });
  });

  it("ten RestartPlugin calls at once over the admin API leave exactly one process", { timeout: TEST_TIMEOUT_MS }, () => {
    const mark = marker();
    return withHost([nodePlugin("echo", SLOW, { args: [mark] })], mark, async ({ host }) => {
      const first = pidOf(host, "echo");
      const server = await serveAdmin(host);
      try {
        const admin = adminClient(server.socketPath, { token: server.token });
        await Promise.all(Array.from({ length: 10 }, () => admin.restartPlugin({ name: "echo" })));
      } finally {
        await server.close();
      }
      const live = pidOf(host, "echo");
      assert.ok(live !== undefined && live !== first);
      assert.equal(host.status()[0]!.state, "ready");
      assert.deepEqual(processesWith(mark), [live]);
    });
  });

  it("a stop wins over restarts asked for before it; host.stop() during restarts leaves nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
    const mark = marker();
    const th = testHost([nodePlugin("echo", SLOW, { args: [mark] })]);
    try {
      await th.host.start();
      const restarted = outcome(th.host.restart("echo"));
      const stopped = th.host.stopPlugin("echo");
      await stopped;
      const r = await restarted;
      assert.equal(r.code, "plugin_unavailable");
      assert.match(r.message, /^plugin 'echo' was not restarted: a stop .* was requested before the restart finished\. Call host\.restart\('echo'\)/);
      assert.equal(th.host.status()[0]!.state, "stopped");
      assert.deepEqual(processesWith(mark), []);

      // Back, then restarts asked for just before and while the host stops.
      await th.host.restart("echo");
      assert.equal(processesWith(mark).length, 1);
      const pending = [1, 2, 3].map(() => outcome(th.host.restart("echo")));
      const closing = th.close();
      pending.push(outcome(th.host.restart("echo")));
      await closing;
      for (const o of await Promise.all(pending)) {
        if (o.code !== undefined) assert.equal(o.code, "plugin_unavailable", o.message);
      }
      assert.deepEqual(processesWith(mark), []);
      assert.equal(th.host.status()[0]!.state, "stopped");
    } finally {
      await th.close();
      assert.deepEqual(processesWith(mark), []);
    }
  });

  it("host.stop() while a crashed plugin is being relaunched leaves nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
    const mark = marker();
    const th = testHost([nodePlugin("echo", SLOW, { args: [mark] })]);
    try {
      await th.host.start();
      const restarting = waitFor(th.host, "plugin:restart", (e: { plugin: string }) => e.plugin === "echo");
      process.kill(pidOf(th.host, "echo")!, "SIGKILL");
      await restarting;
      await th.close();
      assert.deepEqual(processesWith(mark), []);
      assert.equal(th.host.status()[0]!.state, "stopped");
    } finally {
      await th.close();
      assert.deepEqual(processesWith(mark), []);
    }
  });
});

describe("host.stop() has one deadline", () => {
  /** Slack for what follows the deadline: the leader's exit, the output grace, closing the server. */
  const MARGIN_MS = 3_000;

  it("abandons a final Snapshot that hangs after its header, under the default 10 s deadline", { timeout: TEST_TIMEOUT_MS }, async () => {
    const mark = marker();
    const { logger, records } = recordingLogger();
    const th = testHost([nodePlugin("stuck", STUCK, { args: ["hang", mark] })], { logger });
    try {
      await th.host.start();
      await th.host.dispatch(peer(1), "stuck.k", text.encode("a"));
      const pid = pidOf(th.host, "stuck")!;
      const t0 = performance.now();
      const stopping = th.host.stop();
      const refused = await outcome(th.host.dispatch(peer(1), "stuck.k", text.encode("b")));
      assert.equal(refused.code, "plugin_unavailable");
      assert.match(refused.message, /the host is stopping or stopped/);
      await stopping;
      const took = performance.now() - t0;
      assert.ok(took < 10_000 + MARGIN_MS, `stop() took ${Math.round(took)} ms; its deadline is 10000 ms`);
      assert.deepEqual(processesWith(mark), [], `plugin ${pid} is gone`);
      const abandoned = records.find((r) => r.plugin === "stuck" && /final snapshot did not finish/.test(r.msg));
      assert.ok(abandoned, records.map((r) => r.msg).join("\n"));
      assert.match(abandoned.msg, /^plugin 'stuck': its final snapshot did not finish .*stopTimeoutMs 10000 ms.* abandoned .*through seq 1\).* raise stopTimeoutMs\.$/);
    } finally {
      await th.close();
      assert.deepEqual(processesWith(mark), []);
    }
  });

  it("SIGKILLs a plugin whose Snapshot hangs and that ignores Shutdown and SIGTERM, by stopTimeoutMs", { timeout: TEST_TIMEOUT_MS }, async () => {
    const mark = marker();
    const STOP_MS = 2_000;
    const { logger, records } = recordingLogger();
    const th = testHost([nodePlugin("stubborn", STUCK, { args: ["hang", "stubborn", mark] })], { logger, stopTimeoutMs: STOP_MS });
    try {
      await th.host.start();
      const t0 = performance.now();
      await th.host.stop();
      const took = performance.now() - t0;
      assert.ok(took < STOP_MS + MARGIN_MS, `stop() took ${Math.round(took)} ms; its deadline is ${STOP_MS} ms`);
      assert.deepEqual(processesWith(mark), []);
      const msgs = records.filter((r) => r.plugin === "stubborn").map((r) => r.msg);
      assert.ok(msgs.some((m) => /final snapshot did not finish/.test(m)), msgs.join("\n"));
      assert.ok(msgs.includes("plugin ignored SIGTERM; sending SIGKILL to its process group"), msgs.join("\n"));
    } finally {
      await th.close();
      assert.deepEqual(processesWith(mark), []);
    }
  });

  it("fails a snapshot whose applied_seq is past anything sent at once, and stop() goes on", { timeout: TEST_TIMEOUT_MS }, async () => {
    const mark = marker();
    const { logger, records } = recordingLogger();
    const th = testHost([nodePlugin("beyond", STUCK, { args: ["beyond", mark] })], { logger });
    try {
      await th.host.start();
      await th.host.dispatch(peer(1), "stuck.k", text.encode("a"));
      const failed = await outcome(th.host.snapshot("beyond"));
      assert.equal(failed.code, "snapshot_failed");
      assert.match(failed.message, /^plugin 'beyond' sent a snapshot with applied_seq 1000000, but the host has sent it nothing past seq 1/);
      const t0 = performance.now();
      await th.host.stop();
      assert.ok(performance.now() - t0 < 10_000 + MARGIN_MS);
      assert.deepEqual(processesWith(mark), []);
      assert.ok(!records.some((r) => /final snapshot did not finish/.test(r.msg)), "the final snapshot failed, it was not abandoned");
    } finally {
      await th.close();
      assert.deepEqual(processesWith(mark), []);
    }
  });

  it("rejects an invalid stopTimeoutMs with invalid_config", () => {
    for (const bad of [0, -1, Number.NaN, "10s"]) {
      assert.throws(
        () => testHost([nodePlugin("x", SLOW)], { stopTimeoutMs: bad as number }),
        (e: PlugwireError) => e.code === "invalid_config" && /stopTimeoutMs must be a positive number/.test(e.message),
      );
    }
  });
});

describe("busy is not hung", () => {
  const HANDLER_MS = 40_000;

  it(
    "under the default options a handler that awaits 40 s is not killed and its dispatch resolves; a blocked plugin is killed as hung",
    { timeout: HANDLER_MS + 60_000 },
    async () => {
      const mark = marker();
      const { logger, records } = recordingLogger();
      await withHost(
        [nodePlugin("busy", SLOW, { args: [mark] }), nodePlugin("blocked", UNRULY, { args: ["hang", "unruly", mark] })],
        mark,
        async ({ host }) => {
          const busyPid = pidOf(host, "busy")!;
          const exits: ExitEvent[] = [];
          host.on("plugin:exit", (e) => exits.push(e));
          const hungExit = waitFor<ExitEvent>(host, "plugin:exit", (e) => e.plugin === "blocked", HANDLER_MS);
          const t0 = performance.now();
          const busy = host.dispatch(peer(1), "slow.wait", text.encode(String(HANDLER_MS)));
          // Blocks the event loop: no health check is answered any more.
          const blocked = outcome(host.dispatch(peer(1), "unruly.hang", text.encode("")));

          const exit = await hungExit;
          assert.equal(exit.reason, "hung");
          await busy;
          assert.ok(performance.now() - t0 >= HANDLER_MS - 50, "the handler ran its whole time");
          assert.equal(pidOf(host, "busy"), busyPid, "the busy plugin is the same process");
          assert.deepEqual(
            exits.filter((e) => e.plugin === "busy"),
            [],
          );
          const busyStatus = host.status().find((s) => s.name === "busy")!;
          assert.deepEqual([busyStatus.state, busyStatus.restarts, busyStatus.inFlight], ["ready", 0, 0]);
          const warning = records.find((r) => r.plugin === "busy" && /counts as busy, not hung/.test(r.msg));
          assert.ok(warning, "a busy warning was logged");
          assert.match(warning.msg, /^plugin 'busy' has acked nothing for \d+ s; the oldest item in flight is seq 1 \(kind 'slow\.wait'\)\./);
          assert.match(warning.msg, /killed only if nothing is acked for ackTimeoutMs \(300000 ms\)\.$/);
          await host.dispatch(peer(1), "slow.k", text.encode(""));
          void blocked; // parked, or rejected when the host stops: not this test's concern
        },
        { logger },
      );
    },
  );
});
