/**
 * Per-plugin delivery: sequence numbers, batching onto the Deliver stream, a
 * bounded in-flight window, cumulative acks with their outcomes and effects,
 * redelivery after a crash, dead letters for poison pills, and the replay
 * buffer of a stateful plugin. It outlives every launch of the plugin.
 */
import {
  PlugwireError,
  type Payload,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
} from "@plugwire/proto";
import type { OverflowPolicy } from "../config.js";
import { Deque } from "./deque.js";

export interface Entry {
  /** Assigned when the payload is first written to a plugin; 0 until then. */
  seq: number;
  readonly src: Uint8Array;
  readonly kind: string;
  readonly body: Uint8Array;
  readonly enqueuedAt: number;
  /** Crashes of the plugin while this payload was at the head of the in-flight window. */
  crashes: number;
  /** Launch this entry was last sent to; 0 when never sent. */
  sentTo: number;
  settle?: { resolve: () => void; reject: (e: PlugwireError) => void };
}

/** A payload parked because it crashed its plugin repeatedly. */
export interface DeadLetter {
  seq: number;
  kind: string;
  src: Uint8Array;
  body: Uint8Array;
  sizeBytes: number;
  parkedAt: Date;
  reason: string;
}

export interface DeliveryOptions {
  plugin: string;
  maxInFlight: number;
  maxQueued: number;
  overflow: OverflowPolicy;
  maxBatch: number;
  /** Dead letters kept, at most; the oldest go first. */
  maxDeadLetters: number;
  /** Performs a payload's effects; called once per payload, at its first ack. */
  performEffects: (entry: Entry, effects: Effect[]) => void;
  onHandlerError: (entry: Entry, message: string) => void;
  /** Once per ack message: how many payloads it acked, and when the oldest of them was dispatched. */
  onAcked?: (count: number, oldestEnqueuedAt: number) => void;
  onOverflow?: (policy: OverflowPolicy, dropped: Entry | undefined) => void;
  onDeadLetter?: (letter: DeadLetter) => void;
  /** The replay buffer passed its bounds; a snapshot would let it be trimmed. */
  onReplayPressure?: () => void;
  maxReplayPayloads: number;
  maxReplayBytes: number;
  /** Once a full batch is in flight, new payloads wait up to this long for an ack to carry them (0: next tick). */
  coalesceMs: number;
}

export interface DeliveryStream {
  write(request: DeliverRequest): boolean;
}

export class DeliveryChannel {
  private nextSeq = 1;
  /** Highest cumulative ack received, ever. */
  private ackedThrough = 0;
  /** Un-acked payloads in seq order: the first `sent` were written to the current stream. */
  private readonly unacked = new Deque<Entry>();
  private sent = 0;
  /** How many of `unacked` have a seq (were sent to some launch); always a prefix. */
  private numbered = 0;
  /** Acked payloads kept for replay after the latest durable snapshot. */
  private readonly replay = new Deque<Entry>();
  private replayBytes = 0;
  /** Highest applied_seq the replay buffer was trimmed to: older snapshots cannot be replayed to the present. */
  trimmedThrough = 0;
  /** Answers (settled or pending) of SendRouted calls, by payload seq and call index. */
  private readonly routedAnswers = new Map<number, Array<Promise<boolean>>>();
  private readonly deadLetters: DeadLetter[] = [];
  private readonly ackWaiters = new Set<{ seq: number; done: () => void }>();
  private stream: DeliveryStream | undefined;
  private launch = 0;
  /** Highest seq replayed to the current launch (0 when none), and the highest seq it acked. */
  private launchReplayThrough = 0;
  private launchAckedThrough = 0;
  private flushScheduled = false;
  /** Time of the last ack, or of the first send after a quiet period, for hang detection. */
  lastProgressAt = Date.now();
  /** Keep acked payloads until a snapshot covers them (stateful plugins). */
  keepReplay = false;
  /** Payloads accepted and acked, ever; read by the metrics when scraped. */
  dispatchedTotal = 0;
  ackedTotal = 0;

  constructor(private readonly options: DeliveryOptions) {}

  /** Payloads sent to the plugin and not yet acked. */
  get inFlight(): number {
    return this.sent;
  }

