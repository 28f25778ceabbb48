/**
 * Shared bench plumbing: statistics, a seeded PRNG, progress output, bounded
 * waits, a host wired to counting ports, and process bookkeeping so that no
 * process outlives the run.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createHost, MemoryPeerDirectory, type Host, type HostOptions, type PluginConfig } from "@plugwire/host";

export const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (bench/dist/.. /..). */
export const repo = join(here, "..", "..");

/** Compiled bench plugin scripts. */
export const SINK_PLUGIN = join(here, "plugins", "sink.js");
export const STATE_PLUGIN = join(here, "plugins", "state.js");
export const RAW_PEER = join(here, "raw-peer.js");
export const HOST_PROC = join(here, "host-proc.js");
export const COUNTER_PLUGIN = join(repo, "plugins-example", "dist", "counter.js");
export const GO_PLUGIN = join(repo, "plugins-example", "go", "bin", "presence-go");

// ------------------------------------------------------------------ stats

export function sortedCopy(values: ArrayLike<number>): Float64Array {
  const a = Float64Array.from(values as ArrayLike<number>);
  a.sort();
  return a;
}

/** Nearest-rank percentile of sorted values (p in [0, 100]). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Median (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

// -------------------------------------------------------------- seeded PRNG

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `size` bytes from a seeded PRNG. */
export function seededBytes(size: number, seed: number): Buffer {
  const next = prng(seed);
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (next() * 256) | 0;
  return out;
}

// --------------------------------------------------------------- progress

const t0 = performance.now();

export function progress(message: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[bench ${s}s] ${message}\n`);
}

export function now(): number {
  return performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Rejects with `what` after `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ------------------------------------------------------- process bookkeeping

const children = new Set<ChildProcess>();
const hosts = new Set<Host>();
const tempDirs = new Set<string>();

/** Spawns a child that is killed at the end of the run if still alive. */
export function spawnTracked(command: string, args: string[], options: Parameters<typeof spawn>[2] = {}): ChildProcess {
  const child = spawn(command, args, options);
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export function killTracked(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 5_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGKILL");
  });
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Stops every host and kills every child still around. Safe to call twice. */
export async function cleanupAll(): Promise<void> {
  for (const host of [...hosts]) {
    await withTimeout(host.stop(), 30_000, "host.stop during cleanup").catch((e: unknown) => progress(`cleanup: ${String(e)}`));
    hosts.delete(host);
  }
  await Promise.all([...children].map(killTracked));
  for (const dir of [...tempDirs]) removeTempDir(dir);
}

/** Kills plugin pids that a stopped host somehow left behind (there should be none). */
export function leftovers(pids: Iterable<number>): number[] {
  return [...pids].filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
}

// ------------------------------------------------------------------- hosts

/** Peer whose sends the control port records (the bench plugins report to it). */
export const REPORT_PEER = new Uint8Array(32).fill(0xee);
/** Source peer of ordinary payloads; the directory knows its name. */
export const SRC_PEER = new Uint8Array(32).fill(0x11);

export interface BenchHost {
  host: Host;
  dataDir: string;
  /** JSON reports sent to REPORT_PEER, in order. */
  reports: unknown[];
  /** Every other sendDirect effect, counted. */
  sends: { count: number };
  /** Every plugin pid seen. */
  pids: Set<number>;
  close(): Promise<void>;
}

/** A host with silent logs, no periodic snapshots and counting ports. */
export function benchHost(plugins: PluginConfig[], options: Partial<HostOptions> = {}): BenchHost {
  const dataDir = options.dataDir ?? tempDir("pwb-");
  const ownDataDir = options.dataDir === undefined;
  const directory = new MemoryPeerDirectory();
  directory.apply({ type: "seen", nodeId: SRC_PEER, x25519Pub: new Uint8Array(32).fill(0x22), name: "bench-peer", source: "direct" });
  const reports: unknown[] = [];
  const sends = { count: 0 };
  const host = createHost({
    plugins,
    dataDir,
    logger: pino({ level: process.env.PLUGWIRE_BENCH_LOG ?? "silent" }),
    snapshotIntervalMs: 0,
    runDirParent: "/tmp",
    ports: {
      peers: directory,
      control: {
        sendDirect: (peer, frame) => {
          if (peer.length === 32 && peer[0] === 0xee && peer[31] === 0xee) {
            try {
              reports.push(JSON.parse(Buffer.from(frame).toString("utf8")));
            } catch {
              reports.push({ unparsable: Buffer.from(frame).toString("utf8") });
            }
          } else {
            sends.count++;
          }
        },
        sendRouted: () => false,
      },
      identity: { signingSeed: () => new Uint8Array(32).fill(7) },
    },
    ...options,
  });
  hosts.add(host);
  const pids = new Set<number>();
  host.on("plugin:state", () => {
    for (const s of host.status()) if (s.pid) pids.add(s.pid);
  });
  return {
    host,
    dataDir,
    reports,
    sends,
    pids,
    async close() {
      for (const s of host.status()) if (s.pid) pids.add(s.pid);
      await withTimeout(host.stop(), 60_000, "host.stop");
      hosts.delete(host);
      const left = leftovers(pids);
      if (left.length > 0) {
        progress(`BUG: plugin processes left behind after host.stop(): ${left.join(", ")}; killing them`);
        for (const pid of left) {
          try {
            process.kill(pid, "SIGKILL");
          } catch {
            /* gone */
          }
        }
      }
      if (ownDataDir) removeTempDir(dataDir);
    },
  };
}

/** A node plugin config with bench-friendly limits. */
export function nodePlugin(name: string, script: string, extra: Partial<PluginConfig> = {}): PluginConfig {
  return {
    name,
    command: process.execPath,
    args: [script],
    maxInFlight: 8192,
    maxQueued: 1_000_000,
    maxReplayPayloads: 10_000_000,
    maxReplayBytes: 2 * 1024 * 1024 * 1024,
    restart: "permanent",
    maxRestarts: 10_000,
    backoffInitialMs: 0,
    ...extra,
  };
}

/** Resolves with the next event `name` matching `predicate`, or rejects after `ms`. */
export function nextEvent<T>(host: Host, name: string, predicate: (arg: T) => boolean, ms: number): Promise<T> {
  const emitter = host as unknown as { on(n: string, l: (a: T) => void): void; off(n: string, l: (a: T) => void): void };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new Error(`timed out after ${ms} ms waiting for ${name}`));
    }, ms);
    const listener = (arg: T): void => {
      if (!predicate(arg)) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(arg);
    };
    emitter.on(name, listener);
  });
}

