/**
 * deploy/grafana/plugwire.json against a live host: every metric name its
 * queries (panel targets, the plugin variable, annotations) use is exported
 * by a real `plugwire run` of the demo plugins on its /metrics, with the type
 * the query needs (a _bucket/_sum/_count name belongs to a histogram). After
 * some traffic, a snapshot and a SIGKILL, the series the main panels draw
 * have samples too. The host runs with --no-dashboard: its admin port then
 * serves no page.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { startLiveHost } from "./live-host.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BOARD = join(repo, "deploy", "grafana", "plugwire.json");

/** Every PromQL expression in the board: targets' expr, variables' query, annotations' expr. */
export function boardQueries(board: unknown): string[] {
  const out: string[] = [];
  const walk = (node: unknown, key?: string): void => {
    if (typeof node === "string") {
      if (key === "expr" || key === "definition") out.push(node);
      return;
    }
    if (Array.isArray(node)) return node.forEach((n) => walk(n));
    if (node && typeof node === "object") {
      for (const [k, v] of Object.entries(node)) {
        if (k === "query" && v && typeof v === "object" && typeof (v as { query?: unknown }).query === "string") out.push((v as { query: string }).query);
        else walk(v, k);
      }
    }
  };
  walk(board);
  return out;
}

/** Metric names a PromQL expression selects. */
export function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bplugwire_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

/** `# TYPE name type` lines of a Prometheus text exposition. */
function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

describe("the Grafana board", { timeout: 120_000 }, () => {
  const board = JSON.parse(readFileSync(BOARD, "utf8")) as { panels: Array<{ id: number; type: string; targets?: unknown[] }>; uid: string };
  const queries = boardQueries(board);

  it("is a Grafana dashboard whose every query selects plugwire metrics only", () => {
    assert.equal(board.uid, "plugwire-host");
    const ids = board.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, "panel ids are unique");
    assert.ok(board.panels.filter((p) => p.type !== "row").every((p) => (p.targets ?? []).length > 0), "every panel queries something");
    assert.ok(queries.length >= 20, `found ${queries.length} queries`);
    for (const q of queries) {
      assert.ok(metricNames(q).length > 0, `query selects no plugwire metric: ${q}`);
      // A name right before a label matcher is a metric selector: it must be one of ours.
      for (const m of q.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\{/g)) assert.match(m[1]!, /^plugwire_/, `selector ${m[1]} in ${q}`);
    }
  });

  it("every metric its queries use exists in a live host's /metrics", async () => {
    // (With --no-dashboard, which this test checks on the way: no page, no login URL.)
    const host = await startLiveHost({ config: { snapshotIntervalMs: 0 }, args: ["--no-dashboard"] });
    const pids: number[] = [];
    try {
      assert.equal(host.loginUrl, undefined, "no dashboard login URL is logged");
      const page = await fetch(`${host.adminUrl}/`);
      assert.equal(page.status, 401, "GET / is just an unauthenticated admin request");
      assert.doesNotMatch(await page.text(), /<html/i);
      const src = new Uint8Array(32).fill(1);
      for (let i = 0; i < 20; i++) await host.client.dispatch({ kind: "counter.hit", src, body: new TextEncoder().encode(String(i)) });
      const snap = await host.client.snapshotNow({ name: "counter" });
      assert.equal(snap.results[0]?.ok, true);
      const { plugins } = await host.client.listPlugins({});
      pids.push(...plugins.map((p) => p.pid));
      const counter = plugins.find((p) => p.name === "counter")!;
      assert.ok(counter.pid > 0);
      process.kill(counter.pid, "SIGKILL");
      // Logged by the supervisor just before it counts the restart (same tick).
      await host.waitForLog((r) => r.msg === "plugin 'counter' was killed by SIGKILL (crash)", "of counter's SIGKILL", 15_000);
      const text = await (await fetch(host.metricsUrl)).text();
      const typed = types(text);
      const used = [...new Set(queries.flatMap(metricNames))].sort();
      assert.ok(used.length >= 15, `the board uses ${used.length} metrics`);
      const missing: string[] = [];
      for (const name of used) {
        const histogram = /_(bucket|sum|count)$/.exec(name);
        const family = histogram && typed.get(name.slice(0, histogram.index)) === "histogram" ? name.slice(0, histogram.index) : name;
        if (!typed.has(family)) missing.push(name);
        else if (family !== name) assert.equal(typed.get(family), "histogram", `${name} is a histogram's series`);
      }
      assert.deepEqual(missing, [], `the board queries metrics the host does not export:\n${missing.join("\n")}`);
      // The series the main panels draw have samples after this traffic.
      for (const series of [
        'plugwire_payloads_dispatched_total{plugin="counter"} 20',
        'plugwire_payloads_acked_total{plugin="counter"} 20',
        'plugwire_plugin_restarts_total{plugin="counter"} 1',
        'plugwire_plugin_state{plugin="echo",state="ready"} 1',
        'plugwire_queue_depth{plugin="counter"}',
        'plugwire_in_flight{plugin="counter"}',
        'plugwire_dispatch_latency_seconds_bucket{le="+Inf",plugin="counter"}',
        'plugwire_snapshot_age_seconds{plugin="counter"}',
        'plugwire_snapshot_bytes{plugin="counter"}',
        'plugwire_snapshot_applied_seq{plugin="counter"} 20',
        'plugwire_snapshots_total{plugin="counter",result="ok"}',
      ]) {
        assert.ok(text.split("\n").some((l) => l.startsWith(series)), `no sample ${series} in /metrics`);
      }
    } finally {
      const { plugins } = await host.client.listPlugins({}).catch(() => ({ plugins: [] }));
      pids.push(...plugins.map((p) => p.pid));
      await host.stop(pids);
    }
  });
});
