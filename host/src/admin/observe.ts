/**
 * What the dashboard shows that the host does not keep on its own: a bounded
 * ring of recent log lines (plugin output and the host's supervision events),
 * the last hour's restarts with their reasons, the last snapshot of each
 * plugin, and per-plugin rates sampled once a second from the host's metrics
 * (payloads dispatched, mean dispatch-to-ack latency). It listens to the
 * host's events only; attach it before `host.start()` to see the first
 * launches' snapshot restores. Everything is bounded in count and size.
 */
import { EventEmitter } from "node:events";
import type { Host } from "../host.js";

export interface ObservedLogLine {
  seq: number;
  timeMs: number;
  plugin: string;
  level: string;
  msg: string;
}

export interface ObservedRestart {
  atMs: number;
  reason: string;
}

export interface ObservedSnapshot {
  atMs: number;
  sizeBytes: number;
  appliedSeq: number;
  restored: boolean;
}

export interface HostObserverOptions {
  /** Log lines kept; default 1000. */
  maxLogLines?: number;
  /** Restarts kept per plugin (within the last hour); default 100. */
  maxRestarts?: number;
  /** Rate samples kept per plugin, one a second; default 60. */
  historySamples?: number;
}

const HOUR_MS = 60 * 60 * 1000;
/** Longest log message kept, in characters. */
const MAX_MSG_CHARS = 2000;

interface Totals {
  dispatched: number;
  latencySum: number;
  latencyCount: number;
}

/** Follows one host for the dashboard. Emits "change" when something worth an immediate update happened. */
export class HostObserver extends EventEmitter<{ change: [] }> {
  private readonly maxLogLines: number;
  private readonly maxRestarts: number;
  private readonly historySamples: number;
  private readonly logs: ObservedLogLine[] = [];
  private logSeq = 0;
  private readonly restarts = new Map<string, ObservedRestart[]>();
  private readonly lastExit = new Map<string, string>();
  private readonly snapshots = new Map<string, ObservedSnapshot>();
  private readonly rates = new Map<string, number[]>();
  private readonly latencies = new Map<string, number[]>();
  private readonly totalRates: number[] = [];
  private previous = new Map<string, Totals>();
  private previousAt = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: Array<() => void> = [];
  private sampling = false;
  private closed = false;

  constructor(
    private readonly host: Host,
    options: HostObserverOptions = {},
  ) {
    super();
    // One "change" listener per open WatchStatus stream.
    this.setMaxListeners(0);
    this.maxLogLines = options.maxLogLines ?? 1000;
    this.maxRestarts = options.maxRestarts ?? 100;
    this.historySamples = options.historySamples ?? 60;
    const on = <E extends Parameters<Host["on"]>[0]>(event: E, listener: Parameters<Host["on"]>[1]): void => {
      host.on(event, listener as never);
      this.unsubscribe.push(() => host.off(event, listener as never));
    };
    on("plugin:log", ((e: { plugin: string; level: string; msg: string }) => this.log(e.plugin, e.level, e.msg, false)) as never);
    on("plugin:exit", ((e: { plugin: string; pid: number; reason: string; code: number | null; signal: string | null }) => {
      const how = e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
      this.lastExit.set(e.plugin, `${how} (${e.reason})`);
      this.log(e.plugin, "error", `process ${e.pid} ${how} (${e.reason})`);
    }) as never);
    on("plugin:restart", ((e: { plugin: string; attempt: number; delayMs: number }) => {
      const reason = this.lastExit.get(e.plugin) ?? "supervisor restart";
      this.noteRestart(e.plugin, reason);
      this.log(e.plugin, "warn", `restarting in ${e.delayMs} ms (attempt ${e.attempt}) after it ${reason}`);
    }) as never);
    on("plugin:state", ((e: { plugin: string; state: string; previous: string; reason?: string }) => {
      const level = e.state === "failed" ? "error" : "info";
      this.log(e.plugin, level, `state ${e.previous} -> ${e.state}${e.reason ? `: ${e.reason}` : ""}`);
    }) as never);
    on("plugin:dead-letter", ((e: { plugin: string; letter: { seq: number; kind: string; reason: string } }) =>
      this.log(e.plugin, "error", `payload seq ${e.letter.seq} (kind '${e.letter.kind}') moved to dead letters: ${e.letter.reason}`)) as never);
    on("snapshot:taken", ((e: { plugin: string; appliedSeq: number; sizeBytes: number }) =>
      this.snapshots.set(e.plugin, { atMs: Date.now(), sizeBytes: e.sizeBytes, appliedSeq: e.appliedSeq, restored: false })) as never);
    on("snapshot:restored", ((e: { plugin: string; appliedSeq: number; sizeBytes: number; replayed: number }) => {
      this.snapshots.set(e.plugin, { atMs: Date.now(), sizeBytes: e.sizeBytes, appliedSeq: e.appliedSeq, restored: true });
      this.log(e.plugin, "info", `restored its snapshot (applied_seq ${e.appliedSeq}, ${e.sizeBytes} bytes) and replayed ${e.replayed} payloads`, false);
    }) as never);
    on("snapshot:reset", ((e: { plugin: string; reason: string }) => this.log(e.plugin, "warn", `snapshot discarded: ${e.reason}`)) as never);
    this.timer = setInterval(() => void this.sample(), 1000);
    this.timer.unref();
  }

