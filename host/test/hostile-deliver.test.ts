/**
 * Hostile-input battery, Deliver family (issue 12): real misbehaving plugins
 * (fixtures/hostile-deliver.ts speaks raw Deliver) next to a well-behaved
 * neighbour (the echo example). Each case checks the exact error, that the
 * host is still up and the neighbour serves, and that no acked payload was
 * lost or doubled where that applies.
 */
import test from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { pino, type Logger } from "pino";
import { Capability, PluginService, PlugwireError, connect, truncateText, type DeliverResponse } from "@plugwire/proto";
import type { PluginConfig } from "../src/index.js";
import { createRunDir, removeRunDir } from "../src/launch/rundir.js";
import { launchPlugin, type PluginProcess } from "../src/launch/spawn.js";
import { dialPlugin, type DialedPlugin } from "../src/transport/dial.js";
import { alive, example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const encoder = new TextEncoder();
const HOSTILE = fixture("hostile-deliver");
const TIMEOUT_MS = 60_000;
const MiB = 1024 * 1024;

interface LogLine {
  level: number;
  msg: string;
  plugin?: string;
  [key: string]: unknown;
}

/** A pino logger whose JSON lines are kept in `lines`. */
function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

function hostile(mode: string, extra: Partial<PluginConfig> = {}): PluginConfig {
  return nodePlugin(`hd-${mode}`, HOSTILE, { args: [mode], ...extra });
}

const neighbour = (): PluginConfig => nodePlugin("echo", example("echo"), { capabilities: ["control"] });

/** The host is up and the neighbour serves: a ping is answered with exactly one pong. */
async function neighbourServes(t: TestHost, tag: string): Promise<void> {
  const src = peer(42);
  await t.host.dispatch(src, "echo.ping", encoder.encode(tag));
  const pongs = t.sent.filter((s) => s.frame === `pong:${tag}`);
  assert.equal(pongs.length, 1, `the neighbour answered '${tag}' exactly once`);
  assert.ok(
    t.host.status().some((s) => s.name === "echo" && s.state === "ready"),
    "the neighbour is ready",
  );
}

/** The error a dispatch rejected with. */
async function rejection(work: Promise<unknown>): Promise<PlugwireError> {
  return work.then(
    () => assert.fail("the dispatch should have failed"),
    (e: unknown) => PlugwireError.from(e),
  );
}

function statusOf(t: TestHost, name: string) {
  const s = t.host.status().find((p) => p.name === name);
  assert.ok(s, `plugin '${name}' has a status`);
  return s;
}

/** Lines whose message matches, not counting the summaries of aggregated warnings (`suppressed: N`). */
function matching(lines: LogLine[], pattern: RegExp): LogLine[] {
  return lines.filter((l) => l.suppressed === undefined && pattern.test(l.msg));
}

/** How many events of aggregated warnings matching `pattern` were logged or counted in summaries. */
function counted(lines: LogLine[], pattern: RegExp): number {
  return lines.filter((l) => pattern.test(l.msg)).reduce((n, l) => n + (typeof l.suppressed === "number" ? l.suppressed : 1), 0);
}

function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

test("H-DELIV-01: an ack with 1,000,000 effects (control granted) -> the item fails with too_many_effects, none is performed, memory stays bounded", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("flood-effects", { capabilities: ["control"] }), neighbour()], { logger });
  try {
    await t.host.start();
    const before = rssMiB();
    const error = await rejection(t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("1000000")));
    const grown = rssMiB() - before;
    assert.equal(error.code, "too_many_effects");
    assert.equal(error.plugin, "hd-flood-effects");
    assert.match(error.message, /^plugin 'hd-flood-effects' sent an ack carrying 1000000 effects in all, over the limit of 65536 per ack; none of that ack's effects was performed/);
    assert.match(error.message, /payload seq 1 \(kind 'hd\.flood-effects'\)/);
    assert.match(error.message, /must ack more often/);
    assert.deepEqual(t.sent, [], "no effect of that ack was performed");
    // Before the cap the probe saw +824 MB; the decoder now builds at most 65,536 effects.
    assert.ok(grown < 300, `host RSS grew by ${grown.toFixed(0)} MiB`);
    assert.equal(matching(lines, /effects in all/).length, 1, "one warning, not one per effect");
    // The plugin is not restarted for it: the next payload goes through.
    await t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("1"));
    assert.deepEqual(t.sent, [{ kind: "direct", peer: Buffer.from(peer(1)).toString("hex"), frame: "fx:1:0" }]);
    assert.equal(statusOf(t, "hd-flood-effects").restarts, 0);
    await neighbourServes(t, "after-flood");
  } finally {
    await t.close();
  }
});

