/**
 * The Go example plugin (plugins-example/go/bin/presence-go), when built:
 * dispatch rate of `echo-go.ping` (each payload answers with a send effect on
 * its ack, so it does slightly more than the TS sink), spawn → ready, idle RSS.
 */
import { existsSync } from "node:fs";
import type { LaunchTimings, PluginConfig } from "@plugwire/host";
import { benchHost, GO_PLUGIN, launchSplit, now, progress, rssMiB, sleep, withTimeout } from "../lib.js";
import { DISPATCH_256_COUNT, measureDispatch } from "./delivery.js";
import { bareNodeStartMs } from "./lifecycle.js";
import type { Scenario } from "./types.js";

function goPlugin(): PluginConfig {
  return {
    name: "presence-go",
    command: GO_PLUGIN,
    capabilities: ["peers", "control"],
    maxInFlight: 8192,
    maxQueued: 1_000_000,
    restart: "permanent",
    backoffInitialMs: 0,
  };
}

export const go: Scenario = {
  name: "go",
  describe: "Go example plugin: echo-go.ping dispatch rate, spawn → ready, idle RSS (skipped when not built)",
  needsRaw: true,
  async run(ctx) {
    if (!existsSync(GO_PLUGIN)) {
      const why = `Go plugin not built (${GO_PLUGIN} missing; run scripts/setup-polyglot.sh); go_* figures skipped`;
      progress(`  ${why}`);
      ctx.results.note(why);
      return;
    }
    const bh = benchHost([goPlugin()]);
    try {
      await withTimeout(bh.host.start(), 60_000, "host.start");
      const count = ctx.quick ? DISPATCH_256_COUNT.quick : DISPATCH_256_COUNT.full / 2;
      const before = bh.sends.count;
      const r = await measureDispatch(ctx, "go_dispatch", bh.host, ["echo-go.ping"], 256, count, 256);
      const effects = bh.sends.count - before;
      ctx.results.add({
        name: "go_dispatch_msgs_per_s",
        unit: "msgs/s",
        values: r.rates,
        better: "higher",
        baseline: "raw_uds_msgs_per_s",
        note: r.failed ? `${r.failed} failed (${r.firstError})` : "echo-go.ping, one send effect per payload",
        info: { payloadsPerRep: count, effectsPerformed: effects },
      });
    } finally {
      await bh.close();
    }
    const n = ctx.quick ? 4 : 10;
    const spawnMs: number[] = [];
    const bareMs: number[] = [];
    const idleRss: number[] = [];
    const launches: LaunchTimings[] = [];
    const idleMs = ctx.quick ? 500 : 2_000;
    for (let i = 0; i <= n; i++) {
      const bare = await bareNodeStartMs();
      const g = benchHost([goPlugin()]);
      let ms: number;
      try {
        const t0 = now();
        await withTimeout(g.host.start(), 60_000, "host.start");
        ms = now() - t0;
        const launch = g.host.status()[0]?.lastLaunch;
        if (launch && i > 0) launches.push(launch);
        if (i > 0 && idleRss.length < ctx.reps) {
          await sleep(idleMs);
          idleRss.push(rssMiB(g.host.status()[0]!.pid!));
        }
      } finally {
        await g.close();
      }
      if (i === 0) continue; // warm-up
      spawnMs.push(ms);
      bareMs.push(bare);
      progress(`  go spawn ${i}/${n}: ready ${ms.toFixed(1)} ms (bare node ${bare.toFixed(0)} ms)`);
    }
    const split = launchSplit(launches, spawnMs);
    ctx.results.add({ name: "go_spawn_ready_ms_p50", unit: "ms", values: spawnMs, better: "lower", baseline: "node_bare_start_ms_p50", note: split.note, info: { samples: n, splitMs: split.ms } });
    ctx.results.add({ name: "go_idle_rss_mib", unit: "MiB", values: idleRss, better: "lower", baseline: "node_bare_rss_mib", note: `after ${idleMs} ms idle` });
    if (!ctx.results.get("node_bare_start_ms_p50")) {
      ctx.results.add({ name: "node_bare_start_ms_p50", unit: "ms", values: bareMs, better: "lower", note: "measured by the go scenario" });
    }
  },
};
