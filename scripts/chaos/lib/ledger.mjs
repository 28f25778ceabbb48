// Bookkeeping of every dispatch a scenario makes to one payload kind: how it
// settled, which peer sent it (for stateful counters), and how many effects
// the control port saw for it (for echo-like plugins). From that it judges a
// plugin's final state and its effects.

const PENDING = 1;
const ACKED = 2;
/** Rejected, and known not to be applied: a dead letter or a full queue. */
const NOT_APPLIED = 3;
/** Rejected with an unknown outcome (the host or plugin stopped with it in flight). */
const UNKNOWN = 4;

/**
 * Rejections whose payload the plugin's state never includes: a full queue, a
 * dead letter, and a payload the stopping host never sent.
 */
function notApplied(error) {
  const message = error?.message ?? "";
  return (
    error?.code === "queue_full" ||
    (error?.code === "handler_failed" && /dead letters/.test(message)) ||
    (error?.code === "plugin_unavailable" && /was not (delivered|accepted)/.test(message))
  );
}

class Growable {
  constructor() {
    this.bytes = new Uint8Array(1024);
  }
  get(i) {
    return i < this.bytes.length ? this.bytes[i] : 0;
  }
  set(i, v) {
    if (i >= this.bytes.length) {
      let n = this.bytes.length;
      while (n <= i) n *= 2;
      const next = new Uint8Array(n);
      next.set(this.bytes);
      this.bytes = next;
    }
    this.bytes[i] = v;
  }
}

export class Ledger {
  /**
   * @param {object} o
   * @param {string} o.kind        payload kind
   * @param {string} o.plugin      the plugin that owns the kind
   * @param {string} [o.tag]       effect tag: the body is `${tag}-${id}` and the plugin must send `pong:${tag}-${id}` once per acked payload
   * @param {boolean} [o.perPeer]  count settled payloads per peer, for checking a counter's state
   * @param {Uint8Array} [o.body]  the body of every payload (when there is no tag)
   */
  constructor({ kind, plugin, tag, perPeer = false, body = new Uint8Array([1]) }) {
    this.kind = kind;
    this.plugin = plugin;
    this.tag = tag;
    this.perPeer = perPeer;
    this.body = body;
    this.dispatched = 0;
    this.acked = 0;
    this.pending = 0;
    this.rejected = new Map(); // code -> count
    this.status = new Growable();
    this.effects = new Growable();
    this.foreignEffects = 0;
    /** hex peer -> { acked, pending, unknown } */
    this.peers = new Map();
    /** peers forgotten (host.peerForgotten), with their acked count wiped. */
    this.forgotten = new Set();
    this.lastDispatchAt = 0;
    this.lastSettleAt = 0;
    this.waiters = new Set();
    this.encoder = new TextEncoder();
  }

  peer(hexId) {
    let p = this.peers.get(hexId);
    if (!p) this.peers.set(hexId, (p = { acked: 0, pending: 0, unknown: 0 }));
    return p;
  }

  /** Dispatches one payload from `src` (hex `srcHex`) through `host`. */
  dispatch(host, src, srcHex) {
    const id = this.dispatched++;
    const body = this.tag ? this.encoder.encode(`${this.tag}-${id}`) : this.body;
    this.pending++;
    this.status.set(id, PENDING);
    this.lastDispatchAt = Date.now();
    const p = this.perPeer ? this.peer(srcHex) : undefined;
    if (p) p.pending++;
    const settled = (state) => {
      this.pending--;
      this.status.set(id, state);
      this.lastSettleAt = Date.now();
      if (p) {
        p.pending--;
        if (state === ACKED) p.acked++;
        else if (state === UNKNOWN) p.unknown++;
      }
      for (const w of this.waiters) w();
    };
    host.dispatch(src, this.kind, body).then(
      () => {
        this.acked++;
        settled(ACKED);
      },
      (e) => {
        const code = e?.code ?? "error";
        this.rejected.set(code, (this.rejected.get(code) ?? 0) + 1);
        settled(notApplied(e) ? NOT_APPLIED : UNKNOWN);
      },
    );
    return id;
  }

  /** Whether dispatch `id` has not settled yet. */
  isPending(id) {
    return this.status.get(id) === PENDING;
  }

  /** Called for every `pong:<tag>-<id>` frame the control port receives. */
  effect(id) {
    if (!Number.isInteger(id) || id < 0 || id >= this.dispatched) {
      this.foreignEffects++;
      return;
    }
    this.effects.set(id, Math.min(255, this.effects.get(id) + 1));
  }

  /**
   * The peer was forgotten: from now on the plugin's state must not hold its
   * earlier count. Call with none of its payloads pending.
   */
  forget(hexId) {
    const p = this.peers.get(hexId);
    if (p && p.pending > 0) throw new Error(`chaos: forgetting peer ${hexId.slice(0, 8)} with ${p.pending} payloads pending`);
    this.peers.delete(hexId);
    this.forgotten.add(hexId);
  }