test("H-DELIV-02: 1,000,000 effects from a plugin without control -> too_many_effects, and one log line instead of a million", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("flood-effects"), neighbour()], { logger });
  try {
    await t.host.start();
    const error = await rejection(t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("1000000")));
    assert.equal(error.code, "too_many_effects");
    assert.equal(error.plugin, "hd-flood-effects");
    assert.deepEqual(t.sent, []);
    // (The plugin's own loop may stall while it encodes a million effects, and miss a health check.)
    const warned = lines.filter((l) => l.plugin === "hd-flood-effects" && l.level >= 40 && /effect/.test(l.msg) && l.suppressed === undefined);
    assert.equal(warned.length, 1, `warnings logged: ${warned.map((l) => l.msg).join(" | ")}`);
    await neighbourServes(t, "after-flood-nocontrol");
  } finally {
    await t.close();
  }
});

test("H-DELIV-03: 2,000 payloads each acked with an effect, without control -> each fails with permission_denied, logged once then summarised", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("flood-effects"), neighbour()], { logger });
  const N = 2_000;
  try {
    await t.host.start();
    const results = await Promise.allSettled(Array.from({ length: N }, () => t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("1"))));
    const codes = new Set(results.map((r) => (r.status === "rejected" ? PlugwireError.from(r.reason).code : "resolved")));
    assert.deepEqual([...codes], ["permission_denied"]);
    const first = results[0] as PromiseRejectedResult;
    assert.match(
      PlugwireError.from(first.reason).message,
      /^plugin 'hd-flood-effects' is not granted the 'control' capability, so the 1 effect\(s\) of payload seq 1 \(kind 'hd\.flood-effects'\) were not performed and the item counts as failed; grant 'control'/,
    );
    assert.deepEqual(t.sent, [], "no effect performed");
    assert.equal(matching(lines, /is not granted the 'control' capability/).length, 1, "logged once while it goes on");
    await neighbourServes(t, "after-refusals");
  } finally {
    await t.close();
  }
  // The rest are counted in summaries (every 10 s, and when the plugin stops): none is lost, none logged on its own.
  const summaries = lines.filter((l) => l.suppressed !== undefined && /is not granted the 'control' capability.*\(\d+ more like this in the last \d+ s\)$/.test(l.msg));
  assert.ok(summaries.length >= 1);
  assert.equal(counted(lines, /is not granted the 'control' capability/), N);
});

test("H-DELIV-04: one item over maxEffectsPerItem -> that item fails with too_many_effects; the item beside it keeps its effects", { timeout: TIMEOUT_MS }, async () => {
  const t = testHost([hostile("flood-effects", { capabilities: ["control"], maxEffectsPerItem: 10 }), neighbour()]);
  try {
    await t.host.start();
    const [over, within] = await Promise.allSettled([
      t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("11")),
      t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("2")),
    ]);
    assert.equal(within.status, "fulfilled");
    assert.equal(over.status, "rejected");
    const error = PlugwireError.from(over.reason);
    assert.equal(error.code, "too_many_effects");
    assert.equal(error.plugin, "hd-flood-effects");
    assert.equal(
      error.message,
      "plugin 'hd-flood-effects' reported 11 effects for payload seq 1 (kind 'hd.flood-effects'), over its limit of 10 per item (maxEffectsPerItem); " +
        "none of them was performed and the item counts as failed. Make the handler send fewer messages (batch them into fewer frames), " +
        "or raise maxEffectsPerItem for this plugin.",
    );
    assert.deepEqual(
      t.sent.map((s) => s.frame),
      ["fx:2:0", "fx:2:1"],
      "all of the item within the limit, none of the one over it, each once",
    );
    await neighbourServes(t, "after-per-item");
  } finally {
    await t.close();
  }
});

