/** Prometheus metrics of one host, in a registry of its own. */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { PluginState } from "./events.js";

const STATES: PluginState[] = ["starting", "ready", "restarting", "failed", "stopped"];

export class HostMetrics {
  readonly registry = new Registry();
  readonly restarts = new Counter({ name: "plugwire_plugin_restarts_total", help: "Plugin restarts", labelNames: ["plugin"], registers: [this.registry] });
  readonly state = new Gauge({ name: "plugwire_plugin_state", help: "1 for the plugin's current state", labelNames: ["plugin", "state"], registers: [this.registry] });
  readonly deliveries: Counter;
  readonly acks: Counter;
  readonly handlerErrors = new Counter({ name: "plugwire_handler_errors_total", help: "Payloads whose handler failed", labelNames: ["plugin"], registers: [this.registry] });
  readonly deadLetters = new Counter({ name: "plugwire_dead_letters_total", help: "Payloads parked as dead letters", labelNames: ["plugin"], registers: [this.registry] });
  readonly overflow = new Counter({ name: "plugwire_queue_overflow_total", help: "Payloads rejected or dropped because a queue was full", labelNames: ["plugin", "policy"], registers: [this.registry] });
  readonly queueDepth: Gauge;
  readonly inFlight: Gauge;
  readonly snapshots = new Counter({ name: "plugwire_snapshots_total", help: "Snapshot attempts by result", labelNames: ["plugin", "result"], registers: [this.registry] });
  readonly snapshotResets = new Counter({ name: "plugwire_snapshot_resets_total", help: "Snapshots discarded for an unsupported version", labelNames: ["plugin"], registers: [this.registry] });
  readonly hostCallsRefused = new Counter({
    name: "plugwire_host_calls_refused_total",
    help: "HostService calls refused, or WatchPeers streams ended, by a per-plugin limit (reason: rate_limit, watch_streams, watch_backlog, request_bytes)",
    labelNames: ["plugin", "reason"],
    registers: [this.registry],
  });
  readonly logLinesDropped = new Counter({ name: "plugwire_log_lines_dropped_total", help: "Plugin log lines dropped by the rate limit", labelNames: ["plugin"], registers: [this.registry] });
  readonly latency = new Histogram({
    name: "plugwire_dispatch_latency_seconds",
    help: "Time from dispatch to ack of the oldest payload each ack covers (one observation per ack message)",
    labelNames: ["plugin"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  /** `sample` reports queue depth and in-flight counts when metrics are scraped. */
  constructor(sample: () => Array<{ plugin: string; queued: number; inFlight: number; dispatched: number; acked: number }> = () => []) {
    const metrics = this;
    // The hot path keeps plain totals; scrapes turn them into counter increments.
    const seen = new Map<string, number>();
    const catchUp = (counter: Counter, name: string, plugin: string, total: number): void => {
      const key = `${name}\u0000${plugin}`;
      const delta = total - (seen.get(key) ?? 0);
      if (delta > 0) counter.inc({ plugin }, delta);
      seen.set(key, total);
    };
    this.deliveries = new Counter({
      name: "plugwire_payloads_dispatched_total",
      help: "Payloads accepted by dispatch",
      labelNames: ["plugin"],
      registers: [this.registry],
      collect() {
        for (const s of sample()) catchUp(metrics.deliveries, "dispatched", s.plugin, s.dispatched);
      },
    });
    this.acks = new Counter({
      name: "plugwire_payloads_acked_total",
      help: "Payloads acked by plugins",
      labelNames: ["plugin"],
      registers: [this.registry],
      collect() {
        for (const s of sample()) catchUp(metrics.acks, "acked", s.plugin, s.acked);
      },
    });
    this.queueDepth = new Gauge({
      name: "plugwire_queue_depth",
      help: "Payloads waiting to be sent to the plugin, redeliveries included",
      labelNames: ["plugin"],
      registers: [this.registry],
      collect() {
        for (const s of sample()) metrics.queueDepth.set({ plugin: s.plugin }, s.queued);
      },
    });
    this.inFlight = new Gauge({
      name: "plugwire_in_flight",
      help: "Payloads sent and not yet acked",
      labelNames: ["plugin"],
      registers: [this.registry],
      collect() {
        for (const s of sample()) metrics.inFlight.set({ plugin: s.plugin }, s.inFlight);
      },
    });
  }

  /** The last snapshot stored or restored per plugin (for the snapshot gauges). */
  private readonly lastSnapshots = new Map<string, { atMs: number; sizeBytes: number; appliedSeq: number }>();
  readonly snapshotAge = new Gauge({
    name: "plugwire_snapshot_age_seconds",
    help: "Seconds since the plugin's last snapshot was stored (or restored at a launch)",
    labelNames: ["plugin"],
    registers: [this.registry],
    collect: () => {
      const now = Date.now();
      for (const [plugin, s] of this.lastSnapshots) this.snapshotAge.set({ plugin }, Math.max(0, (now - s.atMs) / 1000));
    },
  });
  readonly snapshotBytes = new Gauge({ name: "plugwire_snapshot_bytes", help: "Size of the plugin's last snapshot", labelNames: ["plugin"], registers: [this.registry] });
  readonly snapshotAppliedSeq = new Gauge({
    name: "plugwire_snapshot_applied_seq",
    help: "applied_seq of the plugin's last snapshot (the last payload its state includes)",
    labelNames: ["plugin"],
    registers: [this.registry],
  });

  /** Records a snapshot stored or restored now. */
  snapshotStored(plugin: string, sizeBytes: number, appliedSeq: number, atMs = Date.now()): void {
    this.lastSnapshots.set(plugin, { atMs, sizeBytes, appliedSeq });
    this.snapshotBytes.set({ plugin }, sizeBytes);
    this.snapshotAppliedSeq.set({ plugin }, appliedSeq);
  }

  setState(plugin: string, state: PluginState): void {
    for (const s of STATES) this.state.set({ plugin, state: s }, s === state ? 1 : 0);
  }
}