  /** Resolves when nothing is pending, or when `deadline` (epoch ms) passes. */
  async drained(deadline) {
    while (this.pending > 0 && Date.now() < deadline) {
      await new Promise((resolve) => {
        const w = () => {
          if (this.pending === 0) done();
        };
        const timer = setTimeout(() => done(), Math.min(250, Math.max(1, deadline - Date.now())));
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve();
        };
        this.waiters.add(w);
      });
    }
    return this.pending === 0;
  }

  rejectedCount() {
    let n = 0;
    for (const v of this.rejected.values()) n += v;
    return n;
  }

  /**
   * Effects check for a tagged ledger: every acked payload's effect exactly
   * once, none for a payload known not to be applied, at most one otherwise.
   */
  checkEffects() {
    if (!this.tag) return { lost: 0, dup: 0, details: [] };
    let lost = 0;
    let dup = 0;
    let deadLetterEffects = 0;
    for (let i = 0; i < this.dispatched; i++) {
      const seen = this.effects.get(i);
      const state = this.status.get(i);
      if (state === ACKED && seen === 0) lost++;
      if (seen > 1) dup += seen - 1;
      if (state === NOT_APPLIED && seen > 0) deadLetterEffects += Math.min(seen, 1);
    }
    dup += deadLetterEffects + this.foreignEffects;
    const details = [];
    if (lost) details.push(`${this.kind}: ${lost} acked payloads whose effect never reached the control port`);
    if (dup) details.push(`${this.kind}: ${dup} duplicated or unexpected effects`);
    if (deadLetterEffects) details.push(`${this.kind}: ${deadLetterEffects} effects performed for rejected payloads`);
    if (this.foreignEffects) details.push(`${this.kind}: ${this.foreignEffects} effects for no payload`);
    return { lost, dup, details };
  }

  /**
   * Compares a counter's state (hex peer -> count) with what was acked.
   * exact is true when every peer's count equals its acked payloads and no
   * forgotten peer is left; null when only unsettled payloads could explain
   * the difference; false otherwise. lost / dup count payloads missing from /
   * in excess of the state, beyond what unsettled payloads can explain.
   */
  checkState(counts) {
    let lost = 0;
    let dup = 0;
    let within = true;
    let exact = true;
    const diffs = [];
    const keys = new Set([...Object.keys(counts), ...this.peers.keys()]);
    for (const k of keys) {
      const p = this.peers.get(k) ?? { acked: 0, pending: 0, unknown: 0 };
      const have = counts[k] ?? 0;
      const lo = p.acked;
      const hi = p.acked + p.pending + p.unknown;
      if (have !== lo) {
        exact = false;
        if (this.forgotten.has(k) && lo === 0) diffs.push(`forgotten peer ${k.slice(0, 8)} is back with count ${have}`);
        else diffs.push(`${k.slice(0, 8)}: state ${have} vs acked ${lo}${hi > lo ? ` (+${hi - lo} unsettled)` : ""}`);
      }
      if (have < lo) {
        lost += lo - have;
        within = false;
      } else if (have > hi) {
        // A forgotten peer's wiped count coming back is a wrong state, not a duplicate.
        if (!this.forgotten.has(k)) dup += have - hi;
        within = false;
      }
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    return {
      exact: exact ? true : within ? null : false,
      lost,
      dup,
      summary: exact ? `${total} hits over ${Object.keys(counts).length} peers` : diffs.slice(0, 4).join("; ") + (diffs.length > 4 ? `; ${diffs.length - 4} more` : ""),
    };
  }
}

/**
 * Keeps at most `maxOutstanding` dispatches of `ledger` pending until
 * `shouldStop()` says so (checked at least every 250 ms) or `maxCount`
 * payloads were dispatched. `next()` names the sender of the next payload:
 * { src, hex }.
 */
export async function runLoad(host, ledger, { maxOutstanding, shouldStop, maxCount = Infinity, next }) {
  let sent = 0;
  while (!shouldStop() && sent < maxCount) {
    if (ledger.pending >= maxOutstanding) {
      await new Promise((resolve) => {
        const w = () => {
          if (ledger.pending < maxOutstanding) done();
        };
        const timer = setTimeout(() => done(), 250);
        const done = () => {
          clearTimeout(timer);
          ledger.waiters.delete(w);
          resolve();
        };
        ledger.waiters.add(w);
      });
      continue;
    }
    const { src, hex } = next();
    ledger.dispatch(host, src, hex);
    sent++;
    // Yield now and then so acks, kills and timers get their turn.
    if (sent % 256 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  return sent;
}
