/**
 * Hot upgrade (docs/supervision.md, "Hot upgrade"), on real processes:
 * - under a stream of dispatches, the running build is replaced by a new one
 *   (other args): every payload applied exactly once, in order, the state
 *   handed over, the old process gone, and the new build's spare promoted on
 *   a later crash;
 * - a new build that refuses the snapshot, one that crashes in Start, and one
 *   that exits before its handshake are rolled back: the old build keeps
 *   serving with its state, and the error names the plugin and what to do.
 * Every wait is for an event or a bounded condition; nothing sleeps for a fixed time.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Host, HostEvents, PlugwireError } from "../src/index.js";
import { alive, assertGone, fixture, nodePlugin, peer, testHost, waitFor } from "./helpers.js";
import { applied, range, u32 } from "./fixtures/standby-state.js";

type StandbyEvent = HostEvents["plugin:standby"][0];
type StateEvent = HostEvents["plugin:state"][0];

const TEST_TIMEOUT_MS = 120_000;

function statusOf(host: Host) {
  const s = host.status().find((p) => p.name === "standby");
  assert.ok(s);
  return s;
}

/** Resolves once `pid` has exited; bounded. */
async function gone(pid: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (!alive(pid)) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`process ${pid} still alive after ${timeoutMs} ms`);
}

