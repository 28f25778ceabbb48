/**
 * The four example counters, one per language (TypeScript counter, Python
 * counter-py, Go counter-go, Rust counter-rust; each stateful, each counting
 * `<kind>.hit` payloads per peer): spawn → ready p50, dispatch rate of 256 B
 * hits (every payload acked) and idle RSS, in one table. A language whose
 * example scripts/setup-polyglot.sh has not built is skipped with a note.
 *
 * Dispatch ratios are to the Go counter's rate in the same run (issue 11
 * asks Python for at least 0.5× Go's); spawn ratios to a bare `node -e ''`.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { PluginConfig } from "@plugwire/host";
import { benchHost, COUNTER_PLUGIN, now, progress, repo, rssMiB, sleep, withTimeout } from "../lib.js";
import { DISPATCH_256_COUNT, measureDispatch } from "./delivery.js";
import { bareNodeStartMs } from "./lifecycle.js";
import type { Ctx, Scenario } from "./types.js";

interface Lang {
  /** Metric prefix: poly_<id>_... */
  id: "ts" | "python" | "go" | "rust";
  plugin: string;
  command: string;
  args: string[];
  /** The file that must exist (built by npm run build or scripts/setup-polyglot.sh). */
  needs: string;
  hitKind: string;
  /** Share of the dispatch count: the Python loop is slower, give it fewer payloads per rep. */
  countShare: number;
}

const PYTHON = join(repo, "plugins-example", "python", ".venv", "bin", "python");

export const POLYGLOT_LANGS: Lang[] = [
  { id: "ts", plugin: "counter", command: process.execPath, args: [COUNTER_PLUGIN], needs: COUNTER_PLUGIN, hitKind: "counter.hit", countShare: 1 },
  {
    id: "python",
    plugin: "counter-py",
    command: PYTHON,
    args: [join(repo, "plugins-example", "python", "counter.py")],
    needs: PYTHON,
    hitKind: "counter-py.hit",
    countShare: 0.5,
  },
  {
    id: "go",
    plugin: "counter-go",
    command: join(repo, "plugins-example", "go", "bin", "counter-go"),
    args: [],
    needs: join(repo, "plugins-example", "go", "bin", "counter-go"),
    hitKind: "counter-go.hit",
    countShare: 1,
  },
  {
    id: "rust",
    plugin: "counter-rust",
    command: join(repo, "target", "release", "counter-rust"),
    args: [],
    needs: join(repo, "target", "release", "counter-rust"),
    hitKind: "rust.hit",
    countShare: 1,
  },
];

function config(lang: Lang): PluginConfig {
  return {
    name: lang.plugin,
    command: lang.command,
    args: lang.args,
    capabilities: ["control"],
    maxInFlight: 8192,
    maxQueued: 1_000_000,
    maxReplayPayloads: 10_000_000,
    maxReplayBytes: 2 * 1024 * 1024 * 1024,
    restart: "permanent",
    backoffInitialMs: 0,
  };
}

async function measure(ctx: Ctx, lang: Lang, baseline: string | undefined): Promise<void> {
  const bh = benchHost([config(lang)]);
  try {
    await withTimeout(bh.host.start(), 60_000, "host.start");
    const count = Math.round((ctx.quick ? DISPATCH_256_COUNT.quick : DISPATCH_256_COUNT.full / 2) * lang.countShare);
    const r = await measureDispatch(ctx, `poly_${lang.id}_dispatch`, bh.host, [lang.hitKind], 256, count, 256);
    ctx.results.add({
      name: `poly_${lang.id}_dispatch_msgs_per_s`,
      unit: "msgs/s",
      values: r.rates,
      better: "higher",
      baseline,
      note: r.failed ? `${r.failed} failed (${r.firstError})` : `${lang.plugin}: ${lang.hitKind}, 256 B`,
      info: { payloadsPerRep: count, window: r.window },
    });
  } finally {
    await bh.close();
  }

  const n = ctx.quick ? 4 : 10;
  const spawnMs: number[] = [];
  const bareMs: number[] = [];
  const idleRss: number[] = [];
  const idleMs = ctx.quick ? 500 : 2_000;
  for (let i = 0; i <= n; i++) {
    const bare = await bareNodeStartMs();
    const h = benchHost([config(lang)]);
    let ms: number;
    try {
      const t0 = now();
      await withTimeout(h.host.start(), 60_000, "host.start");
      ms = now() - t0;
      if (i > 0 && idleRss.length < ctx.reps) {
        await sleep(idleMs);
        idleRss.push(rssMiB(h.host.status()[0]!.pid!));
      }
    } finally {
      await h.close();
    }
    if (i === 0) continue; // warm-up
    spawnMs.push(ms);
    bareMs.push(bare);
    progress(`  ${lang.id} spawn ${i}/${n}: ready ${ms.toFixed(1)} ms (bare node ${bare.toFixed(0)} ms)`);
  }
  ctx.results.add({ name: `poly_${lang.id}_spawn_ready_ms_p50`, unit: "ms", values: spawnMs, better: "lower", baseline: "node_bare_start_ms_p50", info: { samples: n } });
  ctx.results.add({ name: `poly_${lang.id}_idle_rss_mib`, unit: "MiB", values: idleRss, better: "lower", note: `after ${idleMs} ms idle` });
  if (!ctx.results.get("node_bare_start_ms_p50")) {
    ctx.results.add({ name: "node_bare_start_ms_p50", unit: "ms", values: bareMs, better: "lower", note: "measured by the polyglot scenario" });
  }
}

export const polyglot: Scenario = {
  name: "polyglot",
  describe: "the TS, Python, Go and Rust example counters: spawn → ready p50, 256 B dispatch msgs/s (ratio to Go's), idle RSS (skips one not built)",
  async run(ctx) {
    const built = POLYGLOT_LANGS.filter((l) => existsSync(l.needs));
    for (const l of POLYGLOT_LANGS.filter((l) => !built.includes(l))) {
      const why = `${l.plugin} (${l.id}) not built (${l.needs} missing; run ${l.id === "ts" ? "npm run build" : "bash scripts/setup-polyglot.sh"}); poly_${l.id}_* skipped`;
      progress(`  ${why}`);
      ctx.results.note(why);
    }
    const go = built.find((l) => l.id === "go");
    // Go first: the others' dispatch ratios are to its rate.
    const order = go ? [go, ...built.filter((l) => l !== go)] : built;
    for (const lang of order) {
      progress(`  ${lang.id}: ${lang.plugin}`);
      await measure(ctx, lang, go && lang !== go ? "poly_go_dispatch_msgs_per_s" : undefined);
    }
    const py = ctx.results.get("poly_python_dispatch_msgs_per_s");
    const goRate = ctx.results.get("poly_go_dispatch_msgs_per_s");
    if (py && goRate && goRate.median > 0) {
      const ratio = py.median / goRate.median;
      ctx.results.note(`polyglot: Python dispatch is ${ratio.toFixed(2)}× the Go counter's in this run (issue 11 asks ≥ 0.5×)${ratio < 0.5 ? ": BELOW" : ""}`);
    }
  },
};