test("H-DELIV-05: an effect frame of 100 MiB -> the host refuses the message (16 MiB limit), restarts the plugin and redelivers the item once", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("huge-frame", { capabilities: ["control"] }), neighbour()], { logger });
  try {
    await t.host.start();
    const before = rssMiB();
    await t.host.dispatch(peer(1), "hd.huge-frame", encoder.encode("huge"));
    const grown = rssMiB() - before;
    // The dispatch resolved: the item was redelivered to the next launch, which acked it plainly.
    const broke = matching(lines, /Deliver stream broke/);
    assert.equal(broke.length, 1);
    assert.match(String(broke[0]!.why), /Received message larger than max \(10485\d{4} vs 16777216\)/);
    assert.equal(statusOf(t, "hd-huge-frame").restarts, 1);
    assert.deepEqual(t.sent, [], "the oversized effect was never performed");
    assert.ok(grown < 200, `host RSS grew by ${grown.toFixed(0)} MiB: the 100 MiB message was not buffered`);
    await t.host.dispatch(peer(1), "hd.huge-frame", encoder.encode("small"));
    await neighbourServes(t, "after-huge");
  } finally {
    await t.close();
  }
});

test("H-DELIV-06: acks through 2^64-1, far beyond anything sent -> clamped to what was sent, warned once per launch, nothing lost", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("ack-max"), neighbour()], { logger });
  const N = 500;
  try {
    await t.host.start();
    const results = await Promise.allSettled(Array.from({ length: N }, (_, i) => t.host.dispatch(peer(1), "hd.ack-max", encoder.encode(`m${i}`))));
    assert.deepEqual(results.filter((r) => r.status === "rejected"), []);
    const s = statusOf(t, "hd-ack-max");
    assert.equal(s.lastAcked, N, "the ack counts only through the highest seq sent");
    assert.equal(s.inFlight, 0);
    const clamped = matching(lines, /acked through seq 18446744073709\d+ on its Deliver stream, but this launch was sent items only up to seq \d+/);
    assert.equal(clamped.length, 1, "one warning per launch");
    // Later payloads are still acked as they are sent, not pre-acked by the bogus ack.
    await t.host.dispatch(peer(1), "hd.ack-max", encoder.encode("later"));
    assert.equal(statusOf(t, "hd-ack-max").lastAcked, N + 1);
    await neighbourServes(t, "after-ack-max");
  } finally {
    await t.close();
  }
});

test("H-DELIV-07: acks going backwards, carrying error outcomes -> ignored with their outcomes, warned once, every payload acked once", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("backwards"), neighbour()], { logger });
  const N = 300;
  try {
    await t.host.start();
    const results = await Promise.allSettled(Array.from({ length: N }, (_, i) => t.host.dispatch(peer(1), "hd.backwards", encoder.encode(`m${i}`))));
    assert.deepEqual(
      results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason)),
      [],
      "the late error outcomes of a backwards ack fail nothing",
    );
    assert.equal(statusOf(t, "hd-backwards").lastAcked, N);
    const warned = matching(lines, /^plugin 'hd-backwards' sent an ack through seq 0 after acking through \d+ on the same stream; an ack that does not advance is ignored/);
    assert.equal(warned.length, 1, "logged once while it goes on");
    await neighbourServes(t, "after-backwards");
  } finally {
    await t.close();
  }
});