function scratch() {
  const dir = mkdtempSync(join(tmpdir(), "pwup-"));
  const eventLog = join(dir, "events");
  writeFileSync(eventLog, "");
  return {
    eventLog,
    events: () =>
      readFileSync(eventLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [event, pid, mode] = line.split(" ");
          return { event: event!, pid: Number(pid), mode: mode! };
        }),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

function setup(extra: Record<string, unknown> = {}) {
  const s = scratch();
  const th = testHost([
    nodePlugin("standby", fixture("standby"), {
      args: ["--mode", "v1"],
      env: { STANDBY_EVENT_LOG: s.eventLog },
      backoffInitialMs: 0,
      shutdownTimeoutMs: 2_000,
      ...extra,
    }),
  ]);
  return { s, th };
}

/** Resolves with the pid of a waiting spare that satisfies `pred`: at once if the status shows one, else at the next standby event that makes it so. */
function spareWaiting(host: Host, pred: (pid: number) => boolean, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      host.off("plugin:standby", check);
    };
    const check = (): void => {
      const sb = statusOf(host).standby;
      if (sb.state === "waiting" && sb.pid !== undefined && pred(sb.pid)) {
        done();
        resolve(sb.pid);
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for a warm standby spare`));
    }, timeoutMs);
    host.on("plugin:standby", check);
    check();
  });
}

/** Dispatches `from..to` in small groups, one group after another; resolves when all are acked. */
async function stream(host: Host, from: number, to: number): Promise<void> {
  for (let n = from; n < to; n += 50) {
    await Promise.all(range(n, Math.min(to, n + 50)).map((i) => host.dispatch(peer(1), "standby.n", u32(i))));
  }
}

describe("hot upgrade", { timeout: 300_000 }, () => {
  it("under load: 0 lost, 0 duplicated, the state handed over, the old build gone, the new build's spare promoted on a crash", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { s, th } = setup();
    try {
      const spare = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "ready");
      await th.host.start();
      await spare;
      await stream(th.host, 0, 500);
      const oldPid = statusOf(th.host).pid!;
      // Payloads keep coming while the upgrade runs.
      const load = stream(th.host, 500, 3000);
      const upgraded = waitFor<HostEvents["plugin:upgraded"][0]>(th.host, "plugin:upgraded");
      const result = await th.host.upgrade("standby", { args: [fixture("standby"), "--mode", "v2"] });
      await load;
      assert.equal((await upgraded).toPid, result.toPid);
      assert.equal(result.fromPid, oldPid);
      assert.notEqual(result.toPid, oldPid);
      assert.ok(result.pauseMs >= 0);
      const st = statusOf(th.host);
      assert.equal(st.pid, result.toPid);
      assert.equal(st.state, "ready");
      assert.equal(st.restarts, 0, "an upgrade is no restart");
      await gone(oldPid);
      await stream(th.host, 3000, 3200);
      assert.deepEqual(await applied(th.host), range(0, 3200), "every payload applied exactly once, in order");
      const newEvents = s.events().filter((e) => e.pid === result.toPid);
      assert.deepEqual(
        newEvents.map((e) => `${e.event} ${e.mode}`),
        ["spawned v2", "start v2", "restore v2"],
      );
      // The old build's spare is gone; a spare of the new build is promoted on a crash.
      // The spare may have become ready before this point: read the status, and wait for the event only if not.
      const v2Spare = { pid: await spareWaiting(th.host, (pid) => pid !== result.toPid && s.events().some((x) => x.pid === pid && x.mode === "v2"), 60_000) };
      for (const e of s.events()) if (e.mode === "v1") await gone(e.pid);
      const promoted = waitFor<StandbyEvent>(th.host, "plugin:standby", (e) => e.event === "promoted");
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.state === "ready");
      process.kill(result.toPid, "SIGKILL");
      assert.equal((await promoted).pid, v2Spare.pid);
      await ready;
      await stream(th.host, 3200, 3300);
      assert.deepEqual(await applied(th.host), range(0, 3300));
    } finally {
      await th.close();
      assertGone(s.events().map((e) => e.pid));
      s.remove();
    }
  });

  it("a stop during an upgrade kills the new build and ends the upgrade; nothing is left behind", { timeout: TEST_TIMEOUT_MS }, async () => {
    const { s, th } = setup({ warmStandby: false });
    try {
      await th.host.start();
      await stream(th.host, 0, 100);
      const upgrading = th.host.upgrade("standby", { args: [fixture("standby"), "--mode", "hang-in-start"] }).then(
        () => assert.fail("the upgrade should have failed"),
        (e: unknown) => e as PlugwireError,
      );
      // Wait (bounded) until the new build is in its Start, by the event log it writes.
      for (let i = 0; i < 2_000 && !s.events().some((e) => e.event === "start" && e.mode === "hang-in-start"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(s.events().some((e) => e.event === "start" && e.mode === "hang-in-start"), "the new build got Start");
      await th.host.stop();
      const error = await upgrading;
      assert.match(error.message, /^plugin 'standby' was not upgraded to '.*hang-in-start': the new build did not take over .*The upgrade was abandoned because the plugin is being stopped; the new build was killed\.$/s);
      for (const e of s.events()) await gone(e.pid);
    } finally {
      await th.close();
      assertGone(s.events().map((e) => e.pid));
      s.remove();
    }
  });

  for (const bad of [
    { mode: "refuse-restore", error: /did not take over \(it failed Restore\): .*this build refuses the snapshot \(test mode refuse-restore\)\. The upgrade was rolled back: the running build \(pid \d+\) keeps serving/s },
    { mode: "crash-in-start", error: /did not take over \(it exited with code 5 during Start\).*rolled back: the running build \(pid \d+\) keeps serving.*Last stderr lines:\n  standby fixture: crashing in Start \(mode crash-in-start\)/s },
    { mode: "exit-early", error: /new build could not be started: .*exited with code 3 before its handshake.*rolled back: the running build \(pid \d+\) keeps serving/s },
  ]) {
    it(`a new build in mode ${bad.mode} is rolled back; the old build keeps serving with its state, under load`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const { s, th } = setup({ warmStandby: false });
      try {
        await th.host.start();
        await stream(th.host, 0, 300);
        const oldPid = statusOf(th.host).pid!;
        const load = stream(th.host, 300, 1500);
        const error = (await th.host.upgrade("standby", { args: [fixture("standby"), "--mode", bad.mode] }).then(
          () => assert.fail("the upgrade should have failed"),
          (e: unknown) => e,
        )) as PlugwireError;
        await load;
        assert.match(error.message, /^plugin 'standby' was not upgraded to '/);
        assert.match(error.message, bad.error);
        assert.match(error.message, /upgrade again \(host\.upgrade\('standby', …\) or plugwire upgrade standby\)/);
        const st = statusOf(th.host);
        assert.equal(st.pid, oldPid, "the old build serves");
        assert.equal(st.state, "ready");
        assert.equal(st.restarts, 0);
        await stream(th.host, 1500, 1600);
        assert.deepEqual(await applied(th.host), range(0, 1600));
        for (const e of s.events()) if (e.mode === bad.mode) await gone(e.pid);
        assert.ok(s.events().some((e) => e.mode === bad.mode), "the new build was started");
      } finally {
        await th.close();
        assertGone(s.events().map((e) => e.pid));
        s.remove();
      }
    });
  }
});
