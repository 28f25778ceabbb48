/**
 * Memory: an idle TS plugin's RSS (next to an idle bare node), and the host's
 * own RSS per supervised plugin, measured in a separate host process.
 */
import type { ChildProcess } from "node:child_process";
import { benchHost, HOST_PROC, killTracked, leftovers, nodePlugin, progress, rssMiB, SINK_PLUGIN, sleep, spawnTracked, withTimeout } from "../lib.js";
import type { Scenario } from "./types.js";

export const rss: Scenario = {
  name: "rss",
  describe: "VmRSS of an idle TS sink plugin, and of an idle bare node for comparison",
  async run(ctx) {
    const idleMs = ctx.quick ? 500 : 2_000;
    const plugin: number[] = [];
    const bare: number[] = [];
    for (let rep = 0; rep < ctx.reps; rep++) {
      const child = spawnTracked(process.execPath, ["-e", "setTimeout(() => {}, 600000)"], { stdio: "ignore" });
      const bh = benchHost([nodePlugin("sink", SINK_PLUGIN)]);
      try {
        await withTimeout(bh.host.start(), 60_000, "host.start");
        await sleep(idleMs);
        plugin.push(rssMiB(bh.host.status()[0]!.pid!));
        bare.push(rssMiB(child.pid!));
        progress(`  rss rep ${rep + 1}/${ctx.reps}: plugin ${plugin.at(-1)!.toFixed(1)} MiB, bare node ${bare.at(-1)!.toFixed(1)} MiB`);
      } finally {
        await killTracked(child);
        await bh.close();
      }
    }
    ctx.results.add({ name: "node_bare_rss_mib", unit: "MiB", values: bare, better: "lower", note: "idle `node -e setTimeout`", info: { idleMs } });
    ctx.results.add({ name: "plugin_idle_rss_mib", unit: "MiB", values: plugin, better: "lower", baseline: "node_bare_rss_mib", note: `after ${idleMs} ms idle`, info: { idleMs } });
  },
};

interface HostProcReport {
  rssMiB?: number;
  heapUsedMiB?: number;
  pids?: number[];
  error?: string;
}

/** Runs bench/src/host-proc.ts with `plugins` plugins; returns its RSS once all are ready and idle. */
async function hostProcRss(plugins: number, idleMs: number): Promise<{ rss: number; leftBehind: number[] }> {
  const child: ChildProcess = spawnTracked(process.execPath, ["--expose-gc", HOST_PROC, JSON.stringify({ plugins, idleMs })], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  try {
    const report = await withTimeout(
      new Promise<HostProcReport>((resolve, reject) => {
        child.once("message", (m) => resolve(m as HostProcReport));
        child.once("exit", (code) => reject(new Error(`host-proc exited with ${code} before reporting`)));
      }),
      180_000,
      `host-proc with ${plugins} plugins`,
    );
    if (report.error || report.rssMiB === undefined) throw new Error(`host-proc failed: ${report.error}`);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.send("stop");
    await withTimeout(exited, 60_000, "host-proc stop").catch(() => undefined);
    await sleep(50);
    return { rss: report.rssMiB, leftBehind: leftovers((report.pids ?? []).filter((p): p is number => typeof p === "number")) };
  } finally {
    await killTracked(child);
  }
}

export const hostRss: Scenario = {
  name: "host-rss",
  describe: "host process RSS with 1 and with N TS plugins: (rssN − rss1)/(N − 1)",
  async run(ctx) {
    const n = ctx.quick ? 8 : 16;
    const idleMs = ctx.quick ? 300 : 1_500;
    const per: number[] = [];
    const one: number[] = [];
    const many: number[] = [];
    const left: number[] = [];
    for (let rep = 0; rep < ctx.heavyReps; rep++) {
      const a = await hostProcRss(1, idleMs);
      const b = await hostProcRss(n, idleMs);
      left.push(...a.leftBehind, ...b.leftBehind);
      one.push(a.rss);
      many.push(b.rss);
      per.push((b.rss - a.rss) / (n - 1));
      progress(`  host rss rep ${rep + 1}/${ctx.heavyReps}: 1 plugin ${a.rss.toFixed(1)} MiB, ${n} plugins ${b.rss.toFixed(1)} MiB → ${per.at(-1)!.toFixed(2)} MiB/plugin`);
    }
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    const note = left.length ? `BUG: ${left.length} plugin processes outlived their host process` : `N = ${n}`;
    ctx.results.add({ name: "host_rss_1_plugin_mib", unit: "MiB", values: one, better: "lower", note: "whole host process", info: { idleMs } });
    ctx.results.add({ name: `host_rss_${n}_plugins_mib`, unit: "MiB", values: many, better: "lower", note: "whole host process", info: { idleMs, plugins: n } });
    ctx.results.add({ name: "host_rss_per_plugin_mib", unit: "MiB", values: per, better: "lower", note, info: { plugins: n, idleMs, gc: "global.gc() twice before reading" } });
  },
};