  /** Adds a log line (also used for operator actions); `urgent` lines trigger an update at once. */
  log(plugin: string, level: string, msg: string, urgent = true): void {
    this.logs.push({ seq: ++this.logSeq, timeMs: Date.now(), plugin, level, msg: msg.length > MAX_MSG_CHARS ? `${msg.slice(0, MAX_MSG_CHARS)}…` : msg });
    if (this.logs.length > this.maxLogLines) this.logs.splice(0, this.logs.length - this.maxLogLines);
    if (urgent) this.emit("change");
  }

  /** Records a restart of `plugin` now, for the timeline. */
  noteRestart(plugin: string, reason: string): void {
    const list = this.restarts.get(plugin) ?? [];
    list.push({ atMs: Date.now(), reason });
    if (list.length > this.maxRestarts) list.splice(0, list.length - this.maxRestarts);
    this.restarts.set(plugin, list);
    this.emit("change");
  }

  /** Log lines after `seq`, oldest first. */
  logsAfter(seq: number): ObservedLogLine[] {
    const i = this.logs.findIndex((l) => l.seq > seq);
    return i < 0 ? [] : this.logs.slice(i);
  }

  get lastLogSeq(): number {
    return this.logSeq;
  }

  /** The last hour's restarts of a plugin, oldest first. */
  restartsOf(plugin: string, now = Date.now()): ObservedRestart[] {
    const list = this.restarts.get(plugin) ?? [];
    while (list.length > 0 && now - list[0]!.atMs > HOUR_MS) list.shift();
    return [...list];
  }

  snapshotOf(plugin: string): ObservedSnapshot | undefined {
    return this.snapshots.get(plugin);
  }

  /** Per-second samples of the last `historySamples` seconds. */
  ratesOf(plugin: string): { dispatchRate: number[]; ackLatencyMs: number[] } {
    return { dispatchRate: [...(this.rates.get(plugin) ?? [])], ackLatencyMs: [...(this.latencies.get(plugin) ?? [])] };
  }

  /** Payloads dispatched per second, every plugin together, over the last sample. */
  get totalDispatchRate(): number {
    return this.totalRates.at(-1) ?? 0;
  }

  private push(series: number[], value: number): void {
    series.push(value);
    if (series.length > this.historySamples) series.splice(0, series.length - this.historySamples);
  }

  /** Reads the host's counters (through its metrics) and turns the deltas since the last sample into rates. */
  private async sample(): Promise<void> {
    if (this.sampling || this.closed) return;
    this.sampling = true;
    try {
      const now = performance.now();
      const totals = new Map<string, Totals>();
      const of = (plugin: string): Totals => {
        let t = totals.get(plugin);
        if (!t) totals.set(plugin, (t = { dispatched: 0, latencySum: 0, latencyCount: 0 }));
        return t;
      };
      for (const v of (await this.host.metrics.deliveries.get()).values) of(String(v.labels.plugin)).dispatched = v.value;
      for (const v of (await this.host.metrics.latency.get()).values) {
        if (v.metricName?.endsWith("_sum")) of(String(v.labels.plugin)).latencySum = v.value;
        else if (v.metricName?.endsWith("_count")) of(String(v.labels.plugin)).latencyCount = v.value;
      }
      if (this.previousAt > 0) {
        const seconds = Math.max(0.001, (now - this.previousAt) / 1000);
        let total = 0;
        for (const s of this.host.status()) {
          const cur = totals.get(s.name) ?? { dispatched: 0, latencySum: 0, latencyCount: 0 };
          const prev = this.previous.get(s.name) ?? cur;
          const rate = Math.max(0, cur.dispatched - prev.dispatched) / seconds;
          const acks = cur.latencyCount - prev.latencyCount;
          const latencyMs = acks > 0 ? ((cur.latencySum - prev.latencySum) / acks) * 1000 : 0;
          total += rate;
          if (!this.rates.has(s.name)) this.rates.set(s.name, []);
          if (!this.latencies.has(s.name)) this.latencies.set(s.name, []);
          this.push(this.rates.get(s.name)!, rate);
          this.push(this.latencies.get(s.name)!, latencyMs);
        }
        this.push(this.totalRates, total);
      }
      this.previous = totals;
      this.previousAt = now;
    } catch (e) {
      this.host.logger.warn({ err: String(e) }, "dashboard: sampling the host's metrics failed");
    } finally {
      this.sampling = false;
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    for (const off of this.unsubscribe) off();
    this.unsubscribe.length = 0;
    this.removeAllListeners();
  }
}
