/**
 * Shared pieces of the fuzzers: deterministic input generation from a seed,
 * counters, /proc readings and the summary table.
 */
import { readFileSync } from "node:fs";
import fc from "fast-check";

/** Inputs are generated in batches of this many from one derived seed. */
export const BATCH = 256;

/** A 31-bit seed for batch `batch` of a run with seed `seed` (splitmix-style). */
export function batchSeed(seed, batch) {
  let x = (BigInt(seed >>> 0) << 32n) ^ BigInt(batch >>> 0);
  x = (x + 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & 0xffffffffffffffffn;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & 0xffffffffffffffffn;
  x ^= x >> 31n;
  return Number(x & 0x7fffffffn);
}

/**
 * Input `index` of a run: the same (arbitrary, seed, index) always gives the
 * same value, so a failure is replayed with `--seed S --only INDEX`.
 */
export class InputSource {
  constructor(arbitrary, seed) {
    this.arbitrary = arbitrary;
    this.seed = seed;
    this.batch = -1;
    this.values = [];
  }

  get(index) {
    const batch = Math.floor(index / BATCH);
    if (batch !== this.batch) {
      this.values = fc.sample(this.arbitrary, { seed: batchSeed(this.seed, batch), numRuns: BATCH });
      this.batch = batch;
    }
    return this.values[index % BATCH];
  }
}

/** Counts of named outcomes. */
export class Tally {
  constructor() {
    this.counts = new Map();
  }
  add(kind, n = 1) {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + n);
  }
  get(kind) {
    return this.counts.get(kind) ?? 0;
  }
  /** "a 12, b 3" sorted by count, the top `limit`, then "+N more". */
  format(limit = 12) {
    const entries = [...this.counts].sort((a, b) => b[1] - a[1]);
    const shown = entries.slice(0, limit).map(([k, v]) => `${k} ${v}`);
    if (entries.length > limit) shown.push(`+${entries.length - limit} more kinds`);
    return shown.join(", ");
  }
  toJSON() {
    return Object.fromEntries([...this.counts].sort((a, b) => b[1] - a[1]));
  }
}

/** Fields of /proc/<pid>/status in kB, or undefined once the process is gone. */
export function procStatus(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (key) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
      return m ? Number(m[1]) : undefined;
    };
    return { rssKb: kb("VmRSS"), hwmKb: kb("VmHWM") };
  } catch {
    return undefined;
  }
}

export const mb = (kb) => (kb === undefined ? "n/a" : `${(kb / 1024).toFixed(0)} MB`);

/**
 * Shared or exclusive use of one HTTP/2 session. A fuzzer request with a body
 * of BULK_BODY_BYTES or more takes the session alone: node:http2 stops reading
 * a socket while one of its own writes to it is pending, on both ends; a 16 MiB
 * body queued by the fuzzer while the plugin answered other calls on the same
 * connection (echo's acks carry a `pong:` copy of each payload) left both ends
 * writing and neither reading, and the connection stuck for good (16 "hangs"
 * after 40k-58k inputs). A plugwire host never does that (it keeps its bytes in
 * flight within 128 KiB, docs/guarantees.md "Flow control"); the fuzzer now
 * keeps the same rule for its big bodies.
 */
export class SessionGate {
  constructor() {
    this.active = 0;
    this.exclusive = false;
    this.exclusiveWaiting = 0;
    this.waiters = [];
  }

  /** Waits for the session; returns the function that gives it back. Exclusive users go first. */
  async enter(exclusive) {
    if (exclusive) this.exclusiveWaiting++;
    while (this.exclusive || (exclusive ? this.active > 0 : this.exclusiveWaiting > 0)) await new Promise((resolve) => this.waiters.push(resolve));
    if (exclusive) {
      this.exclusiveWaiting--;
      this.exclusive = true;
    } else {
      this.active++;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (exclusive) this.exclusive = false;
      else this.active--;
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    };
  }
}

/** A request body of this many bytes or more takes its session alone (SessionGate). */
export const BULK_BODY_BYTES = 1024 * 1024;

/** Resolves after `ms`. */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Formats rows as a plain-text table. */
export function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** Runs `worker(index)` for indexes [0, count) with `concurrency` at a time; stops early when `shouldStop()` says so. */
export async function pool(count, concurrency, worker, shouldStop = () => false) {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count && !shouldStop()) {
      const index = next++;
      await worker(index);
    }
  });
  await Promise.all(lanes);
  return next;
}

/** The useful lines of a fast-check failure: where (seed, path), the counterexample and the error, each cut short. */
export function propertyFailure(e) {
  const text = String(e?.message ?? e);
  const head = text.split("\n").slice(0, 2).join("\n");
  const example = /Counterexample: (.*)/.exec(text)?.[1] ?? "";
  const error = e?.cause instanceof Error ? e.cause.message : (/Got error: ([\s\S]*?)(\n\n|$)/.exec(text)?.[1] ?? "");
  const cut = (s, n) => (s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s);
  return `${head}\ncounterexample: ${cut(example, 1200)}\nerror: ${cut(error, 1500)}`;
}