/** Waits until `reports` has more than `count` entries. */
export async function waitForReport(reports: unknown[], count: number, ms: number): Promise<unknown> {
  const deadline = now() + ms;
  while (reports.length <= count) {
    if (now() > deadline) throw new Error(`timed out after ${ms} ms waiting for a plugin report`);
    await sleep(2);
  }
  return reports[count];
}

/** VmRSS of a process in MiB, from /proc. */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

// ---------------------------------------------------------------- dispatch

export interface PumpResult {
  count: number;
  elapsedMs: number;
  failed: number;
  timedOut: boolean;
  firstError?: string;
}

/**
 * Dispatches `total` payloads with at most `window` outstanding, each acked,
 * spread round-robin over `kinds`. Bounded by `maxMs`.
 */
export function pump(host: Host, kinds: readonly string[], body: Uint8Array, total: number, window: number, maxMs: number): Promise<PumpResult> {
  return new Promise((resolve) => {
    let sent = 0;
    let done = 0;
    let failed = 0;
    let firstError: string | undefined;
    let finished = false;
    let k = 0;
    const start = now();
    const finish = (timedOut: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ count: done, elapsedMs: now() - start, failed, timedOut, firstError });
    };
    const timer = setTimeout(() => finish(true), maxMs);
    const onDone = (): void => {
      done++;
      if (done === total) finish(false);
      else if (!finished) refill();
    };
    const onError = (e: unknown): void => {
      failed++;
      firstError ??= e instanceof Error ? e.message : String(e);
      onDone();
    };
    const refill = (): void => {
      while (sent - done < window && sent < total) {
        sent++;
        const kind = kinds[k]!;
        k = k + 1 === kinds.length ? 0 : k + 1;
        host.dispatch(SRC_PEER, kind, body).then(onDone, onError);
      }
    };
    refill();
  });
}

/**
 * Medians of where launches spent their time (PluginStatus.lastLaunch), plus
 * what the timed call took beyond the launch itself ("host": createHost and
 * start() around it), as a short note.
 */
export function launchSplit(launches: readonly { totalMs: number; processMs: number; describeMs: number; startMs: number; restoreMs: number; deliverMs: number }[], timedMs: readonly number[]): { note: string; ms: Record<string, number> } {
  if (launches.length === 0) return { note: "", ms: {} };
  const m = (f: (l: (typeof launches)[number]) => number): number => Math.round(median(launches.map(f)) * 10) / 10;
  const ms = {
    process: m((l) => l.processMs),
    describe: m((l) => l.describeMs),
    start: m((l) => l.startMs),
    restore: m((l) => l.restoreMs),
    deliver: m((l) => l.deliverMs),
    host: Math.round((median(timedMs) - median(launches.map((l) => l.totalMs))) * 10) / 10,
  };
  return { note: `p50 split: process ${ms.process}, Describe ${ms.describe}, Start ${ms.start}, Restore ${ms.restore}, Deliver ${ms.deliver}, host ${ms.host} ms`, ms };
}
