/**
 * The delivery guarantees under real crashes: SIGKILLed plugin processes in
 * the middle of a stream, redelivery and replay, exactly-once effects, poison
 * pills and dead letters, and the replay buffer's bound. (A 100 MB snapshot
 * and peerForgotten across a crash are in store-recovery.test.ts.)
 * Every wait is for an event and has a deadline; nothing sleeps.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EventEmitter } from "node:events";
import { describe, test } from "node:test";
import { pino, type Logger } from "pino";
import { hex, type Host, type HostEvents, type PlugwireError } from "../src/index.js";
import { alive, example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

type Taken = HostEvents["snapshot:taken"][0];
type Restored = HostEvents["snapshot:restored"][0];
type Exit = HostEvents["plugin:exit"][0];
type LogLine = Record<string, unknown> & { msg?: string; level?: number };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A pino logger whose JSON lines are kept in `lines`, for assertions. */
function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

/** Rejects after `ms` with a message naming what was awaited. */
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

/** Resolves when `name` is ready (at once if it already is). */
async function untilReady(host: Host, name: string, timeoutMs = 30_000): Promise<void> {
  if (status(host, name).state === "ready") return;
  await waitFor<HostEvents["plugin:state"][0]>(host, "plugin:state", (e) => e.plugin === name && e.state === "ready", timeoutMs);
}

interface KillRecord {
  pid: number;
  inFlight: number;
  queued: number;
}

/** SIGKILLs the plugin's process (a crash, as far as the host knows) and waits until a new launch is ready. */
async function killAndAwaitReady(t: TestHost, name: string): Promise<KillRecord> {
  const s = status(t.host, name);
  assert.equal(s.state, "ready", `'${name}' should be ready before it is killed`);
  assert.ok(s.pid, `'${name}' has no pid`);
  t.pids.add(s.pid);
  const ready = waitFor<HostEvents["plugin:state"][0]>(t.host, "plugin:state", (e) => e.plugin === name && e.state === "ready", 30_000);
  process.kill(s.pid, "SIGKILL");
  await ready;
  assert.equal(alive(s.pid), false, `killed pid ${s.pid} is still alive`);
  return { pid: s.pid, inFlight: s.inFlight, queued: s.queued };
}

interface PumpResult {
  resolved: number;
  rejected: Array<{ index: number; error: PlugwireError }>;
}

/**
 * Dispatches `total` payloads with at most `maxOutstanding` un-settled at a
 * time. `afterDispatch(n)` runs after the n-th dispatch call (1-based) and
 * may hold the pump (to kill a plugin and wait for it, say).
 */
async function pump(
  total: number,
  maxOutstanding: number,
  dispatchOne: (index: number) => Promise<void>,
  afterDispatch?: (n: number) => Promise<void> | undefined,
): Promise<PumpResult> {
  let outstanding = 0;
  let wake: (() => void) | undefined;
  const result: PumpResult = { resolved: 0, rejected: [] };
  const all: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    while (outstanding >= maxOutstanding) {
      await within(
        new Promise<void>((resolve) => (wake = resolve)),
        60_000,
        `a dispatch to settle (${outstanding} outstanding, ${i} of ${total} dispatched)`,
      );
    }
    outstanding++;
    all.push(
      dispatchOne(i)
        .then(
          () => void result.resolved++,
          (error: PlugwireError) => void result.rejected.push({ index: i, error }),
        )
        .finally(() => {
          outstanding--;
          const w = wake;
          wake = undefined;
          w?.();
        }),
    );
    const held = afterDispatch?.(i + 1);
    if (held) await held;
  }
  await within(Promise.all(all), 60_000, `the last ${outstanding} dispatches to settle`);
  return result;
}

/** Sum of a numeric field over the log lines with message `msg`. */
function sumLogged(lines: LogLine[], msg: string, field: string): number {
  return lines.filter((l) => l.msg === msg).reduce((n, l) => n + Number(l[field] ?? 0), 0);
}