test("H-DELIV-08: outcomes for seqs never sent (0, 10^12) and for a seq not yet acked -> ignored; the item is acked later without them", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("stray"), neighbour()], { logger });
  const N = 200;
  try {
    await t.host.start();
    const results = await Promise.allSettled(Array.from({ length: N }, (_, i) => t.host.dispatch(peer(1), "hd.stray", encoder.encode(`m${i}`))));
    assert.deepEqual(
      results.filter((r) => r.status === "rejected").map((r) => String((r as PromiseRejectedResult).reason)),
      [],
      "no item fails from an outcome its ack did not cover",
    );
    assert.equal(statusOf(t, "hd-stray").lastAcked, N);
    // The first stray outcome (for seq 128, before its ack, or for seq 0) is logged; the rest are counted.
    const stray = matching(lines, /^plugin 'hd-stray' sent [12] outcome\(s\) \(the first for seq \d+\) that its ack through seq \d+ does not newly cover; they are ignored/);
    assert.equal(stray.length, 1, "logged once while it goes on");
    await neighbourServes(t, "after-stray");
  } finally {
    await t.close();
  }
});

test("H-DELIV-09: a plugin that never reads its Deliver stream -> bounded window, queue_full past maxQueued with one log line, then killed as hung per ackTimeoutMs", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const MAX_QUEUED = 1_000;
  const t = testHost(
    [hostile("never-read", { maxQueued: MAX_QUEUED, ackTimeoutMs: 2_000, healthIntervalMs: 250, maxRestarts: 100 }), neighbour()],
    { logger },
  );
  const N = 20_000;
  try {
    await t.host.start();
    const hung = waitFor<{ plugin: string; state: string }>(t.host, "plugin:state", (e) => e.plugin === "hd-never-read" && e.state !== "ready", TIMEOUT_MS);
    const body = new Uint8Array(1024);
    const pending = Array.from({ length: N }, () => t.host.dispatch(peer(1), "hd.never-read", body));
    for (const p of pending) p.catch(() => undefined);
    // Dispatched in one go: the first MAX_QUEUED wait, every later one is refused at once.
    const rejected = await Promise.allSettled(pending.slice(MAX_QUEUED));
    assert.deepEqual(new Set(rejected.map((r) => (r.status === "rejected" ? PlugwireError.from(r.reason).code : "resolved"))), new Set(["queue_full"]));
    // The window fills (bounded by maxInFlightBytes, 128 KiB) and stays so: the plugin acks nothing.
    for (let i = 0; i < 10_000 && statusOf(t, "hd-never-read").inFlight === 0; i++) await new Promise((r) => setImmediate(r));
    const s = statusOf(t, "hd-never-read");
    assert.ok(s.inFlight > 0 && s.inFlight <= 128, `in flight: ${s.inFlight} (128 KiB of 1 KiB payloads at most)`);
    assert.equal(s.inFlight + s.queued, MAX_QUEUED);
    const error = PlugwireError.from((rejected[0] as PromiseRejectedResult).reason);
    assert.equal(error.code, "queue_full");
    assert.equal(error.plugin, "hd-never-read");
    assert.match(error.message, /^plugin 'hd-never-read' has 1000 payloads waiting \(maxQueued 1000\); payload of kind 'hd\.never-read' was rejected\. Retry later, raise maxQueued, or use overflow: drop-oldest\./);
    const full = matching(lines, /queue full/);
    assert.equal(full.length, 1, `one line for ${N - MAX_QUEUED} rejections`);
    await neighbourServes(t, "while-never-read");
    await hung;
    const killed = matching(lines, /^plugin 'hd-never-read' acked nothing for \d+ ms, past its ackTimeoutMs \(2000 ms\)/);
    assert.ok(killed.length >= 1, "declared hung by the ack timeout");
    await neighbourServes(t, "after-never-read");
  } finally {
    await t.close();
  }
});

