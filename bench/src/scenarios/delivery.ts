/**
 * The hot path: host → plugin dispatch throughput (256 B and 16 KiB bodies,
 * every payload acked), dispatch → ack latency under open-loop load, and the
 * round trip of a host call made from inside a handler.
 */
import type { ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Host } from "@plugwire/host";
import {
  benchHost,
  killTracked,
  nodePlugin,
  now,
  percentile,
  progress,
  pump,
  REPORT_PEER,
  seededBytes,
  SINK_PLUGIN,
  sortedCopy,
  spawnTracked,
  SRC_PEER,
  waitForReport,
  withTimeout,
  type PumpResult,
} from "../lib.js";
import type { Results } from "../report.js";
import { windowFor } from "./raw.js";
import type { Ctx, Scenario } from "./types.js";

export const DISPATCH_256_COUNT = { quick: 30_000, full: 200_000 };

/** Payloads per host.dispatchMany call in the batch-API rows. */
export const MANY_BATCH = 64;

/**
 * Like pump(), through host.dispatchMany: calls of MANY_BATCH payloads, at
 * most `window` payloads outstanding.
 */
function pumpMany(host: Host, kind: string, body: Uint8Array, total: number, window: number, maxMs: number): Promise<PumpResult> {
  return new Promise((resolve) => {
    const bodies = Array.from({ length: MANY_BATCH }, () => body);
    let sent = 0;
    let done = 0;
    let failed = 0;
    let firstError: string | undefined;
    let finished = false;
    const start = now();
    const finish = (timedOut: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ count: done, elapsedMs: now() - start, failed, timedOut, firstError });
    };
    const timer = setTimeout(() => finish(true), maxMs);
    const refill = (): void => {
      while (sent - done + MANY_BATCH <= window && sent < total) {
        const n = Math.min(MANY_BATCH, total - sent);
        sent += n;
        const onDone = (): void => {
          done += n;
          if (done === total) finish(false);
          else if (!finished) refill();
        };
        host.dispatchMany(SRC_PEER, kind, n === MANY_BATCH ? bodies : bodies.slice(0, n)).then(onDone, (e: unknown) => {
          failed += n;
          firstError ??= e instanceof Error ? e.message : String(e);
          onDone();
        });
      }
    };
    refill();
  });
}

/** Warm-up, then `reps` timed pumps; returns payloads/s and the host's CPU µs per payload, per rep. */
export async function measureDispatch(
  ctx: Ctx,
  label: string,
  host: Host,
  kinds: readonly string[],
  size: number,
  count: number,
  seed: number,
  many = false,
): Promise<{ rates: number[]; cpuUs: number[]; failed: number; timedOut: number; firstError?: string; window: number }> {
  const body = seededBytes(size, seed);
  const window = windowFor(size);
  const run = (n: number, ms: number): Promise<PumpResult> => (many ? pumpMany(host, kinds[0]!, body, n, window, ms) : pump(host, kinds, body, n, window, ms));
  const warm = await run(Math.ceil(count / 8), 60_000);
  let failed = warm.failed;
  let timedOut = warm.timedOut ? 1 : 0;
  let firstError = warm.firstError;
  const rates: number[] = [];
  const cpuUs: number[] = [];
  for (let rep = 0; rep < ctx.reps; rep++) {
    const cpu0 = process.cpuUsage();
    const r: PumpResult = await run(count, 90_000);
    const cpu = process.cpuUsage(cpu0);
    failed += r.failed;
    if (r.timedOut) timedOut++;
    firstError ??= r.firstError;
    rates.push(r.count / (r.elapsedMs / 1000));
    cpuUs.push((cpu.user + cpu.system) / Math.max(1, r.count));
    progress(`  ${label} rep ${rep + 1}/${ctx.reps}: ${Math.round(rates.at(-1)!)} payloads/s, host ${cpuUs.at(-1)!.toFixed(2)} µs CPU each${r.timedOut ? " (time bound hit)" : ""}${r.failed ? `, ${r.failed} failed` : ""}`);
    // Let acks of a timed-out rep drain before the next one.
    if (r.timedOut) await drain(host, 30_000);
  }
  return { rates, cpuUs, failed, timedOut, firstError, window };
}