describe("delivery guarantees across crashes", { timeout: 120_000 }, () => {
  test("crash mid-stream: 50 000 counter.hit payloads, 4 SIGKILLs in flight, counts exact and every dispatch resolved", { timeout: 120_000 }, async () => {
    const TOTAL = 50_000;
    const KILLS_AT = new Set([8_000, 18_000, 28_000, 38_000]);
    const peers = [1, 2, 3, 4, 5].map(peer);
    const { logger, lines } = captureLogger();
    const t = testHost([nodePlugin("counter", example("counter"))], { logger, snapshotIntervalMs: 300 });
    const taken: Taken[] = [];
    const restored: Restored[] = [];
    t.host.on("snapshot:taken", (e) => taken.push(e));
    t.host.on("snapshot:restored", (e) => restored.push(e));
    try {
      await t.host.start();
      const expected = new Map<string, number>();
      // A fixed, uneven spread of sources.
      const srcOf = (i: number): Uint8Array => peers[(i * 7919 + (i >> 5)) % 11 % peers.length]!;
      const kills: KillRecord[] = [];
      const result = await pump(
        TOTAL,
        4_000, // under the default maxQueued (10 000), which also bounds what waits during a restart
        (i) => {
          const src = srcOf(i);
          expected.set(hex(src), (expected.get(hex(src)) ?? 0) + 1);
          return t.host.dispatch(src, "counter.hit", encoder.encode("hit"));
        },
        (n) => (KILLS_AT.has(n) ? killAndAwaitReady(t, "counter").then((k) => void kills.push(k)) : undefined),
      );
      assert.deepEqual(result.rejected, [], "every dispatch resolves");
      assert.equal(result.resolved, TOTAL);
      assert.equal(kills.length, 4);
      assert.ok(
        kills.every((k) => k.inFlight + k.queued > 0),
        `every kill happens with payloads outstanding: ${JSON.stringify(kills)}`,
      );
      assert.ok(kills.filter((k) => k.inFlight > 0).length >= 3, `at least 3 kills with payloads in flight: ${JSON.stringify(kills)}`);

      const record = await t.host.snapshot("counter");
      assert.ok(record);
      assert.equal(record.appliedSeq, TOTAL, "one seq per payload: nothing dead-lettered, nothing skipped");
      assert.deepEqual(JSON.parse(decoder.decode(record.bytes)), Object.fromEntries(expected));
      assert.deepEqual(t.host.listDeadLetters("counter"), []);
      const s = status(t.host, "counter");
      assert.equal(s.restarts, 4);
      assert.equal(s.lastAcked, TOTAL);
      // The crashes really exercised restore + replay + redelivery.
      assert.ok(restored.length >= 3, `relaunches restored the latest snapshot (${restored.length})`);
      assert.ok(taken.length >= 2, `periodic snapshots were taken (${taken.length})`);
      const replayed = sumLogged(lines, "payloads replayed to the new launch", "replayed");
      const redelivered = sumLogged(lines, "payloads replayed to the new launch", "redelivered");
      assert.ok(replayed > 0, "acked payloads after the latest snapshot were replayed");
      assert.ok(redelivered > 0, "un-acked payloads were redelivered");
    } finally {
      await t.close();
    }
  });

  test("no duplicate effects: echo under 3 SIGKILLs sends each unique body exactly once", { timeout: 120_000 }, async () => {
    const TOTAL = 12_000;
    const KILLS_AT = new Set([3_000, 6_000, 9_000]);
    const { logger, lines } = captureLogger();
    const t = testHost([nodePlugin("echo", example("echo"), { capabilities: ["control"] })], { logger });
    try {
      await t.host.start();
      const src = peer(9);
      const kills: KillRecord[] = [];
      const result = await pump(
        TOTAL,
        3_000,
        (i) => t.host.dispatch(src, "echo.ping", encoder.encode(`m-${i}`)),
        (n) => (KILLS_AT.has(n) ? killAndAwaitReady(t, "echo").then((k) => void kills.push(k)) : undefined),
      );
      assert.deepEqual(result.rejected, []);
      assert.equal(kills.length, 3);
      assert.ok(kills.filter((k) => k.inFlight > 0).length >= 2, `kills with payloads in flight: ${JSON.stringify(kills)}`);
      assert.ok(sumLogged(lines, "payloads replayed to the new launch", "redelivered") > 0, "un-acked payloads were redelivered");

      const seen = new Map<string, number>();
      for (const s of t.sent) {
        assert.equal(s.kind, "direct");
        assert.equal(s.peer, hex(src));
        seen.set(s.frame, (seen.get(s.frame) ?? 0) + 1);
      }
      const duplicated = [...seen].filter(([, n]) => n > 1);
      const missing = Array.from({ length: TOTAL }, (_, i) => `pong:m-${i}`).filter((f) => !seen.has(f));
      assert.deepEqual(duplicated, [], "no body was sent twice");
      assert.deepEqual(missing, [], "no body is missing");
      assert.equal(t.sent.length, TOTAL);
    } finally {
      await t.close();
    }
  });

  test("sendRouted is deduplicated by (seq, index) across kills, replay and redelivery; routed answers in state stay exact", { timeout: 120_000 }, async () => {
    const { logger, lines } = captureLogger();
    const t = testHost([nodePlugin("effects", fixture("effects"), { capabilities: ["control"] })], { logger });
    // The recording port's sends as events, so the test can wait for the plugin to be mid-stream.
    const sends = new EventEmitter();
    const push = t.sent.push.bind(t.sent);
    t.sent.push = (...items) => {
      const n = push(...items);
      sends.emit("sent", n);
      return n;
    };
    const untilSent = async (n: number): Promise<void> => {
      if (t.sent.length < n) await waitFor<number>(sends, "sent", (length) => length >= n, 30_000);
    };
    // The recording port routes to peers whose id starts with 1.
    const srcOf = (i: number): Uint8Array => (i % 3 === 0 ? peer(1) : peer(2));
    let next = 0;
    const batch = (n: number): Promise<void>[] =>
      Array.from({ length: n }, () => {
        const i = next++;
        return t.host.dispatch(srcOf(i), "effects.route", encoder.encode(`r-${i}`));
      });
    try {
      await t.host.start();
      await Promise.all(batch(300));
      const snap = await t.host.snapshot("effects");
      assert.equal(snap?.appliedSeq, 300);
      await Promise.all(batch(150)); // acked after the snapshot: kept for replay

      // Kill 1: while a batch is half handled.
      const inFlight1 = batch(150);
      await untilSent(450 + 50);
      await killAndAwaitReady(t, "effects");
      // Kill 2: while the redelivered and the next batch are being handled.
      const inFlight2 = batch(150);
      await untilSent(600 + 50);
      await killAndAwaitReady(t, "effects");
      await within(Promise.all([...inFlight1, ...inFlight2]), 60_000, "the payloads in flight at the kills");
      const TOTAL = next;

      const relaunches = lines.filter((l) => l.msg === "payloads replayed to the new launch");
      assert.equal(relaunches.length, 2);
      // At least the 150 acked after the snapshot; more when the plugin acked
      // part of the in-flight batch before the kill (it acks every 20 ms).
      assert.ok(Number(relaunches[0]!.replayed) >= 150, "the handlers of the payloads acked after the snapshot ran again");
      assert.ok(Number(relaunches[0]!.redelivered) > 0);
      assert.ok(Number(relaunches[1]!.replayed) > 150, "the second relaunch replayed those again, and more");

      const routedFrames = new Map<string, number>();
      for (const s of t.sent) {
        assert.equal(s.kind, "routed");
        routedFrames.set(s.frame, (routedFrames.get(s.frame) ?? 0) + 1);
      }
      assert.deepEqual([...routedFrames].filter(([, n]) => n > 1), [], "no routed send was made twice");
      assert.equal(routedFrames.size, TOTAL, "every payload made its routed send");

      let digest = "";
      for (let i = 0; i < TOTAL; i++) {
        digest = createHash("sha256").update(`${digest}|r-${i}=${srcOf(i)[0] === 1}`).digest("hex");
      }
      const record = await t.host.snapshot("effects");
      assert.ok(record);
      assert.equal(record.appliedSeq, TOTAL);
      assert.deepEqual(JSON.parse(decoder.decode(record.bytes)), {
        handled: TOTAL,
        routed: TOTAL / 3,
        unrouted: (TOTAL * 2) / 3,
        digest,
      });
    } finally {
      await t.close();
    }
  });
});