test("H-DELIV-10: a plugin that ends every Deliver stream at once -> one stream per launch, restarts until maxRestarts, then plugin_failed", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("end-stream", { maxRestarts: 2, backoffInitialMs: 10, backoffMaxMs: 50 }), neighbour()], { logger });
  try {
    await t.host.start().catch(() => undefined);
    if (statusOf(t, "hd-end-stream").state !== "failed") {
      await waitFor<{ plugin: string; state: string }>(t.host, "plugin:state", (e) => e.plugin === "hd-end-stream" && e.state === "failed", TIMEOUT_MS);
    }
    const opened = lines.filter((l) => l.plugin === "hd-end-stream" && /^deliver stream #\d+ opened$/.test(l.msg)).map((l) => l.msg);
    assert.ok(opened.length >= 3, `streams seen: ${opened.length}`);
    assert.deepEqual(new Set(opened), new Set(["deliver stream #1 opened"]), "the host opened one Deliver stream per launch, never a second");
    const error = await rejection(t.host.dispatch(peer(1), "hd.end-stream", encoder.encode("x")));
    assert.equal(error.code, "plugin_failed");
    assert.equal(error.plugin, "hd-end-stream");
    await neighbourServes(t, "after-end-stream");
  } finally {
    await t.close();
  }
});

/** The socket of the running launch of `name` in the host's run dir. */
function socketOf(t: TestHost, name: string): string {
  const dir = t.host.runDirectory!;
  const socks = readdirSync(dir).filter((f) => f.startsWith(`${name}-`) && f.endsWith(".sock"));
  assert.equal(socks.length, 1, `one socket for '${name}' in ${dir}`);
  return join(dir, socks[0]!);
}