/** Waits until no plugin has payloads queued or in flight. */
export async function drain(host: Host, ms: number): Promise<void> {
  const deadline = now() + ms;
  while (host.status().some((s) => s.inFlight + s.queued > 0) && now() < deadline) await new Promise((r) => setTimeout(r, 10));
}

function failureNote(failed: number, timedOut: number, firstError?: string): string | undefined {
  const parts: string[] = [];
  if (failed) parts.push(`${failed} failed (${firstError})`);
  if (timedOut) parts.push(`${timedOut} reps hit the time bound`);
  return parts.length ? parts.join("; ") : undefined;
}

export const dispatch: Scenario = {
  name: "dispatch",
  describe: "host → TS sink plugin, every payload acked: 256 B payloads/s and 16 KiB MB/s",
  needsRaw: true,
  async run(ctx) {
    const bh = benchHost([nodePlugin("sink", SINK_PLUGIN)]);
    try {
      await withTimeout(bh.host.start(), 60_000, "host.start");
      const c256 = ctx.quick ? DISPATCH_256_COUNT.quick : DISPATCH_256_COUNT.full;
      const r256 = await measureDispatch(ctx, "dispatch_256b", bh.host, ["bench.sink"], 256, c256, 256);
      ctx.results.add({
        name: "dispatch_256b_msgs_per_s",
        unit: "msgs/s",
        values: r256.rates,
        better: "higher",
        baseline: "raw_uds_msgs_per_s",
        note: failureNote(r256.failed, r256.timedOut, r256.firstError),
        info: { payloadsPerRep: c256, bodyBytes: 256, maxOutstanding: r256.window, maxInFlight: 8192 },
      });
      ctx.results.add({
        name: "dispatch_256b_host_cpu_us_per_msg",
        unit: "µs",
        values: r256.cpuUs,
        better: "lower",
        note: "host (bench) process CPU, user + system, per payload",
        info: { payloadsPerRep: c256, bodyBytes: 256 },
      });
      const many = await measureDispatch(ctx, "dispatch_many_256b", bh.host, ["bench.sink"], 256, c256, 256, true);
      ctx.results.add({
        name: "dispatch_many_256b_msgs_per_s",
        unit: "msgs/s",
        values: many.rates,
        better: "higher",
        baseline: "raw_uds_msgs_per_s",
        note: failureNote(many.failed, many.timedOut, many.firstError) ?? `host.dispatchMany, ${MANY_BATCH} payloads per call`,
        info: { payloadsPerRep: c256, bodyBytes: 256, perCall: MANY_BATCH, maxOutstanding: many.window, maxInFlight: 8192 },
      });
      ctx.results.add({
        name: "dispatch_many_256b_host_cpu_us_per_msg",
        unit: "µs",
        values: many.cpuUs,
        better: "lower",
        note: "host (bench) process CPU, user + system, per payload",
        info: { payloadsPerRep: c256, bodyBytes: 256, perCall: MANY_BATCH },
      });
      const c16 = ctx.quick ? 3_000 : 10_000;
      const r16 = await measureDispatch(ctx, "dispatch_16k", bh.host, ["bench.sink"], 16 * 1024, c16, 16);
      ctx.results.add({
        name: "dispatch_16k_mb_per_s",
        unit: "MB/s",
        values: r16.rates.map((r) => (r * 16 * 1024) / 1e6),
        better: "higher",
        baseline: "raw_uds_16k_mb_per_s",
        note: failureNote(r16.failed, r16.timedOut, r16.firstError),
        info: { payloadsPerRep: c16, bodyBytes: 16 * 1024, maxOutstanding: r16.window, maxInFlight: 8192 },
      });
    } finally {
      await bh.close();
    }
  },
};

/**
 * "immediate": the sender re-checks the schedule on every event-loop turn
 * (setImmediate), so payloads arrive spread out, one or two per turn, as they
 * would from network reads. "timer": it wakes every ~1 ms and sends what is
 * due as a burst, which hands the host ready-made batches.
 */
type Pacing = "immediate" | "timer";

interface OpenLoopResult {
  latUs: Float64Array;
  completed: number;
  failed: number;
  elapsedMs: number;
  timedOut: boolean;
}

