/**
 * Recovery that always finishes, on real processes:
 * - the demo's pattern (a large replay plus thousands un-acked at a SIGKILL,
 *   then no further dispatch) settles every dispatch, with one restart;
 * - forgotten peers are items of the stream: replayed after a crash, and a
 *   forget sent while the plugin restarts reaches it once it is back;
 * - a burst of large payloads never overflows a Deliver message, and a
 *   payload over the message limit is refused at dispatch;
 * - a replay buffer whose snapshots never advance stays bounded.
 * Every wait is for an event with a deadline; nothing sleeps.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import { pino, type Logger } from "pino";
import { hex, MAX_ITEM_BYTES, type Host, type HostEvents, type PlugwireError } from "../src/index.js";
import { example, fixture, nodePlugin, peer, testHost, waitFor } from "./helpers.js";

type LogLine = Record<string, unknown> & { msg?: string; level?: number };
type StateEvent = HostEvents["plugin:state"][0];

/** A pino logger whose JSON lines are kept in `lines` and emitted as `line` events. */
function captureLogger(): { logger: Logger; lines: LogLine[]; events: EventEmitter } {
  const lines: LogLine[] = [];
  const events = new EventEmitter();
  const logger = pino(
    { level: "info" },
    {
      write: (text: string) => {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        events.emit("line", line);
      },
    },
  );
  return { logger, lines, events };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function status(host: Host, name: string) {
  const s = host.status().find((p) => p.name === name);
  assert.ok(s, `no plugin '${name}' in status()`);
  return s;
}

function readyEvent(host: Host, name: string, timeoutMs = 30_000): Promise<StateEvent> {
  return waitFor<StateEvent>(host, "plugin:state", (e) => e.plugin === name && e.state === "ready", timeoutMs);
}

/** Counter's per-peer counts, from a fresh snapshot. */
async function counts(host: Host): Promise<Record<string, number>> {
  const record = await host.snapshot("counter");
  assert.ok(record, "counter is stateful");
  return JSON.parse(new TextDecoder().decode(record.bytes)) as Record<string, number>;
}

const BODY = new Uint8Array(256);

describe("recovery always finishes", { timeout: 180_000 }, () => {
  test("the demo's pattern: 28,800 to replay and 4,000 un-acked at a SIGKILL, then no dispatch; every dispatch settles, one restart", async () => {
    const { logger, lines } = captureLogger();
    const t = testHost([nodePlugin("counter", example("counter"))], { logger });
    try {
      await t.host.start();
      const peers = [peer(1), peer(2), peer(3), peer(4), peer(5)];
      const expected = new Map<string, number>();
      const settled: Promise<void>[] = [];
      const failures: PlugwireError[] = [];
      const send = (n: number): void => {
        for (let i = 0; i < n; i++) {
          const p = peers[i % peers.length]!;
          expected.set(hex(p), (expected.get(hex(p)) ?? 0) + 1);
          settled.push(t.host.dispatch(p, "counter.hit", BODY).catch((e: PlugwireError) => void failures.push(e)));
        }
      };
      // A snapshot, then 28,800 acked payloads after it (the replay), sent
      // in steps of 4,000 as the demo does, then 4,000 more at once so
      // thousands are in flight at the kill.
      send(1_000);
      await within(Promise.all(settled), 30_000, "the first payloads");
      assert.ok(await t.host.snapshot("counter"));
      for (let sentSoFar = 0; sentSoFar < 28_800; sentSoFar += 4_000) {
        send(Math.min(4_000, 28_800 - sentSoFar));
        await within(Promise.all(settled), 60_000, "the payloads to be replayed");
      }
      send(4_000);
      const s = status(t.host, "counter");
      assert.ok(s.pid);
      t.pids.add(s.pid);
      assert.ok(s.inFlight + s.queued > 1_000, `thousands un-acked at the kill (in flight ${s.inFlight}, queued ${s.queued})`);
      const ready = readyEvent(t.host, "counter");
      process.kill(s.pid, "SIGKILL");
      await ready;
      // No further dispatch: everything already dispatched must settle.
      await within(Promise.all(settled), 60_000, "every dispatch to settle after the kill");
      assert.deepEqual(failures, []);
      const after = status(t.host, "counter");
      assert.equal(after.restarts, 1, `one restart, none for a hang (last error: ${after.lastError})`);
      assert.equal(after.state, "ready");
      const relaunch = lines.find((l) => l.msg === "payloads replayed to the new launch");
      assert.ok(relaunch, "the relaunch logged its replay");
      assert.equal(relaunch.replayed, 28_800);
      assert.ok(Number(relaunch.redelivered) > 0, "payloads in flight at the kill were redelivered");
      assert.equal(lines.filter((l) => l.msg === "health check failed").length, 0, "no health check failed");
      assert.deepEqual(await counts(t.host), Object.fromEntries(expected));
    } finally {
      await t.close();
    }
  });

  test("a forget is replayed in its place: 5 payloads from A, forget A, SIGKILL before any snapshot; A stays forgotten", async () => {
    const t = testHost([nodePlugin("counter", example("counter"))]);
    try {
      await t.host.start();
      const [a, b] = [peer(0xa), peer(0xb)];
      for (let i = 0; i < 5; i++) await t.host.dispatch(a, "counter.hit", BODY);
      assert.ok(await t.host.snapshot("counter"), "a snapshot that still counts A");
      await t.host.dispatch(b, "counter.hit", BODY);
      assert.deepEqual(await t.host.peerForgotten(a), { ok: [{ plugin: "counter", value: undefined }], failed: [] });
      await t.host.dispatch(b, "counter.hit", BODY);
      // No snapshot after the forget: recovery must replay it from the stream.
      const s = status(t.host, "counter");
      t.pids.add(s.pid!);
      const ready = readyEvent(t.host, "counter");
      process.kill(s.pid!, "SIGKILL");
      await ready;
      assert.deepEqual(await counts(t.host), { [hex(b)]: 2 });
    } finally {
      await t.close();
    }
  });

  test("a forget sent while the plugin restarts is not skipped: it reaches the plugin once it is back", async () => {
    const t = testHost([nodePlugin("counter", example("counter"))]);
    try {
      await t.host.start();
      const a = peer(0xa);
      for (let i = 0; i < 3; i++) await t.host.dispatch(a, "counter.hit", BODY);
      assert.ok(await t.host.snapshot("counter"));
      const s = status(t.host, "counter");
      t.pids.add(s.pid!);
      const restarting = waitFor<StateEvent>(t.host, "plugin:state", (e) => e.plugin === "counter" && e.state === "restarting");
      process.kill(s.pid!, "SIGKILL");
      await restarting;
      const told = t.host.peerForgotten(a);
      assert.equal(status(t.host, "counter").state, "restarting", "the forget was sent while counter was down");
      assert.deepEqual(await within(told, 30_000, "the forget to be acked"), { ok: [{ plugin: "counter", value: undefined }], failed: [] });
      assert.deepEqual(await counts(t.host), {});
    } finally {
      await t.close();
    }
  });

  test("300 concurrent 140 KiB payloads never overflow a Deliver message: all acked, no restart, no dead letter", async () => {
    const t = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] })]);
    try {
      await t.host.start();
      const body = new Uint8Array(140 * 1024).fill(0x61);
      const results = await within(
        Promise.allSettled(Array.from({ length: 300 }, () => t.host.dispatch(peer(1), "echo.ping", body))),
        60_000,
        "300 large payloads",
      );
      const rejected = results.filter((r) => r.status === "rejected");
      assert.deepEqual(rejected, []);
      const s = status(t.host, "echo");
      assert.equal(s.restarts, 0);
      assert.equal(s.deadLetters, 0);
      assert.equal(s.state, "ready");
    } finally {
      await t.close();
    }
  });

  test("a payload over the message limit is refused at dispatch with payload_too_large; the plugin is unaffected", async () => {
    const t = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] })]);
    try {
      await t.host.start();
      const big = new Uint8Array(MAX_ITEM_BYTES + 1); // with its src and kind, over the limit
      const error = await t.host.dispatch(peer(1), "echo.ping", big).then(
        () => undefined,
        (e: PlugwireError) => e,
      );
      assert.ok(error, "the oversize payload was refused");
      assert.equal(error.code, "payload_too_large");
      assert.equal(error.plugin, "echo");
      assert.match(error.message, /^payload of kind 'echo\.ping' for plugin 'echo' is \d+ bytes, over the \d+-byte limit of one Deliver message; it was not queued\./);
      // Just under the limit still goes through, and echo keeps working.
      await within(t.host.dispatch(peer(1), "echo.ping", new Uint8Array(MAX_ITEM_BYTES - 1024)), 30_000, "a payload just under the limit");
      await t.host.dispatch(peer(1), "echo.ping", BODY);
      const s = status(t.host, "echo");
      assert.equal(s.restarts, 0);
      assert.equal(s.state, "ready");
    } finally {
      await t.close();
    }
  });

  test("snapshots that never advance: the replay buffer stays bounded, early snapshots back off, new payloads wait and overflow with a clear error", async () => {
    const { logger, lines, events } = captureLogger();
    const replayFull = waitFor<LogLine>(events, "line", (l) => /its replay buffer reached twice its bound/.test(String(l.msg)), 60_000);
    const t = testHost(
      [
        nodePlugin("frozen", fixture("frozen-snapshot"), {
          maxReplayPayloads: 1_000,
          maxReplayBytes: 1024 * 1024,
          maxQueued: 500,
          overflow: "reject",
        }),
      ],
      { logger },
    );
    try {
      await t.host.start();
      let resolved = 0;
      const rejected: PlugwireError[] = [];
      const all: Promise<void>[] = [];
      // 20,000 dispatches, bounded in count; far more than the bounds allow.
      for (let i = 0; i < 20_000; i++) {
        all.push(
          t.host.dispatch(peer(1), "frozen.k", BODY).then(
            () => void resolved++,
            (e: PlugwireError) => void rejected.push(e),
          ),
        );
        if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve));
      }
      await replayFull;
      const s = status(t.host, "frozen");
      // Hard bound: twice maxReplayPayloads, plus what was in flight when it was reached.
      assert.ok(resolved <= 2 * 1_000 + 4_096, `acked payloads stay bounded (${resolved})`);
      // Overflow that comes while the buffer is full says why.
      const late = await t.host.dispatch(peer(1), "frozen.k", BODY).then(
        () => undefined,
        (e: PlugwireError) => e,
      );
      assert.ok(late, "a payload sent while the replay buffer is full and the queue too overflows");
      assert.equal(late.code, "queue_full");
      assert.match(late.message, /Its replay buffer is full and waits for a snapshot that advances/);
      assert.match(s.lastError ?? "", /^replay buffer full \(\d+ payloads, \d+ bytes\): snapshots do not advance past seq 0, so new payloads wait$/);
      const snapshots = lines.filter((l) => l.msg === "snapshot saved").length;
      assert.ok(snapshots <= 3, `early snapshots back off instead of storming (${snapshots} taken)`);
      // The first early snapshot may still be saving when the buffer reaches its hard bound (a loaded machine): wait for its back-off line.
      const backOff = (l: LogLine): boolean => /its snapshots do not advance with the payloads it handles; next early snapshot in \d+ ms/.test(String(l.msg));
      if (!lines.some(backOff)) await waitFor<LogLine>(events, "line", backOff, 30_000);
      assert.equal(s.restarts, 0);
    } finally {
      await t.close();
    }
  });
});