  /** Payloads waiting to be sent, redeliveries included. */
  get queued(): number {
    return this.unacked.length - this.sent;
  }

  /** New payloads never sent to any launch: what maxQueued bounds. */
  private get waiting(): number {
    return this.unacked.length - this.numbered;
  }

  get replayCount(): number {
    return this.replay.length;
  }

  get replayBufferBytes(): number {
    return this.replayBytes;
  }

  get lastAcked(): number {
    return this.ackedThrough;
  }

  /** Resolves once every payload up to `seq` is acked, or after `timeoutMs` with false. */
  waitForAck(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.ackedThrough >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ackWaiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = { seq, done: () => { clearTimeout(timer); resolve(true); } };
      this.ackWaiters.add(waiter);
    });
  }

  /** Queues a payload; resolves when the plugin acks it, rejects on a handler error. */
  dispatch(src: Uint8Array, kind: string, body: Uint8Array): Promise<void> {
    // Payloads awaiting redelivery are not counted: they are never dropped.
    if (this.waiting >= this.options.maxQueued) {
      if (this.options.overflow === "reject") {
        this.options.onOverflow?.("reject", undefined);
        return Promise.reject(
          new PlugwireError(
            "queue_full",
            `plugin '${this.options.plugin}' has ${this.waiting} payloads waiting (maxQueued ${this.options.maxQueued}); ` +
              `payload of kind '${kind}' was rejected. Retry later, raise maxQueued, or use overflow: drop-oldest.`,
            { plugin: this.options.plugin },
          ),
        );
      }
      const dropped = this.unacked.removeAt(this.numbered);
      if (dropped) {
        this.options.onOverflow?.("drop-oldest", dropped);
        dropped.settle?.reject(
          new PlugwireError(
            "queue_full",
            `plugin '${this.options.plugin}' dropped a queued payload of kind '${dropped.kind}' because its queue was full (overflow: drop-oldest)`,
            { plugin: this.options.plugin },
          ),
        );
      }
    }
    this.dispatchedTotal++;
    return new Promise<void>((resolve, reject) => {
      const entry: Entry = {
        seq: 0,
        src,
        kind,
        body,
        enqueuedAt: performance.now(),
        crashes: 0,
        sentTo: 0,
        settle: { resolve, reject },
      };
      this.unacked.push(entry);
      this.scheduleFlush();
    });
  }

  /**
   * Continues the seq space of a stored snapshot, so that a restarted host
   * numbers new payloads after what the restored state already includes.
   * Call before the first attach.
   */
  resumeAfter(appliedSeq: number): void {
    if (appliedSeq >= this.nextSeq) {
      this.nextSeq = appliedSeq + 1;
      this.ackedThrough = Math.max(this.ackedThrough, appliedSeq);
    }
  }

  /**
   * Connects a new launch's Deliver stream. Replays acked payloads after
   * `replayAfter` (stateful restore), then re-sends every un-acked payload.
   */
  attach(stream: DeliveryStream, launch: number, replayAfter: number | undefined): { replayed: number; redelivered: number } {
    this.stream = stream;
    this.launch = launch;
    this.sent = 0;
    this.lastProgressAt = Date.now();
    this.launchReplayThrough = 0;
    this.launchAckedThrough = 0;
    let replayed = 0;
    if (replayAfter !== undefined) {
      let batch: Entry[] = [];
      for (const entry of this.replay) {
        if (entry.seq <= replayAfter) continue;
        batch.push(entry);
        replayed++;
        this.launchReplayThrough = entry.seq;
        if (batch.length >= this.options.maxBatch) {
          this.write(batch, true);
          batch = [];
        }
      }
      if (batch.length > 0) this.write(batch, true);
    }
    let redelivered = 0;
    for (const entry of this.unacked) if (entry.sentTo > 0) redelivered++;
    this.flush();
    return { replayed, redelivered };
  }

  /**
   * The launch is gone. When it crashed, the payload at the head of the
   * window is suspected, if the launch had got to it (it acked every replayed
   * payload); after two crashes it is parked as a dead letter.
   */
  detach(crashed: boolean): DeadLetter | undefined {
    this.stream = undefined;
    this.sent = 0;
    if (!crashed) return undefined;
    const head = this.unacked.at(0);
    if (!head || head.sentTo !== this.launch) return undefined;
    // Still replaying: the crash cannot be the head's doing.
    if (this.launchAckedThrough < this.launchReplayThrough) return undefined;
    head.crashes++;
    if (head.crashes < 2) return undefined;
    this.unacked.shift();
    this.numbered--;
    const letter: DeadLetter = {
      seq: head.seq,
      kind: head.kind,
      src: head.src,
      body: head.body,
      sizeBytes: head.body.byteLength,
      parkedAt: new Date(),
      reason: `in flight during ${head.crashes} consecutive crashes of plugin '${this.options.plugin}'`,
    };
    this.deadLetters.push(letter);
    if (this.deadLetters.length > this.options.maxDeadLetters) this.deadLetters.shift();
    // Nothing later than a dead letter may be acked before it, so the
    // cumulative ack simply moves past it.
    this.ackedThrough = Math.max(this.ackedThrough, head.seq);
    head.settle?.reject(
      new PlugwireError(
        "handler_failed",
        `payload seq ${head.seq} (kind '${head.kind}') crashed plugin '${this.options.plugin}' twice and was moved to its dead letters; ` +
          `inspect it with listDeadLetters('${this.options.plugin}')`,
        { plugin: this.options.plugin },
      ),
    );
    this.options.onDeadLetter?.(letter);
    return letter;
  }

  /** Handles an ack from the plugin. */
  onAck(response: DeliverResponse): void {
    const through = Number(response.ackedThrough);
    this.launchAckedThrough = Math.max(this.launchAckedThrough, through);
    // Most acks carry no outcome: build the lookup only when there are some.
    const outcomes =
      response.outcomes.length === 0 ? undefined : new Map(response.outcomes.map((o) => [Number(o.seq), o] as const));
    this.lastProgressAt = Date.now();
    let ackedCount = 0;
    const oldestEnqueuedAt = this.sent > 0 ? this.unacked.at(0)!.enqueuedAt : 0;
    // Only the sent prefix of `unacked` can be acked; the rest has no seq yet.
    while (this.sent > 0 && this.unacked.at(0)!.seq <= through) {
      const entry = this.unacked.shift()!;
      this.sent--;
      this.numbered--;
      const outcome = outcomes?.get(entry.seq);
      if (outcome && outcome.effects.length > 0) this.options.performEffects(entry, outcome.effects);
      if (outcome?.error) {
        this.options.onHandlerError(entry, outcome.error.message);
        entry.settle?.reject(
          new PlugwireError(
            "handler_failed",
            `plugin '${this.options.plugin}' failed to handle payload seq ${entry.seq} (kind '${entry.kind}'): ${outcome.error.message}`,
            { plugin: this.options.plugin },
          ),
        );
      } else {
        entry.settle?.resolve();
      }
      entry.settle = undefined;
      ackedCount++;
      if (this.keepReplay) {
        this.replay.push(entry);
        this.replayBytes += entry.body.byteLength;
      } else {
        this.routedAnswers.delete(entry.seq);
      }
    }
    if (ackedCount > 0) {
      this.ackedTotal += ackedCount;
      this.options.onAcked?.(ackedCount, oldestEnqueuedAt);
    }
    // Acks of replayed payloads (seq <= ackedThrough) carry effects that were
    // already performed: they are ignored here, which is what makes effects
    // exactly-once across replay.
    this.ackedThrough = Math.max(this.ackedThrough, through);
    if (this.keepReplay && (this.replay.length > this.options.maxReplayPayloads || this.replayBytes > this.options.maxReplayBytes)) {
      this.options.onReplayPressure?.();
    }
    for (const waiter of this.ackWaiters) {
      if (waiter.seq <= this.ackedThrough) {
        this.ackWaiters.delete(waiter);
        waiter.done();
      }
    }
    this.flush();
  }

  /** Forgets replay entries a durable snapshot now covers. */
  trimReplay(appliedSeq: number): void {
    this.trimmedThrough = Math.max(this.trimmedThrough, appliedSeq);
    while (this.replay.length > 0 && this.replay.at(0)!.seq <= appliedSeq) {
      const entry = this.replay.shift()!;
      this.replayBytes -= entry.body.byteLength;
      this.routedAnswers.delete(entry.seq);
    }
  }

  /** Answers a SendRouted from payload `seq`'s handler at most once per (seq, index). */
  sendRoutedOnce(seq: number, index: number, send: () => Promise<boolean>): Promise<boolean> {
    let answers = this.routedAnswers.get(seq);
    const known = answers?.[index];
    // A call still pending counts too: a relaunch that redelivers the payload
    // while the crashed launch's send is in progress must not send again.
    if (known !== undefined) return known;
    if (answers === undefined) this.routedAnswers.set(seq, (answers = []));
    const routed = send();
    answers[index] = routed;
    // A failed send is not remembered, so a retry sends again.
    routed.catch(() => {
      if (answers[index] === routed) delete answers[index];
    });
    return routed;
  }

  listDeadLetters(): readonly DeadLetter[] {
    return this.deadLetters;
  }

  /** Takes a dead letter out of the list, by seq, for replay as a new payload. */
  takeDeadLetter(seq: number): DeadLetter | undefined {
    const index = this.deadLetters.findIndex((d) => d.seq === seq);
    return index === -1 ? undefined : this.deadLetters.splice(index, 1)[0];
  }

  /** Rejects everything pending; used when the host stops. */
  failAll(error: (entry: Entry) => PlugwireError): void {
    for (const entry of this.unacked.clear()) entry.settle?.reject(error(entry));
    this.sent = 0;
    this.numbered = 0;
  }

  /** Rejects the payloads never sent to any launch; the rest stay. */
  failUnsent(error: (entry: Entry) => PlugwireError): number {
    let failed = 0;
    while (this.unacked.length > this.numbered) {
      const entry = this.unacked.removeAt(this.numbered)!;
      entry.settle?.reject(error(entry));
      failed++;
    }
    return failed;
  }

  /** Resolves true once every payload sent to the current launch is acked, false after `timeoutMs`. */
  drainInFlight(timeoutMs: number): Promise<boolean> {
    if (this.sent === 0) return Promise.resolve(true);
    return this.waitForAck(this.unacked.at(this.sent - 1)!.seq, timeoutMs);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.stream === undefined) return;
    if (this.queued >= this.options.maxBatch) {
      this.flush();
      return;
    }
    // Adaptive micro-batching: while less than a batch is in flight, send on
    // the next turn of the event loop (lowest latency, and the plugin never
    // runs dry). Once the plugin has a full batch to chew on, let new payloads
    // gather: its next ack flushes them as one batch, and a short timer is the
    // backstop should that ack be slow.
    this.flushScheduled = true;
    const run = (): void => {
      this.flushScheduled = false;
      this.flush();
    };
    if (this.sent < this.options.maxBatch || this.options.coalesceMs === 0) setImmediate(run);
    else setTimeout(run, this.options.coalesceMs);
  }

  private flush(): void {
    if (this.stream === undefined) return;
    if (this.sent === 0 && this.queued > 0) this.lastProgressAt = Date.now();
    while (this.sent < this.unacked.length && this.sent < this.options.maxInFlight) {
      const batch: Entry[] = [];
      while (batch.length < this.options.maxBatch && this.sent < this.unacked.length && this.sent < this.options.maxInFlight) {
        batch.push(this.unacked.at(this.sent)!);
        this.sent++;
      }
      this.write(batch, false);
    }
  }

  private write(batch: Entry[], replay: boolean): void {
    const payloads = batch.map((e) => {
      const redelivered = replay || e.sentTo > 0;
      if (e.seq === 0) {
        e.seq = this.nextSeq++;
        this.numbered++;
      }
      if (!replay) e.sentTo = this.launch;
      // Complete message literals: no reflective create() on the hot path.
      const payload: Payload = { $typeName: "plugwire.v1.Payload", seq: BigInt(e.seq), src: e.src, kind: e.kind, body: e.body, redelivered };
      return payload;
    });
    const request: DeliverRequest = { $typeName: "plugwire.v1.DeliverRequest", payloads };
    this.stream!.write(request);
  }
}
