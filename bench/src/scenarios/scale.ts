/**
 * Scale: N TS plugins in one host (64; 16 with --quick). Metric names carry
 * N: scale_64_* in a full run, scale_16_* in a quick one.
 */
import type { PluginConfig } from "@plugwire/host";
import { benchHost, nodePlugin, now, progress, seededBytes, SINK_PLUGIN, sleep, withTimeout, pump, type BenchHost } from "../lib.js";
import { drain } from "./delivery.js";
import { windowFor } from "./raw.js";
import type { Scenario } from "./types.js";

function sinks(n: number): PluginConfig[] {
  // Every plugin starts at once; on 2 cores 64 node starts take longer than
  // the default 10 s handshake timeout, so it is raised here.
  return Array.from({ length: n }, (_, i) =>
    nodePlugin(`sink-${i}`, SINK_PLUGIN, { env: { BENCH_KIND_SUFFIX: `.${i}` }, handshakeTimeoutMs: 120_000 }),
  );
}

/** SIGKILLs every plugin at once; resolves with the time until all are ready again (new pids). */
async function storm(bh: BenchHost, n: number, timeoutMs: number): Promise<number> {
  const old = new Map(bh.host.status().map((s) => [s.name, s.pid]));
  const readyAgain = new Set<string>();
  const onState = (e: { plugin: string; state: string }): void => {
    if (e.state === "ready") readyAgain.add(e.plugin);
  };
  bh.host.on("plugin:state", onState);
  try {
    const t0 = now();
    for (const pid of old.values()) if (pid) process.kill(pid, "SIGKILL");
    const deadline = t0 + timeoutMs;
    while (readyAgain.size < n) {
      if (now() > deadline) throw new Error(`restart storm: only ${readyAgain.size}/${n} plugins ready after ${timeoutMs} ms`);
      await sleep(2);
    }
    const ms = now() - t0;
    const same = bh.host.status().filter((s) => s.pid !== undefined && s.pid === old.get(s.name));
    if (same.length) progress(`  BUG? ${same.length} plugins report their old pid after the storm`);
    return ms;
  } finally {
    bh.host.off("plugin:state", onState);
  }
}

export const scale: Scenario = {
  name: "scale",
  describe: "N plugins: all ready, restart storm after killing all, aggregate dispatch rate vs one plugin",
  needsRaw: true,
  async run(ctx) {
    const n = ctx.quick ? 16 : 64;
    const readyS: number[] = [];
    const stormS: number[] = [];
    const ratio: number[] = [];
    const aggregate: number[] = [];
    const single: number[] = [];
    let bh: BenchHost | undefined;
    try {
      for (let rep = 0; rep < ctx.heavyReps; rep++) {
        bh = benchHost(sinks(n));
        const t0 = now();
        await withTimeout(bh.host.start(), 300_000, `host.start with ${n} plugins`);
        readyS.push((now() - t0) / 1000);
        progress(`  scale ${n}: all ready in ${readyS.at(-1)!.toFixed(2)} s (rep ${rep + 1}/${ctx.heavyReps})`);
        if (rep < ctx.heavyReps - 1) {
          await bh.close();
          bh = undefined;
        }
      }
      const host = bh!;
      for (let rep = 0; rep < ctx.heavyReps; rep++) {
        await sleep(ctx.quick ? 200 : 500);
        stormS.push((await storm(host, n, 300_000)) / 1000);
        progress(`  scale ${n}: restart storm, all ready again in ${stormS.at(-1)!.toFixed(2)} s (rep ${rep + 1}/${ctx.heavyReps})`);
      }
      const count = ctx.quick ? 20_000 : 100_000;
      const body = seededBytes(256, 256);
      const kinds = Array.from({ length: n }, (_, i) => `bench.sink.${i}`);
      const window = windowFor(256);
      await pump(host.host, kinds, body, count / 4, window, 60_000);
      await pump(host.host, ["bench.sink.0"], body, count / 4, window, 60_000);
      for (let rep = 0; rep < ctx.heavyReps; rep++) {
        const s = await pump(host.host, ["bench.sink.0"], body, count, window, 90_000);
        if (s.timedOut) await drain(host.host, 30_000);
        const a = await pump(host.host, kinds, body, count, window, 90_000);
        if (a.timedOut) await drain(host.host, 30_000);
        single.push(s.count / (s.elapsedMs / 1000));
        aggregate.push(a.count / (a.elapsedMs / 1000));
        ratio.push(aggregate.at(-1)! / single.at(-1)!);
        progress(`  scale ${n}: one plugin ${Math.round(single.at(-1)!)}/s, all ${n} ${Math.round(aggregate.at(-1)!)}/s → ${ratio.at(-1)!.toFixed(2)}`);
      }
    } finally {
      await bh?.close();
    }
    const info = { plugins: n, quick: ctx.quick };
    ctx.results.add({ name: `scale_${n}_ready_s`, unit: "s", values: readyS, better: "lower", note: `${n} plugins, host.start()`, info });
    ctx.results.add({ name: `scale_${n}_restart_storm_s`, unit: "s", values: stormS, better: "lower", note: `all ${n} SIGKILLed at once; backoff 0`, info });
    ctx.results.add({
      name: `scale_${n}_dispatch_msgs_per_s`,
      unit: "msgs/s",
      values: aggregate,
      better: "higher",
      baseline: "raw_uds_msgs_per_s",
      note: `256 B round-robin over ${n} plugins`,
      info: { ...info, singlePluginPerS: single.map(Math.round) },
    });
    ctx.results.add({ name: `scale_${n}_dispatch_ratio`, unit: "×", values: ratio, better: "higher", note: `aggregate / one plugin in the same host`, info: { ...info, singlePluginPerS: single.map(Math.round) } });
  },
};