/**
 * Open loop: payload i is due at start + i/rate; latency is measured from
 * when it was due (not when it was actually sent), so a stalled sender
 * cannot hide queueing delay.
 */
function openLoop(host: Host, kind: string, body: Uint8Array, rate: number, count: number, maxMs: number, pacing: Pacing): Promise<OpenLoopResult> {
  return new Promise((resolve) => {
    const interval = 1000 / rate;
    const latUs = new Float64Array(count).fill(Number.NaN);
    let i = 0;
    let completed = 0;
    let failed = 0;
    let finished = false;
    const start = now();
    const finish = (timedOut: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ latUs, completed, failed, elapsedMs: now() - start, timedOut });
    };
    const timer = setTimeout(() => finish(true), maxMs);
    const settle = (): void => {
      if (++completed === count) finish(false);
    };
    const tick = (): void => {
      if (finished) return;
      const due = Math.min(count, Math.floor((now() - start) / interval) + 1);
      while (i < due) {
        const idx = i++;
        const intended = start + idx * interval;
        host.dispatch(SRC_PEER, kind, body).then(
          () => {
            latUs[idx] = (now() - intended) * 1000;
            settle();
          },
          () => {
            failed++;
            settle();
          },
        );
      }
      if (i < count) {
        if (pacing === "immediate") setImmediate(tick);
        else setTimeout(tick, 1);
      }
    };
    tick();
  });
}

async function peakFor(ctx: Ctx, host: Host, results: Results): Promise<{ peak: number; source: string }> {
  const known = results.get("dispatch_256b_msgs_per_s");
  if (known && Number.isFinite(known.median)) return { peak: known.median, source: "dispatch_256b_msgs_per_s of this run" };
  const r = await measureDispatch({ ...ctx, reps: 3 }, "latency peak", host, ["bench.sink"], 256, DISPATCH_256_COUNT.quick, 256);
  const sorted = [...r.rates].sort((a, b) => a - b);
  return { peak: sorted[1]!, source: `measured by the latency scenario (3 × ${DISPATCH_256_COUNT.quick})` };
}

export const latency: Scenario = {
  name: "latency",
  describe: "dispatch → ack latency p50/p99 at ~50% of the peak 256 B rate, open loop",
  needsRaw: true,
  async run(ctx) {
    const bh = benchHost([nodePlugin("sink", SINK_PLUGIN)]);
    try {
      await withTimeout(bh.host.start(), 60_000, "host.start");
      const { peak, source } = await peakFor(ctx, bh.host, ctx.results);
      const rate = Math.max(100, peak * 0.5);
      const seconds = ctx.quick ? 1 : 2;
      const count = Math.min(2_000_000, Math.round(rate * seconds));
      const body = seededBytes(256, 256);
      progress(`  latency: pacing at ${Math.round(rate)}/s (50% of ${Math.round(peak)}/s, ${source}), ${count} payloads per rep`);
      for (const variant of [
        { pacing: "immediate" as const, prefix: "dispatch_latency", label: "latency", how: "setImmediate pacing" },
        { pacing: "timer" as const, prefix: "dispatch_latency_1ms_bursts", label: "latency (1 ms bursts)", how: "1 ms timer bursts" },
      ]) {
        await openLoop(bh.host, "bench.sink", body, rate, Math.round(rate * (ctx.quick ? 0.3 : 0.5)), 30_000, variant.pacing); // warm-up
        await drain(bh.host, 30_000);
        const p50: number[] = [];
        const p99: number[] = [];
        const achieved: number[] = [];
        let failed = 0;
        let timedOut = 0;
        for (let rep = 0; rep < ctx.reps; rep++) {
          const r = await openLoop(bh.host, "bench.sink", body, rate, count, seconds * 1000 + 30_000, variant.pacing);
          failed += r.failed;
          if (r.timedOut) timedOut++;
          await drain(bh.host, 30_000);
          const done = sortedCopy(r.latUs.filter((v) => Number.isFinite(v)));
          p50.push(percentile(done, 50));
          p99.push(percentile(done, 99));
          achieved.push(r.completed / (r.elapsedMs / 1000));
          progress(`  ${variant.label} rep ${rep + 1}/${ctx.reps}: p50 ${p50.at(-1)!.toFixed(0)} µs, p99 ${p99.at(-1)!.toFixed(0)} µs, ${Math.round(achieved.at(-1)!)}/s of ${Math.round(rate)}/s`);
        }
        const achievedMedian = [...achieved].sort((a, b) => a - b)[achieved.length >> 1]!;
        const note =
          [failed ? `${failed} failed` : "", timedOut ? `${timedOut} reps hit the time bound` : ""].filter(Boolean).join("; ") ||
          `${variant.how}, offered ${Math.round(rate / 1000)}k/s, completed ${Math.round(achievedMedian / 1000)}k/s`;
        const info = { pacing: variant.pacing, offeredPerS: Math.round(rate), peakPerS: Math.round(peak), peakSource: source, payloadsPerRep: count, achievedPerS: achieved.map(Math.round) };
        ctx.results.add({ name: `${variant.prefix}_p50_us`, unit: "µs", values: p50, better: "lower", baseline: "raw_uds_rtt_p50_us", note, info });
        ctx.results.add({ name: `${variant.prefix}_p99_us`, unit: "µs", values: p99, better: "lower", baseline: "raw_uds_rtt_p99_us", note, info });
      }
    } finally {
      await bh.close();
    }
  },
};

