/**
 * Metrics, ratios to the baselines measured in the same run, the goals from
 * the performance issue, and the printed table.
 */
import { median } from "./lib.js";

export interface Metric {
  name: string;
  unit: string;
  /** One value per repetition (or per sample, where noted). */
  values: number[];
  median: number;
  min: number;
  max: number;
  better: "higher" | "lower";
  /** The metric this one is divided by for `ratio`, measured in the same run. */
  baseline?: string;
  ratio?: number;
  /** Short remark printed in the table. */
  note?: string;
  /** Extra facts recorded in the JSON (counts, sizes, configs). */
  info?: Record<string, unknown>;
}

export interface MetricInput {
  name: string;
  unit: string;
  values: number[];
  better: "higher" | "lower";
  baseline?: string;
  note?: string;
  info?: Record<string, unknown>;
}

export class Results {
  readonly metrics = new Map<string, Metric>();
  readonly notes: string[] = [];

  add(input: MetricInput): Metric {
    const values = input.values.filter((v) => Number.isFinite(v));
    const metric: Metric = {
      ...input,
      values,
      median: median(values),
      min: values.length ? Math.min(...values) : Number.NaN,
      max: values.length ? Math.max(...values) : Number.NaN,
    };
    this.metrics.set(metric.name, metric);
    return metric;
  }

  get(name: string): Metric | undefined {
    return this.metrics.get(name);
  }

  /** Finds the first metric whose name matches `re` (for names carrying a count, like scale_64_*). */
  find(re: RegExp): Metric | undefined {
    for (const m of this.metrics.values()) if (re.test(m.name)) return m;
    return undefined;
  }

  note(text: string): void {
    this.notes.push(text);
  }

  computeRatios(): void {
    for (const m of this.metrics.values()) {
      if (!m.baseline) continue;
      const b = this.metrics.get(m.baseline);
      m.ratio = b && Number.isFinite(b.median) && b.median !== 0 ? m.median / b.median : undefined;
    }
  }
}

export function fmt(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "-";
  const abs = Math.abs(value);
  if (abs >= 100_000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 1000) return Math.round(value).toLocaleString("en-US");
  if (abs >= 100) return value.toFixed(0);
  if (abs >= 10) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toFixed(3);
}

function ratioText(m: Metric): string {
  if (m.ratio === undefined || !Number.isFinite(m.ratio)) return "";
  return `${m.ratio >= 10 ? m.ratio.toFixed(1) : m.ratio.toFixed(2)}× ${m.baseline}`;
}