describe("poison pills and dead letters", { timeout: 60_000 }, () => {
  test("a payload that crashes its plugin twice is parked; the plugin recovers; replayDeadLetter dispatches it again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-poison-"));
    const cureFile = join(dir, "cured");
    const t = testHost([nodePlugin("poison", fixture("poison"), { capabilities: ["control"], config: { cureFile } })]);
    const exits: Exit[] = [];
    t.host.on("plugin:exit", (e) => exits.push(e));
    const src = peer(3);
    const send = (body: string): Promise<void> => t.host.dispatch(src, "poison.data", encoder.encode(body));
    const handled = (): string[] => t.sent.map((s) => s.frame);
    try {
      await t.host.start();
      await send("good-1"); // seq 1

      const parked = waitFor<HostEvents["plugin:dead-letter"][0]>(t.host, "plugin:dead-letter", () => true, 30_000);
      const poison = send("poison"); // seq 2
      const good2 = send("good-2"); // seq 3, queued behind the poison
      await assert.rejects(poison, {
        name: "PlugwireError",
        code: "handler_failed",
        message:
          "payload seq 2 (kind 'poison.data') crashed plugin 'poison' twice and was moved to its dead letters; " +
          "inspect it with listDeadLetters('poison')",
      });
      await within(good2, 30_000, "the payload after the poison");
      assert.equal((await parked).letter.seq, 2);
      assert.deepEqual(
        exits.map((e) => e.code),
        [1, 1],
        "exactly two crashes",
      );
      assert.ok(exits[0]!.stderrTail.some((l) => l.includes("poison: seq 2 is poison; crashing")));

      const letters = t.host.listDeadLetters("poison");
      assert.equal(letters.length, 1);
      const [letter] = letters as [(typeof letters)[number]];
      assert.equal(letter.seq, 2);
      assert.equal(letter.kind, "poison.data");
      assert.equal(letter.sizeBytes, 6);
      assert.equal(decoder.decode(letter.body), "poison");
      assert.equal(hex(letter.src), hex(src));
      assert.equal(letter.reason, "in flight during 2 consecutive crashes of plugin 'poison'");
      assert.ok(letter.parkedAt instanceof Date);

      await untilReady(t.host, "poison");
      const s = status(t.host, "poison");
      assert.equal(s.state, "ready");
      assert.equal(s.deadLetters, 1);
      assert.equal(s.restarts, 2);
      await send("good-3");
      assert.deepEqual(handled(), ["handled:good-1", "handled:good-2", "handled:good-3"]);

      // Replayed while the plugin still crashes on it: a new seq, two more crashes, parked again.
      await assert.rejects(t.host.replayDeadLetter("poison", 2), {
        code: "handler_failed",
        message:
          "payload seq 5 (kind 'poison.data') crashed plugin 'poison' twice and was moved to its dead letters; " +
          "inspect it with listDeadLetters('poison')",
      });
      assert.deepEqual(
        t.host.listDeadLetters("poison").map((d) => [d.seq, decoder.decode(d.body)]),
        [[5, "poison"]],
      );
      await untilReady(t.host, "poison");

      // Once the plugin copes with it, the replay is handled like any payload.
      writeFileSync(cureFile, "");
      await t.host.replayDeadLetter("poison", 5);
      assert.deepEqual(t.host.listDeadLetters("poison"), []);
      assert.deepEqual(handled(), ["handled:good-1", "handled:good-2", "handled:good-3", "handled:poison"]);
      assert.equal(exits.length, 4);
      assert.equal(status(t.host, "poison").state, "ready", "4 crashes in a minute stay under the crash-loop limit");

      await assert.rejects(t.host.replayDeadLetter("poison", 5), {
        code: "invalid_argument",
        message: "plugin 'poison' has no dead letter with seq 5; list them with listDeadLetters('poison')",
      });
    } finally {
      await t.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("good, poison, good dispatched at once: only the poison is parked, each good payload is handled and acked once", async () => {
    const t = testHost([nodePlugin("poison", fixture("poison"), { capabilities: ["control"] })]);
    const exits: Exit[] = [];
    t.host.on("plugin:exit", (e) => exits.push(e));
    const src = peer(3);
    try {
      await t.host.start();
      const [a, p, b] = ["good-a", "poison", "good-b"].map((body) => t.host.dispatch(src, "poison.data", encoder.encode(body)));
      await assert.rejects(p!, { code: "handler_failed", message: /^payload seq 2 \(kind 'poison.data'\) crashed plugin 'poison' twice/ });
      await within(Promise.all([a, b]), 30_000, "the good payloads");
      assert.deepEqual(
        t.host.listDeadLetters("poison").map((d) => [d.seq, decoder.decode(d.body)]),
        [[2, "poison"]],
      );
      assert.deepEqual(
        t.sent.map((s) => s.frame),
        ["handled:good-a", "handled:good-b"],
      );
      // The first crash came before good-a's ack left the plugin, so good-a
      // was suspected once; the next launch acked it before touching the
      // poison, which then crashed two launches in a row.
      assert.equal(exits.length, 3);
      await untilReady(t.host, "poison");
    } finally {
      await t.close();
    }
  });
});