interface LookupReport {
  kind: "lookup";
  count: number;
  name?: string;
  p50Us: number;
  p99Us: number;
  meanUs: number;
}

export const hostCall: Scenario = {
  name: "host-call",
  describe: "ctx.peers.lookupName round trip measured inside a handler (sequential calls): on the Calls stream, and unary",
  needsRaw: true,
  async run(ctx) {
    // Two copies of the sink: the TS SDK's default (the HostService.Calls
    // stream) and one told to make every host call unary, in the same host.
    const bh = benchHost([
      nodePlugin("sink", SINK_PLUGIN, { capabilities: ["peers", "control"] }),
      nodePlugin("sink-unary", SINK_PLUGIN, { capabilities: ["peers", "control"], env: { BENCH_KIND_SUFFIX: ".unary", PLUGWIRE_SDK_UNARY_HOST_CALLS: "1" } }),
    ]);
    try {
      await withTimeout(bh.host.start(), 60_000, "host.start");
      const n = ctx.quick ? 500 : 2_000;
      const variants = [
        { prefix: "host_call_rtt", kind: "bench.lookup", call: "LookupName on the HostService.Calls stream (TS SDK default)" },
        { prefix: "host_call_unary_rtt", kind: "bench.lookup.unary", call: "HostService.LookupName, one unary grpc-js call each (PLUGWIRE_SDK_UNARY_HOST_CALLS=1)" },
      ];
      const results = variants.map(() => ({ p50: [] as number[], p99: [] as number[], name: undefined as string | undefined }));
      // Interleaved, so both see the same load.
      for (let rep = 1; rep <= ctx.reps; rep++) {
        for (const [i, variant] of variants.entries()) {
          const body = new TextEncoder().encode(JSON.stringify({ n, warmup: rep === 1 ? 300 : 30, maxMs: 20_000, reportTo: Buffer.from(REPORT_PEER).toString("hex") }));
          const before = bh.reports.length;
          await withTimeout(bh.host.dispatch(SRC_PEER, variant.kind, body), 60_000, `${variant.kind} dispatch`);
          const report = (await waitForReport(bh.reports, before, 10_000)) as LookupReport;
          const r = results[i]!;
          r.name = report.name;
          r.p50.push(report.p50Us);
          r.p99.push(report.p99Us);
          progress(`  ${variant.prefix} rep ${rep}/${ctx.reps}: p50 ${report.p50Us.toFixed(0)} µs, p99 ${report.p99Us.toFixed(0)} µs over ${report.count} calls`);
        }
      }
      for (const [i, variant] of variants.entries()) {
        const r = results[i]!;
        const note = r.name === "bench-peer" ? undefined : `BUG? lookupName answered ${JSON.stringify(r.name)}, expected "bench-peer"`;
        ctx.results.add({ name: `${variant.prefix}_p50_us`, unit: "µs", values: r.p50, better: "lower", baseline: "raw_uds_rtt_p50_us", note, info: { callsPerRep: n, call: variant.call } });
        ctx.results.add({ name: `${variant.prefix}_p99_us`, unit: "µs", values: r.p99, better: "lower", baseline: "raw_uds_rtt_p99_us", note, info: { callsPerRep: n } });
      }
    } finally {
      await bh.close();
    }
  },
};

