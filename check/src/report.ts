/** The human and JSON forms of a check report. */
import type { CheckReport, CheckResult, CheckStatus, Timings } from "./types.js";
import { ms } from "./util.js";

const MARK: Record<CheckStatus, string> = { pass: "✓", fail: "✗", skip: "-" };

/** Two lines per check: the verdict and title, then what happened and what to change. */
export function formatResult(r: CheckResult): string {
  return `${MARK[r.status]} ${r.id}: ${r.title}\n    ${r.status === "skip" ? "skipped: " : ""}${r.detail}\n`;
}

function range(values: number[]): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return Math.round(lo) === Math.round(hi) ? ms(lo) : `${Math.round(lo)}–${ms(hi)}`;
}

export function formatTimings(t: Timings): string {
  if (t.spawnToHandshakeMs === undefined) return "timings: no handshake was seen\n";
  const ready = t.spawnToReadyMs === undefined ? "never ready" : `spawn → ready ${ms(t.spawnToReadyMs)}`;
  let line = `timings: spawn → handshake ${ms(t.spawnToHandshakeMs)}, ${ready} (first launch)`;
  if (t.launches.length > 1) {
    const readies = t.launches.flatMap((l) => (l.spawnToReadyMs === undefined ? [] : [l.spawnToReadyMs]));
    line += `; over ${t.launches.length} launches: handshake ${range(t.launches.map((l) => l.spawnToHandshakeMs))}`;
    if (readies.length > 0) line += `, ready ${range(readies)}`;
  }
  return `${line}\n`;
}

export function formatSummary(report: CheckReport): string {
  const verdict = report.failed === 0 ? "conformant" : "NOT conformant";
  return `${formatTimings(report.timings)}result: ${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped: ${verdict}\n`;
}

export function formatJson(report: CheckReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === "number" ? Math.round(value * 10) / 10 : value), 2)}\n`;
}