/** A markdown table: it reads fine in a terminal and pastes into the docs. */
export function table(results: Results): string {
  const header = ["metric", "median", "min", "max", "unit", "n", "vs baseline (same run)", "note"];
  const rows = [...results.metrics.values()].map((m) => [
    m.name,
    fmt(m.median),
    fmt(m.min),
    fmt(m.max),
    m.unit,
    String(m.values.length),
    ratioText(m),
    m.note ?? "",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i >= 1 && i <= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  const sep = `| ${widths.map((w, i) => (i >= 1 && i <= 3 ? "-".repeat(w - 1) + ":" : "-".repeat(w))).join(" | ")} |`;
  return [line(header), sep, ...rows.map(line)].join("\n");
}

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  status: "met" | "not met" | "not measured" | "n/a";
}

/** The targets of the performance issue (issue 11, "second push"), checked against this run. */
export function goals(r: Results): Goal[] {
  const out: Goal[] = [];
  const add = (goal: string, target: string, measured: string | undefined, ok: boolean | undefined): void => {
    out.push({ goal, target, measured: measured ?? "-", status: ok === undefined ? "not measured" : ok ? "met" : "not met" });
  };
  const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
  const raw = r.get("raw_uds_msgs_per_s");
  const many = r.get("dispatch_many_256b_msgs_per_s");
  add("dispatch 256 B, batch API (dispatchMany), TS sink", "≥ 1.54M/s (go-plugin batched)", many && `${fmt(many.median)}/s`, many && many.median >= 1_540_000);
  add("dispatch 256 B, batch API vs raw UDS (same run)", "≥ 0.6×", many && raw && ratio(many.median, raw.median), many && raw ? many.median >= 0.6 * raw.median : undefined);
  const d = r.get("dispatch_256b_msgs_per_s");
  add("dispatch 256 B, plain host.dispatch()", "≥ 629k/s (go-plugin acked stream)", d && `${fmt(d.median)}/s`, d && d.median >= 629_000);
  for (const [name, label] of [
    ["dispatch_latency_p99_us", "spread-out arrivals"],
    ["dispatch_latency_1ms_bursts_p99_us", "1 ms bursts"],
  ] as const) {
    const l = r.get(name);
    add(`dispatch latency p99 at 50 % of peak, ${label}`, "≤ 1 ms", l && `${fmt(l.median / 1000)} ms`, l && l.median <= 1000);
  }
  const hc = r.get("host_call_rtt_p50_us");
  add("host call RTT p50 (lookup from a handler)", "≤ 85 µs (go-plugin unary)", hc && `${fmt(hc.median)} µs`, hc && hc.median <= 85);
  const sp = r.get("spawn_ready_ms_p50");
  const bare = r.get("node_bare_start_ms_p50");
  add(
    "spawn → ready (TS) vs bare node start",
    "≤ 1.2×",
    sp && bare && `${ratio(sp.median, bare.median)} (${fmt(sp.median)} ms vs ${fmt(bare.median)} ms)`,
    sp && bare ? sp.median <= 1.2 * bare.median : undefined,
  );
  const gs = r.get("go_spawn_ready_ms_p50");
  add("spawn → ready, Go example through the host", "≤ 7.5 ms", gs && `${fmt(gs.median)} ms`, gs && gs.median <= 7.5);
  const cr = r.get("crash_ready_ms_p50");
  const crs = r.get("crash_ready_standby_ms_p50");
  add("crash → ready, state restored, warm standby", "≤ 10 ms", crs && `${fmt(crs.median)} ms`, crs && crs.median <= 10);
  add(
    "crash → ready, state restored, cold",
    "≤ 1× cold spawn",
    cr && sp && `${ratio(cr.median, sp.median)} (${fmt(cr.median)} ms)`,
    cr && sp ? cr.median <= sp.median : undefined,
  );
  const up = r.get("upgrade_pause_ms_p50");
  add("hot upgrade: delivery held (small state)", "≤ 20 ms", up && `${fmt(up.median)} ms`, up && up.median <= 20);
  const bulk = r.get("raw_uds_64k_mb_per_s");
  for (const variant of ["", "_memstore"]) {
    for (const op of ["save", "restore"]) {
      const s = r.find(new RegExp(`^snapshot_\\d+mb_${op}${variant}_mb_per_s$`));
      add(
        `snapshot ${op}${variant ? " (memory store)" : " (file store, fsync)"} vs raw UDS 64 KiB frames`,
        "≥ 0.6×",
        s && bulk && `${ratio(s.median, bulk.median)} (${fmt(s.median)} MB/s)`,
        s && bulk ? s.median >= 0.6 * bulk.median : undefined,
      );
    }
  }
  const rss = r.get("plugin_idle_rss_mib");
  const bareRss = r.get("node_bare_rss_mib");
  add(
    "TS plugin idle RSS vs idle bare node",
    "≤ 1.1×",
    rss && bareRss && `${ratio(rss.median, bareRss.median)} (${fmt(rss.median)} MiB)`,
    rss && bareRss ? rss.median <= 1.1 * bareRss.median : undefined,
  );
  const hostRss = r.get("host_rss_per_plugin_mib");
  add("host RSS per added plugin", "≤ 2 MiB", hostRss && `${fmt(hostRss.median)} MiB`, hostRss && hostRss.median <= 2);
  const scaleReady = r.find(/^scale_\d+_ready_s$/);
  const scaleStorm = r.find(/^scale_\d+_restart_storm_s$/);
  const scaleRatio = r.find(/^scale_\d+_dispatch_ratio$/);
  add(`${scaleReady?.name ?? "scale_64_ready_s"}`, "≤ 2 s", scaleReady && `${fmt(scaleReady.median)} s`, scaleReady && scaleReady.median <= 2);
  add(`${scaleStorm?.name ?? "scale_64_restart_storm_s"}`, "≤ 2 s", scaleStorm && `${fmt(scaleStorm.median)} s`, scaleStorm && scaleStorm.median <= 2);
  add(`${scaleRatio?.name ?? "scale_64_dispatch_ratio"}`, "≥ 0.8", scaleRatio && `${fmt(scaleRatio.median)}`, scaleRatio && scaleRatio.median >= 0.8);
  const py = r.get("poly_python_dispatch_msgs_per_s");
  const goPoly = r.get("poly_go_dispatch_msgs_per_s");
  add("Python plugin dispatch vs the Go example's", "≥ 0.5×", py && goPoly && ratio(py.median, goPoly.median), py && goPoly ? py.median >= 0.5 * goPoly.median : undefined);
  return out;
}

export function goalsTable(list: Goal[]): string {
  const rows = [["goal", "target", "measured", "status"], ["---", "---", "---", "---"], ...list.map((g) => [g.goal, g.target, g.measured, g.status])];
  return rows.map((r) => `| ${r.join(" | ")} |`).join("\n");
}