test("H-DELIV-11: a local process opens 1,000 Deliver streams to an SDK plugin without its token -> each refused, the plugin keeps serving the host", { timeout: TIMEOUT_MS }, async () => {
  const t = testHost([neighbour(), nodePlugin("echo2", example("echo"), { capabilities: ["control"] })]);
  try {
    await t.host.start();
    const target = `unix://${socketOf(t, "echo")}`;
    const intruder = connect(PluginService, target, { token: randomBytes(24).toString("base64url"), plugin: "echo" });
    try {
      const refusals = await Promise.all(
        Array.from(
          { length: 1_000 },
          () =>
            new Promise<{ code: number; details: string; data: number }>((resolve) => {
              const call = intruder.client.deliver();
              let data = 0;
              call.on("data", () => data++);
              call.on("error", (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details, data }));
              call.on("end", () => resolve({ code: grpc.status.OK, details: "ended", data }));
              call.write({ items: [{ seq: 1_000_000n, redelivered: false, item: { case: "payload", value: { src: peer(1), kind: "echo.ping", body: encoder.encode("forged") } } }] } as never);
            }),
        ),
      );
      // Refused per call (UNAUTHENTICATED, before the handler runs), or per connection where
      // the SDK accepts only its host's connection (UNAVAILABLE): never served.
      const codes = new Set(refusals.map((r) => r.code));
      assert.ok(
        [...codes].every((c) => c === grpc.status.UNAUTHENTICATED || c === grpc.status.UNAVAILABLE),
        `every stream refused: ${[...codes].map((c) => grpc.status[c]).join(", ")}`,
      );
      for (const r of refusals.filter((r) => r.code === grpc.status.UNAUTHENTICATED)) {
        assert.match(r.details, /^plugin 'echo' refused Deliver: the call carried no valid plugwire auth token \(send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>'\)/);
      }
      assert.equal(refusals.reduce((n, r) => n + r.data, 0), 0, "no ack went to the intruder");
    } finally {
      intruder.close();
    }
    assert.deepEqual(t.sent.filter((s) => s.frame === "pong:forged"), [], "the forged item was never handled");
    // The plugin still serves the host, from seq 1 (the forged seq 1,000,000 did not move its applied seq).
    await neighbourServes(t, "after-intruder");
    await t.host.dispatch(peer(3), "echo.ping", encoder.encode("second"));
    assert.equal(t.sent.filter((s) => s.frame === "pong:second").length, 1);
    assert.equal(statusOf(t, "echo").restarts, 0);
  } finally {
    await t.close();
  }
});

test("H-DELIV-12: with its token, 1,000 Deliver streams opened one after another to an SDK plugin -> each new one ends the one before, acks go to the newest only", { timeout: TIMEOUT_MS }, async () => {
  const runDir = createRunDir();
  const token = randomBytes(24).toString("base64url");
  let proc: PluginProcess | undefined;
  let conn: DialedPlugin | undefined;
  try {
    proc = await launchPlugin(
      { name: "spec", command: process.execPath, args: [fixture("spec-sdk")] },
      {
        runDir,
        hostAddress: `unix://${join(runDir, "host.sock")}`,
        token,
        instanceId: "spec-1",
        handshakeTimeoutMs: 10_000,
        maxLogLineBytes: 16 * 1024,
        maxLogLinesPerSecond: 10_000,
        stderrTailLines: 20,
        logger: pino({ level: "silent" }),
        onLog: () => undefined,
      },
    );
    conn = dialPlugin(proc.handshake, token, "spec");
    await conn.plugin.describe({ protocolVersion: 1 }, { deadlineMs: TIMEOUT_MS });
    await conn.plugin.start({ dataDir: runDir, instanceId: "spec-1", configJson: "{}", capabilities: [Capability.CONTROL] }, { deadlineMs: TIMEOUT_MS });
    type Call = ReturnType<DialedPlugin["plugin"]["deliver"]>;
    const streams: Array<{ call: Call; acks: DeliverResponse[]; ended: Promise<void> }> = [];
    const open = (): (typeof streams)[number] => {
      const call = conn!.plugin.deliver();
      const acks: DeliverResponse[] = [];
      call.on("data", (r: DeliverResponse) => acks.push(r));
      call.on("error", () => undefined);
      const ended = new Promise<void>((resolve) => {
        call.on("end", () => resolve());
        call.on("error", () => resolve());
      });
      const s = { call, acks, ended };
      streams.push(s);
      return s;
    };
    const send = (s: (typeof streams)[number], seq: number, body: string): void =>
      void s.call.write({ items: [{ seq: BigInt(seq), redelivered: false, item: { case: "payload", value: { src: peer(1), kind: "spec.add", body: encoder.encode(body) } } }] } as never);
    const first = open();
    send(first, 1, "2");
    await waitForAck(first, 1);
    for (let i = 0; i < 1_000; i++) open();
    // Every stream but the newest was ended by the plugin.
    await Promise.all(streams.slice(0, -1).map((s) => s.ended));
    const newest = streams.at(-1)!;
    send(newest, 2, "3");
    await waitForAck(newest, 2);
    assert.deepEqual(
      newest.acks.map((a) => Number(a.ackedThrough)),
      [2],
      "the newest stream's first ack covers what the process handled, up to what it carried",
    );
    assert.equal(streams.slice(1, -1).reduce((n, s) => n + s.acks.length, 0), 0, "the superseded streams got no ack");
    assert.ok(alive(proc.pid), "the plugin process still runs");
  } finally {
    conn?.close();
    if (proc) {
      proc.signalGroup("SIGKILL", true);
      await proc.exited;
    }
    removeRunDir(runDir);
  }
});

async function waitForAck(s: { acks: DeliverResponse[]; call: NodeJS.EventEmitter }, seq: number): Promise<void> {
  if (s.acks.some((a) => Number(a.ackedThrough) >= seq)) return;
  await waitFor<DeliverResponse>(s.call as never, "data", (a) => Number(a.ackedThrough) >= seq, TIMEOUT_MS);
}

test("H-DELIV-13: 1 MiB payloads to a plugin that never reads its stream -> queued up to maxQueuedBytes, then queue_full naming the bytes", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("never-read", { maxQueuedBytes: 8 * MiB }), neighbour()], { logger });
  try {
    await t.host.start();
    const body = new Uint8Array(MiB);
    const pending = Array.from({ length: 64 }, () => t.host.dispatch(peer(1), "hd.never-read", body));
    for (const p of pending) p.catch(() => undefined);
    const s = statusOf(t, "hd-never-read");
    // Seven items of 1 MiB + 77 bytes (src, kind, overhead) fit in 8 MiB; the eighth and later are refused.
    assert.equal(s.inFlight + s.queued, 7);
    const size = MiB + 32 + "hd.never-read".length + 32;
    const error = PlugwireError.from(((await Promise.allSettled([pending.at(-1)!]))[0] as PromiseRejectedResult).reason);
    assert.equal(error.code, "queue_full");
    assert.equal(error.plugin, "hd-never-read");
    assert.equal(
      error.message,
      `plugin 'hd-never-read' has 7 payloads of ${7 * size} bytes waiting (maxQueuedBytes ${8 * MiB}); ` +
        `payload of kind 'hd.never-read' (${size} bytes) was rejected. Retry later, raise maxQueuedBytes, or use overflow: drop-oldest.`,
    );
    assert.equal(matching(lines, /queue full/).length, 1);
    await neighbourServes(t, "beside-a-full-queue");
  } finally {
    await t.close();
  }
});