describe("replay buffer bound", { timeout: 60_000 }, () => {
  test("maxReplayPayloads 500 and no interval: early snapshots fire on their own, and state is exact after a kill", async () => {
    const TOTAL = 2_000;
    const BOUND = 500;
    const { logger, lines } = captureLogger();
    const t = testHost([nodePlugin("counter", example("counter"), { maxReplayPayloads: BOUND })], { logger, snapshotIntervalMs: 0 });
    const taken: Taken[] = [];
    t.host.on("snapshot:taken", (e) => taken.push(e));
    const early = (): number => lines.filter((l) => l.msg === "replay buffer is full; snapshotting early to trim it").length;
    try {
      await t.host.start();
      const src = peer(6);
      const result = await pump(TOTAL, 300, () => t.host.dispatch(src, "counter.hit", encoder.encode("hit")));
      assert.deepEqual(result.rejected, []);
      // Let an early snapshot still under way finish, so the kill below does not race it.
      if (taken.length < early()) {
        await waitFor(t.host, "snapshot:taken", () => taken.length >= early(), 30_000);
      }
      assert.ok(taken.length >= 1, "a snapshot was taken although none was asked for");
      assert.equal(taken.length, early(), "each snapshot was an early one");
      for (const l of lines.filter((l) => l.msg === "replay buffer is full; snapshotting early to trim it")) {
        assert.ok(Number(l.replay) > BOUND, `early snapshot triggered past the bound (${String(l.replay)})`);
      }
      const last = taken.at(-1)!;

      const restored = waitFor<Restored>(t.host, "snapshot:restored", () => true, 30_000);
      await killAndAwaitReady(t, "counter");
      const event = await restored;
      assert.equal(event.appliedSeq, last.appliedSeq, "the latest early snapshot was restored");
      assert.equal(event.replayed, TOTAL - last.appliedSeq, "only payloads after it were kept for replay");

      // Acked in order after the replay, so the state now covers every payload.
      await t.host.dispatch(src, "counter.hit", encoder.encode("hit"));
      const record = await t.host.snapshot("counter");
      assert.ok(record);
      assert.equal(record.appliedSeq, TOTAL + 1);
      assert.deepEqual(JSON.parse(decoder.decode(record.bytes)), { [hex(src)]: TOTAL + 1 });
    } finally {
      await t.close();
    }
  });
});