const DISPATCH_PROC = join(dirname(fileURLToPath(import.meta.url)), "..", "dispatch-proc.js");
/** The young-generation size the host-gc scenario tries (MiB per semi-space; node 20's default is 16). */
export const TUNED_SEMI_SPACE_MIB = 64;

/** Runs dispatch-proc.js under `flags`; resolves with its per-repetition rates and host CPU per payload. */
async function dispatchInChild(flags: string[], count: number, reps: number): Promise<{ rates: number[]; cpuUs: number[] }> {
  const child: ChildProcess = spawnTracked(process.execPath, [...flags, DISPATCH_PROC, JSON.stringify({ count, reps })], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    const report = await withTimeout(
      new Promise<{ rates?: number[]; cpuUs?: number[]; error?: string }>((resolve, reject) => {
        child.once("message", (m) => resolve(m as { rates?: number[]; cpuUs?: number[]; error?: string }));
        child.once("exit", (code) => reject(new Error(`dispatch-proc exited with ${code} before reporting`)));
      }),
      240_000,
      `dispatch-proc ${flags.join(" ") || "(default flags)"}`,
    );
    if (report.error || !report.rates || !report.cpuUs) throw new Error(`dispatch-proc failed: ${report.error}`);
    return { rates: report.rates, cpuUs: report.cpuUs };
  } finally {
    await killTracked(child);
  }
}

export const hostGc: Scenario = {
  name: "host-gc",
  describe: `plain host.dispatch() of 256 B with the host in a process of its own: node's default young generation vs --max-semi-space-size=${TUNED_SEMI_SPACE_MIB} (docs/performance.md, "Tuning the host process")`,
  needsRaw: true,
  async run(ctx) {
    // Each child warms up its own JIT: runs long enough for the warm rate to dominate.
    const count = ctx.quick ? 100_000 : 300_000;
    const flags = [`--max-semi-space-size=${TUNED_SEMI_SPACE_MIB}`];
    // Alternated, so that load changes during the run hit both alike.
    const plain: { rates: number[]; cpuUs: number[] } = { rates: [], cpuUs: [] };
    const tuned: { rates: number[]; cpuUs: number[] } = { rates: [], cpuUs: [] };
    for (let round = 0; round < ctx.reps; round++) {
      const a = await dispatchInChild([], count, 1);
      const b = await dispatchInChild(flags, count, 1);
      plain.rates.push(...a.rates);
      plain.cpuUs.push(...a.cpuUs);
      tuned.rates.push(...b.rates);
      tuned.cpuUs.push(...b.cpuUs);
      progress(`  host-gc round ${round + 1}/${ctx.reps}: default ${Math.round(a.rates[0]!)}/s (${a.cpuUs[0]!.toFixed(2)} µs CPU each), semi-space ${TUNED_SEMI_SPACE_MIB} MiB ${Math.round(b.rates[0]!)}/s (${b.cpuUs[0]!.toFixed(2)} µs)`);
    }
    ctx.results.add({ name: "host_proc_dispatch_256b_msgs_per_s", unit: "msgs/s", values: plain.rates, better: "higher", baseline: "raw_uds_msgs_per_s", note: "host in its own process, node defaults", info: { payloadsPerRep: count, hostCpuUsPerMsg: plain.cpuUs } });
    ctx.results.add({
      name: "host_proc_dispatch_256b_semi64_msgs_per_s",
      unit: "msgs/s",
      values: tuned.rates,
      better: "higher",
      baseline: "host_proc_dispatch_256b_msgs_per_s",
      note: `the same, host started with ${flags.join(" ")}`,
      info: { payloadsPerRep: count, hostCpuUsPerMsg: tuned.cpuUs, flags },
    });
  },
};