test("H-DELIV-14: an error outcome of 8 MiB -> handler_failed with the message cut to 4 KiB, one log line of that size", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("flood-effects"), neighbour()], { logger });
  try {
    await t.host.start();
    const error = await rejection(t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("fail-8mib")));
    assert.equal(error.code, "handler_failed");
    assert.equal(error.plugin, "hd-flood-effects");
    assert.equal(
      error.message,
      `plugin 'hd-flood-effects' failed to handle payload seq 1 (kind 'hd.flood-effects'): ${truncateText("e".repeat(8 * MiB))}`,
    );
    const logged = matching(lines, /^payload handler failed$/);
    assert.equal(logged.length, 1);
    assert.ok(String(logged[0]!.error).length < 4200, "the log line carries the cut message");
    // The plugin is not restarted, and handles the next payload.
    await t.host.dispatch(peer(1), "hd.flood-effects", encoder.encode("0"));
    assert.equal(statusOf(t, "hd-flood-effects").restarts, 0);
    await neighbourServes(t, "after-big-error");
  } finally {
    await t.close();
  }
});

test("H-DELIV-15: an ack with 1,000,000 outcomes -> refused as malformed before they are built; the stream counts as broken, the item is redelivered once", { timeout: TIMEOUT_MS }, async () => {
  const { logger, lines } = captureLogger();
  const t = testHost([hostile("flood-outcomes"), neighbour()], { logger });
  try {
    await t.host.start();
    const before = rssMiB();
    await t.host.dispatch(peer(1), "hd.flood-outcomes", encoder.encode("x"));
    const grown = rssMiB() - before;
    const broke = matching(lines, /Deliver stream broke/);
    assert.equal(broke.length, 1);
    assert.match(
      String(broke[0]!.why),
      /Response message parsing error: a DeliverResponse carried more than 65536 outcomes; an ack has at most one per item it newly covers/,
    );
    assert.equal(broke[0]!.plugin, "hd-flood-outcomes");
    assert.equal(statusOf(t, "hd-flood-outcomes").restarts, 1);
    assert.equal(statusOf(t, "hd-flood-outcomes").lastAcked, 1, "acked once, by the next launch");
    assert.ok(grown < 200, `host RSS grew by ${grown.toFixed(0)} MiB`);
    await neighbourServes(t, "after-outcome-flood");
  } finally {
    await t.close();
  }
});
