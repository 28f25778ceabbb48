/**
 * Warm standby (docs/supervision.md, "Warm standby"), on real processes:
 * - a crash promotes the waiting spare: exact state (0 lost, 0 duplicated),
 *   the spare did no Start before, and a new spare is spawned afterwards;
 * - a crash of the spare itself is harmless: the serving launch is not
 *   restarted, the state is untouched, and a spare comes back after a backoff;
 * - a spare that fails its handshake is reported (event, status, lastError);
 * - the spare is killed on stop; stateless plugins keep none by default.
 * Every wait is for an event with a deadline; nothing sleeps.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Host, HostEvents } from "../src/index.js";
import { alive, assertGone, example, fixture, nodePlugin, peer, testHost, waitFor } from "./helpers.js";
import { applied, range, u32 } from "./fixtures/standby-state.js";

type StandbyEvent = HostEvents["plugin:standby"][0];
type StateEvent = HostEvents["plugin:state"][0];

const TEST_TIMEOUT_MS = 90_000;

function standbyOf(host: Host, name = "standby") {
  const s = host.status().find((p) => p.name === name);
  assert.ok(s, `no plugin '${name}'`);
  return s;
}

function spareReady(host: Host, timeoutMs = 30_000): Promise<StandbyEvent> {
  return waitFor<StandbyEvent>(host, "plugin:standby", (e) => e.plugin === "standby" && e.event === "ready", timeoutMs);
}

/** A scratch dir with the fixture's mode file and event log. */
function scratch(mode = "ok") {
  const dir = mkdtempSync(join(tmpdir(), "pwsb-"));
  const modeFile = join(dir, "mode");
  const eventLog = join(dir, "events");
  writeFileSync(modeFile, mode);
  writeFileSync(eventLog, "");
  return {
    dir,
    modeFile,
    eventLog,
    setMode: (m: string) => writeFileSync(modeFile, m),
    /** "<event> <pid> <mode>" lines the fixture's processes wrote. */
    events: () =>
      readFileSync(eventLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [event, pid, m] = line.split(" ");
          return { event: event!, pid: Number(pid), mode: m! };
        }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function plugin(s: ReturnType<typeof scratch>, extra: Record<string, unknown> = {}) {
  return nodePlugin("standby", fixture("standby"), {
    env: { STANDBY_MODE_FILE: s.modeFile, STANDBY_EVENT_LOG: s.eventLog },
    backoffInitialMs: 0,
    maxRestarts: 100,
    ...extra,
  });
}

describe("warm standby", { timeout: 180_000 }, () => {
  it("a crash promotes the waiting spare: exact state (0 lost, 0 duplicated), no Start before promotion, a new spare after", { timeout: TEST_TIMEOUT_MS }, async () => {
    const s = scratch();
    const th = testHost([plugin(s)]);
    const spares = new Set<number>();
    th.host.on("plugin:standby", (e) => {
      if (e.pid) spares.add(e.pid);
    });
    try {
      const firstSpare = spareReady(th.host);
      await th.host.start();
      const spare = await firstSpare;
      assert.equal(standbyOf(th.host).standby.state, "waiting");
      assert.equal(standbyOf(th.host).standby.pid, spare.pid);
      const serving = standbyOf(th.host).pid!;
      assert.notEqual(spare.pid, serving);
      assert.equal(standbyOf(th.host).state, "ready", "status reports the serving launch, not the spare");
      const cold = standbyOf(th.host).lastLaunch;
      assert.ok(cold && !cold.spare && cold.processMs > 0 && cold.describeMs > 0, `a cold launch spawns and describes: ${JSON.stringify(cold)}`);

      await Promise.all(range(0, 300).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      await th.host.snapshot("standby");
      // Acked but not in the snapshot (replayed), and in flight at the kill (redelivered).
      await Promise.all(range(300, 500).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      const inFlight = range(500, 1500).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n)));
      assert.ok(
        !s.events().some((e) => e.pid === spare.pid && e.event !== "spawned"),
        "the spare did nothing but start up (no Start, no Restore) before its promotion",
      );
      const promoted = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "promoted");
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.state === "ready");
      const replenished = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "ready" && e.pid !== spare.pid, 60_000);
      process.kill(serving, "SIGKILL");
      assert.equal((await promoted).pid, spare.pid);
      await ready;
      assert.equal(standbyOf(th.host).pid, spare.pid, "the spare serves now");
      const warm = standbyOf(th.host).lastLaunch;
      assert.ok(warm?.spare, `the last launch was the promoted spare: ${JSON.stringify(warm)}`);
      assert.equal(warm.describeMs, 0, "a promoted spare was described while it waited");
      assert.ok(warm.restoreMs > 0 && warm.replayed > 0, `the spare restored the snapshot and got the replay: ${JSON.stringify(warm)}`);
      const parts = warm.processMs + warm.describeMs + warm.startMs + warm.restoreMs + warm.deliverMs;
      assert.ok(Math.abs(parts - warm.totalMs) < 0.1, `the phases add up to the total (to rounding): ${JSON.stringify(warm)}`);
      await Promise.all(inFlight);
      await Promise.all(range(1500, 1600).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      assert.deepEqual(await applied(th.host), range(0, 1600), "every payload applied exactly once, in order");
      assert.equal(standbyOf(th.host).restarts, 1);
      const events = s.events().filter((e) => e.pid === spare.pid);
      assert.deepEqual(
        events.map((e) => e.event),
        ["spawned", "start", "restore"],
        "the promoted spare got Start and Restore once each, after its promotion",
      );
      const next = await replenished;
      assert.equal(standbyOf(th.host).standby.state, "waiting");
      assert.equal(standbyOf(th.host).standby.promotions, 1);
      assert.ok(next.pid && alive(next.pid));
    } finally {
      await th.close();
      assertGone(spares);
      s.remove();
    }
  });

  it("a crash of the spare itself is harmless: no restart, the state untouched, a new spare after a backoff", { timeout: TEST_TIMEOUT_MS }, async () => {
    const s = scratch();
    const th = testHost([plugin(s)]);
    const spares = new Set<number>();
    const states: StateEvent[] = [];
    th.host.on("plugin:standby", (e) => {
      if (e.pid) spares.add(e.pid);
    });
    try {
      const firstSpare = spareReady(th.host);
      await th.host.start();
      const spare = await firstSpare;
      await Promise.all(range(0, 200).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      const serving = standbyOf(th.host).pid!;
      th.host.on("plugin:state", (e) => states.push(e));
      const failed = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "failed");
      const replaced = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "ready" && e.pid !== spare.pid, 60_000);
      process.kill(spare.pid!, "SIGKILL");
      const report = await failed;
      assert.match(report.error!, /warm standby spare \(pid \d+\) was killed by SIGKILL while waiting to be promoted; the serving launch is not affected/);
      const during = standbyOf(th.host);
      assert.equal(during.standby.state, "backoff", "a failed spare is replaced after a backoff, not at once");
      assert.equal(during.standby.failures, 1);
      assert.match(during.standby.lastError!, /SIGKILL/);
      // Payloads keep flowing to the serving launch meanwhile.
      await Promise.all(range(200, 400).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      await replaced;
      const after = standbyOf(th.host);
      assert.equal(after.pid, serving, "the serving launch was not touched");
      assert.equal(after.restarts, 0);
      assert.equal(after.state, "ready");
      assert.deepEqual(states, [], "no state change of the plugin");
      assert.deepEqual(await applied(th.host), range(0, 400));
    } finally {
      await th.close();
      assertGone(spares);
      s.remove();
    }
  });

  it("a spare that fails its handshake is reported; the next ones come with a growing backoff; a good one is promoted later", { timeout: TEST_TIMEOUT_MS }, async () => {
    const s = scratch();
    const th = testHost([plugin(s)]);
    const spares = new Set<number>();
    const failures: StandbyEvent[] = [];
    th.host.on("plugin:standby", (e) => {
      if (e.pid) spares.add(e.pid);
      if (e.event === "failed") failures.push(e);
    });
    try {
      const firstSpare = spareReady(th.host);
      await th.host.start();
      const spare = await firstSpare;
      await Promise.all(range(0, 100).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      s.setMode("exit-early");
      const twoFailures = waitFor<StandbyEvent>(th.host, "plugin:standby", () => failures.length >= 2, 60_000);
      process.kill(spare.pid!, "SIGKILL");
      await twoFailures;
      const handshake = failures[1]!;
      assert.match(handshake.error!, /could not be made ready: plugin 'standby' .* exited with code 3 before its handshake/s);
      assert.match(handshake.error!, /exiting before the handshake \(mode exit-early\)/, "the report carries the spare's stderr");
      const st = standbyOf(th.host);
      assert.ok(st.standby.failures >= 2);
      assert.match(st.standby.lastError!, /before its handshake/);
      assert.equal(st.restarts, 0, "the serving launch was not touched");
      // A good build again: the next spare after the backoff is promoted on a crash.
      s.setMode("ok");
      const good = await spareReady(th.host, 60_000);
      const serving = standbyOf(th.host).pid!;
      const promoted = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "promoted");
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.state === "ready");
      process.kill(serving, "SIGKILL");
      assert.equal((await promoted).pid, good.pid);
      await ready;
      // Acked after the replay (seq order): the state read next includes the whole replay.
      await Promise.all(range(100, 150).map((n) => th.host.dispatch(peer(1), "standby.n", u32(n))));
      assert.deepEqual(await applied(th.host), range(0, 150));
    } finally {
      await th.close();
      assertGone(spares);
      s.remove();
    }
  });

  it("the spare is killed on stopPlugin and on host.stop; a stateless plugin keeps none unless asked; warmStandby false keeps none", { timeout: TEST_TIMEOUT_MS }, async () => {
    const s = scratch();
    const th = testHost([
      plugin(s),
      nodePlugin("echo", example("echo")),
      nodePlugin("echo-warm", example("echo"), { warmStandby: true }),
      nodePlugin("counter", example("counter"), { warmStandby: false }),
    ]);
    const spares = new Set<number>();
    th.host.on("plugin:standby", (e) => {
      if (e.pid) spares.add(e.pid);
    });
    try {
      const ready = Promise.all([
        spareReady(th.host),
        waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.plugin === "echo-warm" && e.event === "ready", 30_000),
      ]);
      await th.host.start();
      const [spare, echoSpare] = await ready;
      assert.equal(standbyOf(th.host, "echo").standby.state, "off", "stateless: no spare by default");
      assert.equal(standbyOf(th.host, "counter").standby.state, "off", "warmStandby: false");
      assert.equal(standbyOf(th.host, "echo-warm").standby.state, "waiting", "warmStandby: true on a stateless plugin");
      await th.host.stopPlugin("standby");
      assert.equal(alive(spare.pid!), false, "stopPlugin killed the spare");
      assert.equal(standbyOf(th.host).standby.state, "off");
      await th.host.stop();
      assert.equal(alive(echoSpare.pid!), false, "host.stop killed the spare");
    } finally {
      await th.close();
      assertGone(spares);
      s.remove();
    }
  });
});
