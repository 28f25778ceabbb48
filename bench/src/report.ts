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

/** The targets of the performance issue, checked against this run. */
export function goals(r: Results): Goal[] {
  const out: Goal[] = [];
  const add = (goal: string, target: string, measured: string | undefined, ok: boolean | undefined): void => {
    out.push({ goal, target, measured: measured ?? "-", status: ok === undefined ? "not measured" : ok ? "met" : "not met" });
  };
  const d = r.get("dispatch_256b_msgs_per_s");
  const raw = r.get("raw_uds_msgs_per_s");
  add("dispatch 256 B acked", "≥ 500k/s", d && `${fmt(d.median)}/s`, d && d.median >= 500_000);
  add("dispatch 256 B vs go-plugin stream (370k/s)", "≥ 1.3× (≥ 481k/s)", d && `${(d.median / 370_000).toFixed(2)}×`, d && d.median >= 1.3 * 370_000);
  add(
    "dispatch 256 B vs raw UDS (same run)",
    "≥ 0.6×",
    d && raw && `${(d.median / raw.median).toFixed(2)}×`,
    d && raw ? d.median >= 0.6 * raw.median : undefined,
  );
  const hc = r.get("host_call_rtt_p50_us");
  add("host call RTT p50", "≤ 175 µs", hc && `${fmt(hc.median)} µs`, hc && hc.median <= 175);
  const sp = r.get("spawn_ready_ms_p50");
  const bare = r.get("node_bare_start_ms_p50");
  add(
    "spawn → ready (TS) vs bare node start",
    "≤ 1.5×",
    sp && bare && `${(sp.median / bare.median).toFixed(2)}× (${fmt(sp.median)} ms vs ${fmt(bare.median)} ms)`,
    sp && bare ? sp.median <= 1.5 * bare.median : undefined,
  );
  const cr = r.get("crash_ready_ms_p50");
  const crs = r.get("crash_ready_standby_ms_p50");
  add("crash → ready, state restored, warm standby", "≤ 10 ms p50", crs && `${fmt(crs.median)} ms`, crs && crs.median <= 10);
  const up = r.get("upgrade_pause_ms_p50");
  add("hot upgrade: delivery held (small state)", "≤ 20 ms p50", up && `${fmt(up.median)} ms`, up && up.median <= 20);
  add(
    "crash → ready, state restored, cold",
    "≤ 1× cold spawn",
    cr && sp && `${(cr.median / sp.median).toFixed(2)}× (${fmt(cr.median)} ms)`,
    cr && sp ? cr.median <= sp.median : undefined,
  );
  const bulk = r.get("raw_uds_64k_mb_per_s");
  for (const variant of ["", "_memstore"]) {
    for (const op of ["save", "restore"]) {
      const s = r.find(new RegExp(`^snapshot_\\d+mb_${op}${variant}_mb_per_s$`));
      add(
        `snapshot ${op}${variant ? " (memory store)" : " (file store, fsync)"} vs raw UDS 64 KiB frames`,
        "≥ 0.6×",
        s && bulk && `${(s.median / bulk.median).toFixed(2)}× (${fmt(s.median)} MB/s)`,
        s && bulk ? s.median >= 0.6 * bulk.median : undefined,
      );
    }
  }
  const rss = r.get("plugin_idle_rss_mib");
  add("TS plugin idle RSS", "≤ 50 MB (47.7 MiB)", rss && `${fmt(rss.median)} MiB`, rss && rss.median * 1048576 <= 50e6);
  return out;
}

export function goalsTable(list: Goal[]): string {
  const rows = [["goal", "target", "measured", "status"], ["---", "---", "---", "---"], ...list.map((g) => [g.goal, g.target, g.measured, g.status])];
  return rows.map((r) => `| ${r.join(" | ")} |`).join("\n");
}
