/**
 * Per-plugin delivery: sequence numbers, batching onto the Deliver stream, a
 * bounded in-flight window (in items and in bytes), cumulative acks with
 * their outcomes and effects, redelivery after a crash, dead letters for
 * poison pills, and the replay buffer of a stateful plugin. It outlives every
 * launch of the plugin.
 *
 * Items are payloads or forgotten peers; both take a seq from one space, are
 * acked, kept for replay and redelivered alike.
 */
import {
  MAX_EFFECTS_PER_ACK,
  MAX_MESSAGE_BYTES,
  PlugwireError,
  effectCount,
  encodeRawDeliveryItems,
  preEncodedDeliverRequest,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
  truncateText,
} from "@plugwire/proto";
import type { OverflowPolicy } from "../config.js";
import { Deque } from "./deque.js";

/** Wire overhead of one item beyond its src, kind and body, generously counted. */
const ITEM_OVERHEAD_BYTES = 32;
/**
 * What one Deliver message costs in a unix socket's send buffer beyond its
 * items: the kernel charges each write its buffer overhead (about 700 bytes),
 * and HTTP/2 and gRPC add their frame headers.
 */
export const BATCH_OVERHEAD_BYTES = 1024;

/** Weight of a new sample in the smoothed arrival gap and ack round trip. */
const RATE_SMOOTHING = 1 / 16;
/**
 * New items wait for the next ack (or coalesceMs) while something is in
 * flight and at least this many are expected to arrive during one ack round
 * trip: then a batch is worth waiting for.
 */
const COALESCE_MIN_ARRIVALS = 4;

/**
 * The most bytes (items plus per-message overhead) the host keeps in flight
 * to one plugin: what a unix socket's send buffer always holds (Linux's
 * default is 208 KiB, counted with per-write overhead).
 *
 * Why: Node's HTTP/2 stops reading a socket while one of its own writes to
 * it is pending. If the host had more in flight than the socket buffers
 * while the plugin (also Node) wrote more than they hold back (acks with
 * large effects, snapshot chunks), both would wait to write and neither
 * would read: a deadlock, with both processes idle. Within this bound the
 * host's writes always complete, so the host always reads, and the plugin's
 * writes always drain. (An adaptive window that went past it while the
 * plugin's replies looked small deadlocked in the delivery model as soon as
 * replies grew.) One item larger than this is sent alone into an empty
 * window, except while a snapshot streams back.
 */
export const SAFE_IN_FLIGHT_BYTES = 128 * 1024;

/** Effects one item's outcome may carry when the plugin's config does not say (host option maxEffectsPerItem). */
export const DEFAULT_MAX_EFFECTS_PER_ITEM = 4096;

/** The largest payload (src + kind + body) a Deliver message can carry. */
export const MAX_ITEM_BYTES = MAX_MESSAGE_BYTES - 1024;

export interface Entry {
  /** Assigned when the item is first written to a plugin; 0 until then. */
  seq: number;
  /** A forgotten peer (src is its node id) rather than a payload. */
  readonly forget: boolean;
  readonly src: Uint8Array;
  /** The payload kind; "" for a forget. */
  readonly kind: string;
  readonly body: Uint8Array;
  /** Bytes this item counts for in the in-flight and batch bounds. */
  readonly size: number;
  readonly enqueuedAt: number;
  /** Crashes of the plugin while this item was at the head of the in-flight window. */
  crashes: number;
  /** Launch this entry was last sent to; 0 when never sent. */
  sentTo: number;
  settle?: { resolve: () => void; reject: (e: PlugwireError) => void };
  /** Told each effect of this payload's handler (DispatchOptions.onEffect). */
  readonly onEffect?: (effect: PayloadEffect) => void;
}

/**
 * One effect of a payload's handler, as the host performs it: a send that
 * travelled with the payload's ack, or a SendRouted call the handler made
 * for the payload. Each is reported once, even when the payload is
 * redelivered or replayed after a crash.
 */
export type PayloadEffect =
  | {
      type: "sendDirect";
      peer: Uint8Array;
      frame: Uint8Array;
      /** True when it was handed to the application's control port. */
      performed: boolean;
      /** Why it was not, when `performed` is false. */
      droppedReason?: string;
    }
  | {
      type: "sendRouted";
      dst: Uint8Array;
      frame: Uint8Array;
      /** The control port's answer (a route existed); rejects when the send failed. */
      routed: Promise<boolean>;
    };

/** Options of one dispatch. */
export interface DispatchOptions {
  /**
   * Called with each effect of this payload's handler as the host performs it
   * (for tools such as `plugwire send`; nothing is recorded without it).
   * Sends carried by the ack are performed before the dispatch settles, and
   * SendRouted calls when the handler makes them, so by the time it settles
   * every effect of a handler that awaited its calls has been reported.
   */
  onEffect?: (effect: PayloadEffect) => void;
}

/** An item parked because it crashed its plugin repeatedly. */
export interface DeadLetter {
  seq: number;
  /** The payload kind, or "(peer forgotten)" for a forget. */
  kind: string;
  forget: boolean;
  src: Uint8Array;
  body: Uint8Array;
  sizeBytes: number;
  parkedAt: Date;
  reason: string;
}

const FORGET_KIND_LABEL = "(peer forgotten)";

export interface DeliveryOptions {
  plugin: string;
  /** Items sent but not yet acked, at most. */
  maxInFlight: number;
  /** Bytes of items sent but not yet acked, at most (one item is always allowed). */
  maxInFlightBytes: number;
  maxQueued: number;
  /** Bytes of new items waiting (never sent to any launch), at most; one item is always allowed. Unbounded when absent. */
  maxQueuedBytes?: number;
  overflow: OverflowPolicy;
  /** Items per Deliver message, at most. */
  maxBatch: number;
  /** Bytes per Deliver message, at most (one item is always allowed). */
  maxBatchBytes: number;
  /** Dead letters kept, at most; the oldest go first. */
  maxDeadLetters: number;
  /** Performs an item's effects; called once per item, at its first ack, within the effect limits. */
  performEffects: (entry: Entry, effects: Effect[]) => void;
  /** Effects one item's outcome may carry, at most; more fail the item with too_many_effects and none is performed. */
  maxEffectsPerItem?: number;
  /** An item's effects were over a limit: none was performed, and its dispatch rejects with `error` (after this returns). */
  onEffectsRefused?: (entry: Entry, count: number, error: PlugwireError) => void;
  /**
   * An ack, or part of one, was ignored: `backwards` (its acked_through did
   * not advance on this stream; its outcomes go with it) or `stray-outcomes`
   * (outcomes for seqs this ack does not newly cover).
   */
  onIgnoredAck?: (what: "backwards" | "stray-outcomes", detail: { claimed: number; ackedThrough: number; outcomes: number; firstSeq?: number }) => void;
  onHandlerError: (entry: Entry, message: string) => void;
  /** Once per ack message: how many items it acked, and when the oldest of them was dispatched. */
  onAcked?: (count: number, oldestEnqueuedAt: number) => void;
  onOverflow?: (policy: OverflowPolicy, dropped: Entry | undefined) => void;
  onDeadLetter?: (letter: DeadLetter) => void;
  /** An ack claimed `claimed`, past the highest seq sent on the current stream (`sent`); it counts only through `sent`. */
  onAckBeyondSent?: (claimed: number, sent: number) => void;
  /** The replay buffer passed its bounds; a snapshot would let it be trimmed. */
  onReplayPressure?: () => void;
  /** The replay buffer reached twice its bounds: new items wait until a snapshot trims it. */
  onReplayFull?: (full: boolean) => void;
  maxReplayPayloads: number;
  maxReplayBytes: number;
  /** Once a full batch is in flight, new items wait up to this long for an ack to carry them (0: next tick). */
  coalesceMs: number;
}

export interface DeliveryStream {
  write(request: DeliverRequest): boolean;
}

/** What `attach` found to send to a new launch. */
export interface AttachResult {
  /** Acked items after the restored snapshot, to be replayed. */
  replayed: number;
  /** Un-acked items an earlier launch had, to be redelivered one at a time. */
  redelivered: number;
}

/** A plugin-supplied message, cut to MAX_ERROR_TEXT_BYTES (4 KiB) with a note of its original size (one rule for every plugin text: proto/src/limits.ts). */
function clip(message: string): string {
  return truncateText(message);
}

function entrySize(src: Uint8Array, kind: string, body: Uint8Array): number {
  return src.byteLength + Buffer.byteLength(kind) + body.byteLength + ITEM_OVERHEAD_BYTES;
}

/**
 * The settle of every entry of one dispatchMany call: counts them down and
 * settles the call's one promise when the last is acked or failed.
 */
class SettleGroup {
  private remaining: number;
  private failed = 0;
  private first: PlugwireError | undefined;

  constructor(
    private readonly count: number,
    private readonly done: () => void,
    private readonly fail: (e: PlugwireError) => void,
    private readonly plugin: string,
    private readonly kind: string,
  ) {
    this.remaining = count;
  }

  readonly resolve = (): void => {
    if (--this.remaining === 0) this.settle();
  };

  readonly reject = (e: PlugwireError): void => {
    this.failed++;
    this.first ??= e;
    if (--this.remaining === 0) this.settle();
  };

  private settle(): void {
    const first = this.first;
    if (first === undefined) {
      this.done();
      return;
    }
    this.fail(
      this.count === 1
        ? first
        : new PlugwireError(
            first.code,
            `${this.failed} of ${this.count} payloads of kind '${this.kind}' for plugin '${this.plugin}' failed (the others were acked); the first: ${first.message}`,
            { plugin: first.plugin ?? this.plugin, detail: first.detail, cause: first },
          ),
    );
  }
}

/** Redelivered flags of the batch being written (write() is synchronous), reused. */
let redeliveredFlags = new Uint8Array(256);

export class DeliveryChannel {
  private nextSeq = 1;
  /** Highest cumulative ack received, ever. */
  private ackedThrough = 0;
  /** Un-acked items in seq order: the first `sent` were written to the current stream. */
  private readonly unacked = new Deque<Entry>();
  private sent = 0;
  /** How many of `unacked` have a seq (were sent to some launch); always a prefix. */
  private numbered = 0;
  /** Bytes (Entry.size) of the items of `unacked` that have no seq yet: what maxQueuedBytes bounds. */
  private waitingBytes = 0;
  /** Acked items kept for replay after the latest durable snapshot. */
  private readonly replay = new Deque<Entry>();
  private replayBytes = 0;
  /** Highest applied_seq the replay buffer was trimmed to: older snapshots cannot be replayed to the present. */
  trimmedThrough = 0;
  /** The current launch's replay: what is left to send, and what was sent and not yet acked. */
  private replayQueue: Entry[] = [];
  private replayNext = 0;
  private readonly replayInFlight = new Deque<Entry>();
  /** Messages written to the current launch and not yet fully acked: last seq, and bytes with overhead. */
  private readonly batches = new Deque<{ through: number; bytes: number; at: number }>();
  /** Bytes of messages written to the current launch and not yet fully acked (see maxInFlightBytes). */
  private inFlightBytes = 0;
  /**
   * Items up to this seq were in flight when a launch crashed. They are
   * redelivered one at a time, each only once the one before it is acked,
   * so a second crash names the item that caused it exactly.
   */
  private suspectThrough = 0;
  /** Answers (settled or pending) of SendRouted calls, by item seq and call index. */
  private readonly routedAnswers = new Map<number, Array<Promise<boolean>>>();
  private readonly deadLetters: DeadLetter[] = [];
  /** Seqs parked as dead letters, in order, with a running count (for snapshots taken meanwhile). */
  private readonly parkedSeqs: number[] = [];
  /** Dead letters parked, ever. */
  deadLettersTotal = 0;
  private readonly ackWaiters = new Set<{ seq: number; done: (acked: boolean) => void }>();
  private stream: DeliveryStream | undefined;
  private launch = 0;
  /** Highest seq replayed to the current launch (0 when none), and the highest seq it acked. */
  private launchReplayThrough = 0;
  private launchAckedThrough = 0;
  /** Highest seq written to the current launch. */
  private launchSentThrough = 0;
  private flushScheduled = false;
  /** Smoothed time between new items, and from writing a message to its ack, in ms (see scheduleFlush). */
  private arrivalGapMs = 1;
  private lastArrivalAt = 0;
  private ackRttMs = 1;
  private replayIsFull = false;
  private trimHolds = 0;
  private deferredTrim = 0;
  /** While a snapshot streams back from the plugin, the window stays within SAFE_IN_FLIGHT_BYTES. */
  private snapshotting = 0;
  private readonly safeWaiters = new Set<() => void>();
  /** Time of the last ack, or of the first send after a quiet period, for hang detection. */
  lastProgressAt = Date.now();
  /** Keep acked items until a snapshot covers them (stateful plugins). */
  keepReplay = false;
  /** Items accepted and acked, ever; read by the metrics when scraped. */
  dispatchedTotal = 0;
  ackedTotal = 0;

  constructor(private readonly options: DeliveryOptions) {}

  /** Items sent to the current launch and not yet acked, replayed ones included. */
  get inFlight(): number {
    return this.sent + this.replayInFlight.length;
  }

  /** Items waiting to be sent, redeliveries and replays included. */
  get queued(): number {
    return this.unacked.length - this.sent + (this.replayQueue.length - this.replayNext);
  }

  /** New items never sent to any launch: what maxQueued bounds. */
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

  /** Highest seq ever given to an item; a snapshot can never cover more. */
  get highestSeq(): number {
    return this.nextSeq - 1;
  }

  /** True while the replay buffer is at its hard bound and new items wait for a snapshot. */
  get replayFull(): boolean {
    return this.replayIsFull;
  }

  /** The item a hang detector would name: the oldest one in flight. */
  oldestInFlight(): Entry | undefined {
    return this.replayInFlight.at(0) ?? (this.sent > 0 ? this.unacked.at(0) : undefined);
  }

  /** Resolves once every item up to `seq` is acked, or after `timeoutMs` with false. */
  waitForAck(seq: number, timeoutMs: number): Promise<boolean> {
    if (this.ackedThrough >= seq) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ackWaiters.delete(waiter);
        resolve(false);
      }, timeoutMs);
      timer.unref();
      const waiter = {
        seq,
        done: (acked: boolean) => {
          clearTimeout(timer);
          resolve(acked);
        },
      };
      this.ackWaiters.add(waiter);
    });
  }

  /** Queues a payload; resolves when the plugin acks it, rejects on a handler error. */
  dispatch(src: Uint8Array, kind: string, body: Uint8Array, options?: DispatchOptions): Promise<void> {
    const size = entrySize(src, kind, body);
    if (size - ITEM_OVERHEAD_BYTES > MAX_ITEM_BYTES) return Promise.reject(this.tooLarge(kind, size));
    return this.enqueue(false, src, kind, body, size, options?.onEffect);
  }

  /**
   * Queues many payloads of one kind from one source, in order, as one
   * call: one promise for all of them, settled once every one is acked (or
   * failed), and no promise or resolver per payload. Resolves when all were
   * acked without error; otherwise rejects once all are settled, with the
   * first failure's code and a message that counts the failures. Payloads
   * refused when queued (too large, queue full) count as failures; the
   * others are delivered all the same.
   */
  dispatchMany(src: Uint8Array, kind: string, bodies: readonly Uint8Array[], options?: DispatchOptions): Promise<void> {
    if (bodies.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const group = new SettleGroup(bodies.length, resolve, reject, this.options.plugin, kind);
      for (const body of bodies) {
        const size = entrySize(src, kind, body);
        const refusal = size - ITEM_OVERHEAD_BYTES > MAX_ITEM_BYTES ? this.tooLarge(kind, size) : this.admit(false, kind, size);
        if (refusal) group.reject(refusal);
        else this.push(false, src, kind, body, size, group, options?.onEffect);
      }
    });
  }

  /** Queues a forgotten peer as a sequenced item; resolves when the plugin acks it. */
  forget(peer: Uint8Array): Promise<void> {
    return this.enqueue(true, peer, "", new Uint8Array(0), entrySize(peer, "", new Uint8Array(0)));
  }

  private tooLarge(kind: string, size: number): PlugwireError {
    return new PlugwireError(
      "payload_too_large",
      `payload of kind '${kind}' for plugin '${this.options.plugin}' is ${size - ITEM_OVERHEAD_BYTES} bytes, ` +
        `over the ${MAX_ITEM_BYTES}-byte limit of one Deliver message; it was not queued. Split it, or send a reference to data the plugin can fetch.`,
      { plugin: this.options.plugin },
    );
  }

  private enqueue(
    forget: boolean,
    src: Uint8Array,
    kind: string,
    body: Uint8Array,
    size: number,
    onEffect?: (effect: PayloadEffect) => void,
  ): Promise<void> {
    const refusal = this.admit(forget, kind, size);
    if (refusal) return Promise.reject(refusal);
    return new Promise<void>((resolve, reject) => {
      this.push(forget, src, kind, body, size, { resolve, reject }, onEffect);
    });
  }

  /** Makes room for one new item under maxQueued/maxQueuedBytes (dropping the oldest if so configured); the refusal when there is none. */
  private admit(forget: boolean, kind: string, size: number): PlugwireError | undefined {
    const label = forget ? "a forgotten peer" : `payload of kind '${kind}'`;
    const maxBytes = this.options.maxQueuedBytes ?? Number.POSITIVE_INFINITY;
    // Items awaiting redelivery are not counted: they are never dropped.
    while (this.waiting >= this.options.maxQueued || (this.waiting > 0 && this.waitingBytes + size > maxBytes)) {
      const victimIndex = this.options.overflow === "drop-oldest" ? this.oldestDroppable() : -1;
      if (victimIndex < 0) {
        this.options.onOverflow?.("reject", undefined);
        const why = this.replayIsFull
          ? ` Its replay buffer is full and waits for a snapshot that advances; check the plugin's snapshots (see its status).`
          : "";
        const message =
          this.waiting >= this.options.maxQueued
            ? `plugin '${this.options.plugin}' has ${this.waiting} payloads waiting (maxQueued ${this.options.maxQueued}); ` +
              `${label} was rejected. Retry later, raise maxQueued, or use overflow: drop-oldest.${why}`
            : `plugin '${this.options.plugin}' has ${this.waiting} payloads of ${this.waitingBytes} bytes waiting (maxQueuedBytes ${maxBytes}); ` +
              `${label} (${size} bytes) was rejected. Retry later, raise maxQueuedBytes, or use overflow: drop-oldest.${why}`;
        return new PlugwireError("queue_full", message, { plugin: this.options.plugin });
      }
      const dropped = this.unacked.removeAt(victimIndex)!;
      this.waitingBytes -= dropped.size;
      this.options.onOverflow?.("drop-oldest", dropped);
      dropped.settle?.reject(
        new PlugwireError(
          "queue_full",
          `plugin '${this.options.plugin}' dropped a queued payload of kind '${dropped.kind}' because its queue was full (overflow: drop-oldest)`,
          { plugin: this.options.plugin },
        ),
      );
    }
    return undefined;
  }

  private push(
    forget: boolean,
    src: Uint8Array,
    kind: string,
    body: Uint8Array,
    size: number,
    settle: Entry["settle"],
    onEffect: ((effect: PayloadEffect) => void) | undefined,
  ): void {
    this.dispatchedTotal++;
    const at = performance.now();
    this.noteArrival(at);
    const entry: Entry = { seq: 0, forget, src, kind, body, size, enqueuedAt: at, crashes: 0, sentTo: 0, settle, onEffect };
    this.unacked.push(entry);
    this.waitingBytes += size;
    this.scheduleFlush();
  }

  /** Index in `unacked` of the oldest never-sent payload; forgets are never dropped. -1 if none. */
  private oldestDroppable(): number {
    for (let i = this.numbered; i < this.unacked.length; i++) if (!this.unacked.at(i)!.forget) return i;
    return -1;
  }

  /**
   * Continues the seq space of a stored snapshot, so that a restarted host
   * numbers new items after what the restored state already includes.
   * Call before the first attach.
   */
  resumeAfter(appliedSeq: number): void {
    if (appliedSeq >= this.nextSeq) {
      this.nextSeq = appliedSeq + 1;
      this.ackedThrough = Math.max(this.ackedThrough, appliedSeq);
    }
  }

  /**
   * Connects a new launch's Deliver stream. Replays acked items after
   * `replayAfter` (stateful restore), then redelivers every un-acked item,
   * then sends new ones; all under the in-flight window, as acks come in.
   */
  attach(stream: DeliveryStream, launch: number, replayAfter: number | undefined): AttachResult {
    this.stream = stream;
    this.launch = launch;
    this.sent = 0;
    this.inFlightBytes = 0;
    this.lastProgressAt = Date.now();
    this.launchReplayThrough = 0;
    this.launchAckedThrough = 0;
    this.launchSentThrough = 0;
    this.replayQueue = [];
    this.replayNext = 0;
    this.replayInFlight.clear();
    this.batches.clear();
    if (replayAfter !== undefined) {
      for (const entry of this.replay) if (entry.seq > replayAfter) this.replayQueue.push(entry);
      this.launchReplayThrough = this.replayQueue.at(-1)?.seq ?? 0;
    }
    let redelivered = 0;
    for (let i = 0; i < this.numbered; i++) if (this.unacked.at(i)!.sentTo > 0) redelivered++;
    this.flush();
    return { replayed: this.replayQueue.length, redelivered };
  }

  /**
   * The launch is gone. When it crashed, the item at the head of the window
   * is suspected, if the launch had got to it (it acked every replayed
   * item); an item that was alone in flight at its second crash is parked as
   * a dead letter. Everything that was in flight is redelivered one at a
   * time to the next launch.
   */
  detach(crashed: boolean): DeadLetter | undefined {
    const aloneInFlight = this.sent === 1 && this.replayInFlight.length === 0;
    const launchSentThrough = this.launchSentThrough;
    this.stream = undefined;
    this.sent = 0;
    this.inFlightBytes = 0;
    this.replayQueue = [];
    this.replayNext = 0;
    this.replayInFlight.clear();
    this.batches.clear();
    // Nothing is in flight any more: a snapshot waiting for the window goes
    // on (and fails fast on the closed connection).
    this.releaseSafeWaiters();
    if (!crashed) return undefined;
    this.suspectThrough = Math.max(this.suspectThrough, launchSentThrough);
    const head = this.unacked.at(0);
    if (!head || head.sentTo !== this.launch) return undefined;
    // Still replaying: the crash cannot be the head's doing.
    if (this.launchAckedThrough < this.launchReplayThrough) return undefined;
    head.crashes++;
    if (head.crashes < 2 || !aloneInFlight) return undefined;
    this.unacked.shift();
    this.numbered--;
    const letter: DeadLetter = {
      seq: head.seq,
      kind: head.forget ? FORGET_KIND_LABEL : head.kind,
      forget: head.forget,
      src: head.src,
      body: head.body,
      sizeBytes: head.body.byteLength,
      parkedAt: new Date(),
      reason: `in flight during ${head.crashes} consecutive crashes of plugin '${this.options.plugin}'`,
    };
    this.deadLetters.push(letter);
    this.deadLettersTotal++;
    this.parkedSeqs.push(letter.seq);
    if (this.parkedSeqs.length > this.options.maxDeadLetters) this.parkedSeqs.shift();
    if (this.deadLetters.length > this.options.maxDeadLetters) this.deadLetters.shift();
    // Nothing later than a dead letter may be acked before it, so the
    // cumulative ack simply moves past it.
    this.ackedThrough = Math.max(this.ackedThrough, head.seq);
    head.settle?.reject(
      new PlugwireError(
        "handler_failed",
        `${head.forget ? "forgotten-peer item" : "payload"} seq ${head.seq} (kind '${letter.kind}') crashed plugin '${this.options.plugin}' twice and was moved to its dead letters; ` +
          `inspect it with listDeadLetters('${this.options.plugin}')`,
        { plugin: this.options.plugin },
      ),
    );
    this.options.onDeadLetter?.(letter);
    return letter;
  }

  /** Handles an ack from the plugin. */
  onAck(response: DeliverResponse): void {
    // An ack past what this launch was sent is a plugin bug; it acks no more than was sent.
    const claimed = Number(response.ackedThrough);
    if (claimed > this.launchSentThrough) this.options.onAckBeyondSent?.(claimed, this.launchSentThrough);
    const through = Math.min(claimed, this.launchSentThrough);
    const before = this.launchAckedThrough;
    if (through > this.launchAckedThrough) this.launchAckedThrough = through;
    // Most acks carry no outcome: build the lookup only when there are some.
    const outcomes =
      response.outcomes.length === 0 ? undefined : new Map(response.outcomes.map((o) => [Number(o.seq), o] as const));
    if (claimed <= before && (claimed < before || outcomes !== undefined)) {
      // Backwards, or a repeat that carries outcomes: nothing it says is used.
      this.options.onIgnoredAck?.("backwards", { claimed, ackedThrough: before, outcomes: response.outcomes.length });
    } else if (outcomes !== undefined) {
      let stray = 0;
      let firstSeq: number | undefined;
      for (const seq of outcomes.keys()) {
        if (seq > before && seq <= through) continue;
        stray++;
        firstSeq ??= seq;
      }
      if (stray > 0) this.options.onIgnoredAck?.("stray-outcomes", { claimed, ackedThrough: through, outcomes: stray, firstSeq });
    }
    // The effect limits: checked on counts, before any effect of this ack is performed.
    let ackEffects = 0;
    if (outcomes !== undefined) for (const o of response.outcomes) if (!o.error) ackEffects += effectCount(o);
    const overAck = ackEffects > MAX_EFFECTS_PER_ACK;
    this.lastProgressAt = Date.now();
    // Replayed items were acked before: their effects were performed then.
    while (this.replayInFlight.length > 0 && this.replayInFlight.at(0)!.seq <= through) this.replayInFlight.shift();
    let lastBatchAt = -1;
    while (this.batches.length > 0 && this.batches.at(0)!.through <= through) {
      const batch = this.batches.shift()!;
      this.inFlightBytes -= batch.bytes;
      lastBatchAt = batch.at;
    }
    if (lastBatchAt >= 0) this.ackRttMs += (Math.min(performance.now() - lastBatchAt, 100) - this.ackRttMs) * RATE_SMOOTHING;
    if (this.inFlightBytes <= this.windowBound) this.releaseSafeWaiters();
    let ackedCount = 0;
    const oldestEnqueuedAt = this.sent > 0 ? this.unacked.at(0)!.enqueuedAt : 0;
    // Only the sent prefix of `unacked` can be acked; the rest has no seq yet.
    while (this.sent > 0 && this.unacked.at(0)!.seq <= through) {
      const entry = this.unacked.shift()!;
      this.sent--;
      this.numbered--;
      const outcome = outcomes?.get(entry.seq);
      const effects = outcome && !outcome.error ? effectCount(outcome) : 0;
      if (effects > 0) {
        const refusal = overAck ? this.tooManyEffectsInAck(entry, ackEffects) : this.tooManyEffects(entry, effects);
        if (refusal) {
          this.options.onEffectsRefused?.(entry, effects, refusal);
          entry.settle?.reject(refusal);
          entry.settle = undefined;
        } else {
          this.options.performEffects(entry, outcome!.effects);
        }
      }
      if (outcome?.error) {
        const reported = clip(outcome.error.message);
        this.options.onHandlerError(entry, reported);
        entry.settle?.reject(
          new PlugwireError(
            "handler_failed",
            `plugin '${this.options.plugin}' failed to handle ${entry.forget ? "a forgotten peer" : "payload"} seq ${entry.seq}` +
              `${entry.forget ? "" : ` (kind '${entry.kind}')`}: ${reported}`,
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
        this.replayBytes += entry.size;
      } else {
        this.routedAnswers.delete(entry.seq);
      }
    }
    if (ackedCount > 0) {
      this.ackedTotal += ackedCount;
      this.options.onAcked?.(ackedCount, oldestEnqueuedAt);
    }
    this.ackedThrough = Math.max(this.ackedThrough, through);
    if (this.keepReplay) this.checkReplayBounds();
    for (const waiter of this.ackWaiters) {
      if (waiter.seq <= this.ackedThrough) {
        this.ackWaiters.delete(waiter);
        waiter.done(true);
      }
    }
    this.flush();
  }

  private describe(entry: Entry): string {
    return entry.forget ? `forgotten-peer item seq ${entry.seq}` : `payload seq ${entry.seq} (kind '${entry.kind}')`;
  }

  /** The error for an item whose outcome carries more effects than maxEffectsPerItem; undefined when within it. */
  private tooManyEffects(entry: Entry, count: number): PlugwireError | undefined {
    const cap = this.options.maxEffectsPerItem ?? DEFAULT_MAX_EFFECTS_PER_ITEM;
    if (count <= cap) return undefined;
    const plugin = this.options.plugin;
    return new PlugwireError(
      "too_many_effects",
      `plugin '${plugin}' reported ${count} effects for ${this.describe(entry)}, over its limit of ${cap} per item (maxEffectsPerItem); ` +
        `none of them was performed and the item counts as failed. Make the handler send fewer messages (batch them into fewer frames), ` +
        `or raise maxEffectsPerItem for this plugin.`,
      { plugin },
    );
  }

  /** The error for every item with effects in an ack that carried more than MAX_EFFECTS_PER_ACK in all. */
  private tooManyEffectsInAck(entry: Entry, total: number): PlugwireError {
    const plugin = this.options.plugin;
    return new PlugwireError(
      "too_many_effects",
      `plugin '${plugin}' sent an ack carrying ${total} effects in all, over the limit of ${MAX_EFFECTS_PER_ACK} per ack; ` +
        `none of that ack's effects was performed, and ${this.describe(entry)} (one of the items with effects in it) counts as failed. ` +
        `A plugin must ack more often when its handlers produce many effects (the TS SDK does), or send fewer messages per item.`,
      { plugin },
    );
  }

  /**
   * Marks a snapshot transfer: until `end` is called the window stays within
   * SAFE_IN_FLIGHT_BYTES. Resolves once the bytes in flight are within it,
   * so the plugin's snapshot chunks never meet a host that stopped reading.
   */
  beginSnapshot(timeoutMs: number): { ready: Promise<boolean>; end: () => void } {
    this.snapshotting++;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.snapshotting--;
      this.flush();
    };
    if (this.inFlightBytes <= this.windowBound || this.stream === undefined) return { ready: Promise.resolve(true), end };
    const ready = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.safeWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.safeWaiters.add(done);
    });
    return { ready, end };
  }

  private releaseSafeWaiters(): void {
    for (const done of this.safeWaiters) done();
    this.safeWaiters.clear();
  }

  private checkReplayBounds(): void {
    const { maxReplayPayloads, maxReplayBytes } = this.options;
    if (this.replay.length > maxReplayPayloads || this.replayBytes > maxReplayBytes) this.options.onReplayPressure?.();
    const full = this.replay.length >= 2 * maxReplayPayloads || this.replayBytes >= 2 * maxReplayBytes;
    if (full !== this.replayIsFull) {
      this.replayIsFull = full;
      this.options.onReplayFull?.(full);
    }
  }

  /** The seq the replay buffer is (or, once held trims apply, will be) trimmed through: a snapshot below it is older than the stored one. */
  get trimFloor(): number {
    return Math.max(this.trimmedThrough, this.deferredTrim);
  }

  /**
   * Holds back trimming while a relaunch restores a snapshot and attaches:
   * a snapshot of the previous launch that is saved in between must not
   * trim the entries the relaunch is about to replay on top of an older
   * record. Trims asked for meanwhile apply when the last hold is released.
   */
  holdTrim(): () => void {
    this.trimHolds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.trimHolds--;
      if (this.trimHolds === 0 && this.deferredTrim > 0) {
        const through = this.deferredTrim;
        this.deferredTrim = 0;
        this.trimReplay(through);
      }
    };
  }

  /** Forgets replay entries a durable snapshot now covers. */
  trimReplay(appliedSeq: number): void {
    if (this.trimHolds > 0) {
      this.deferredTrim = Math.max(this.deferredTrim, appliedSeq);
      return;
    }
    this.trimmedThrough = Math.max(this.trimmedThrough, appliedSeq);
    while (this.replay.length > 0 && this.replay.at(0)!.seq <= appliedSeq) {
      const entry = this.replay.shift()!;
      this.replayBytes -= entry.size;
      this.routedAnswers.delete(entry.seq);
    }
    if (this.keepReplay) this.checkReplayBounds();
    this.flush();
  }

  /**
   * Answers a SendRouted from item `seq`'s handler at most once per (seq,
   * index); `call` (its dst and frame) is reported to the item's onEffect.
   */
  sendRoutedOnce(seq: number, index: number, send: () => Promise<boolean>, call?: { dst: Uint8Array; frame: Uint8Array }): Promise<boolean> {
    let answers = this.routedAnswers.get(seq);
    const known = answers?.[index];
    // A call still pending counts too: a relaunch that redelivers the item
    // while the crashed launch's send is in progress must not send again.
    if (known !== undefined) return known;
    if (answers === undefined) this.routedAnswers.set(seq, (answers = []));
    const routed = send();
    answers[index] = routed;
    if (call) this.sentEntry(seq)?.onEffect?.({ type: "sendRouted", dst: call.dst, frame: call.frame, routed });
    // A failed send is not remembered, so a retry sends again.
    routed.catch(() => {
      if (answers[index] === routed) delete answers[index];
    });
    return routed;
  }

  /** The un-acked item `seq` sent to the current launch, if any (the sent prefix is in seq order). */
  private sentEntry(seq: number): Entry | undefined {
    let lo = 0;
    let hi = this.sent - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const entry = this.unacked.at(mid)!;
      if (entry.seq === seq) return entry;
      if (entry.seq < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  /** True when item `seq` is in flight to the current launch: the only origins a SendRouted may name. */
  isInFlight(seq: number): boolean {
    return seq > this.launchAckedThrough && seq <= this.launchSentThrough;
  }

  /** The lowest seq parked since `sinceTotal` dead letters (deadLettersTotal then), if any. */
  lowestParkedSince(sinceTotal: number): number | undefined {
    const count = this.deadLettersTotal - sinceTotal;
    if (count <= 0) return undefined;
    const recent = this.parkedSeqs.slice(-count);
    return recent.length > 0 ? Math.min(...recent) : undefined;
  }

  listDeadLetters(): readonly DeadLetter[] {
    return this.deadLetters;
  }

  /** Takes a dead letter out of the list, by seq, for replay as a new item. */
  takeDeadLetter(seq: number): DeadLetter | undefined {
    const index = this.deadLetters.findIndex((d) => d.seq === seq);
    return index === -1 ? undefined : this.deadLetters.splice(index, 1)[0];
  }

  /** Rejects everything pending; used when the host stops. */
  failAll(error: (entry: Entry) => PlugwireError): void {
    // Nothing will be acked any more.
    for (const waiter of this.ackWaiters) waiter.done(false);
    this.ackWaiters.clear();
    for (const entry of this.unacked.clear()) entry.settle?.reject(error(entry));
    this.sent = 0;
    this.numbered = 0;
    this.waitingBytes = 0;
    this.inFlightBytes = 0;
    this.batches.clear();
  }

  /** Rejects the items never sent to any launch; the rest stay. */
  failUnsent(error: (entry: Entry) => PlugwireError): number {
    let failed = 0;
    while (this.unacked.length > this.numbered) {
      const entry = this.unacked.removeAt(this.numbered)!;
      this.waitingBytes -= entry.size;
      entry.settle?.reject(error(entry));
      failed++;
    }
    return failed;
  }

  /** Resolves true once every item sent to the current launch is acked, false after `timeoutMs`. */
  drainInFlight(timeoutMs: number): Promise<boolean> {
    if (this.sent === 0 && this.numbered === 0) return Promise.resolve(true);
    const last = this.unacked.at(Math.max(this.sent, this.numbered) - 1);
    return last ? this.waitForAck(last.seq, timeoutMs) : Promise.resolve(true);
  }

  private noteArrival(at: number): void {
    this.arrivalGapMs += (Math.min(at - this.lastArrivalAt, 100) - this.arrivalGapMs) * RATE_SMOOTHING;
    this.lastArrivalAt = at;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.stream === undefined) return;
    if (this.queued >= this.options.maxBatch) {
      this.flush();
      return;
    }
    // Adaptive micro-batching, sized by the arrival rate: while items arrive
    // seldom enough that fewer than COALESCE_MIN_ARRIVALS would come in
    // during one ack round trip, or nothing is in flight, send on the next
    // turn of the event loop (lowest latency; the plugin never runs dry).
    // Once more would come in, or a full batch is in flight, let new items
    // gather: the next ack flushes them as one batch, and a short timer is
    // the backstop should that ack be slow. Spread-out arrivals at a high
    // rate so go out in batches instead of one message each, whose per-
    // message cost (and 1 KiB of window each) would make the host fall behind.
    this.flushScheduled = true;
    const run = (): void => {
      this.flushScheduled = false;
      this.flush();
    };
    const busy = this.sent >= this.options.maxBatch || (this.inFlight > 0 && this.ackRttMs >= COALESCE_MIN_ARRIVALS * this.arrivalGapMs);
    if (!busy || this.options.coalesceMs === 0) setImmediate(run);
    else setTimeout(run, this.options.coalesceMs);
  }

  /** The most bytes in flight: maxInFlightBytes, never more than SAFE_IN_FLIGHT_BYTES. */
  private get windowBound(): number {
    return Math.min(SAFE_IN_FLIGHT_BYTES, this.options.maxInFlightBytes);
  }

  /**
   * Whether the window has room for `entry` in a message of `batchBytes` so
   * far; an empty window takes any one item. Keeping the bytes in flight
   * under what a socket's send buffer holds is what keeps the host reading:
   * Node's HTTP/2 stops reading a socket while its own write to it is
   * pending, and a plugin doing the same would deadlock the two.
   */
  private fits(entry: Entry, batchBytes: number): boolean {
    const inFlight = this.inFlight;
    const bytes = this.inFlightBytes + (batchBytes === 0 ? BATCH_OVERHEAD_BYTES : batchBytes) + entry.size;
    const bound = this.windowBound;
    // During a snapshot transfer only what fits the bound, even alone.
    if (this.snapshotting > 0) return bytes <= bound && inFlight < this.options.maxInFlight;
    if (inFlight === 0) return true;
    if (inFlight >= this.options.maxInFlight) return false;
    return bytes <= bound;
  }

  /**
   * Writes what the window allows, in seq order: the replay first, then
   * redeliveries (one at a time while they are suspects), then new items
   * (unless the replay buffer is full).
   */
  private flush(): void {
    if (this.stream === undefined) return;
    if (this.inFlight === 0 && this.queued > 0) this.lastProgressAt = Date.now();
    const { maxBatch, maxBatchBytes } = this.options;
    while (this.replayNext < this.replayQueue.length) {
      const batch: Entry[] = [];
      let bytes = 0;
      while (this.replayNext < this.replayQueue.length && batch.length < maxBatch) {
        const entry = this.replayQueue[this.replayNext]!;
        if ((batch.length > 0 && bytes + entry.size > maxBatchBytes) || !this.fits(entry, bytes)) break;
        if (bytes === 0) bytes = BATCH_OVERHEAD_BYTES;
        batch.push(entry);
        bytes += entry.size;
        this.replayInFlight.push(entry);
        this.replayNext++;
      }
      if (batch.length === 0) return;
      this.write(batch, true, bytes);
    }
    while (this.sent < this.unacked.length) {
      const batch: Entry[] = [];
      let bytes = 0;
      while (this.sent < this.unacked.length && batch.length < maxBatch) {
        const entry = this.unacked.at(this.sent)!;
        // A suspect goes alone, into an empty window.
        const suspect = entry.seq !== 0 && entry.seq <= this.suspectThrough;
        if (suspect && (batch.length > 0 || this.inFlight > 0)) break;
        // New items wait while the replay buffer is at its hard bound.
        if (entry.seq === 0 && this.replayIsFull) break;
        if ((batch.length > 0 && bytes + entry.size > maxBatchBytes) || !this.fits(entry, bytes)) break;
        if (bytes === 0) bytes = BATCH_OVERHEAD_BYTES;
        batch.push(entry);
        bytes += entry.size;
        this.sent++;
        if (suspect) break;
      }
      if (batch.length === 0) return;
      this.write(batch, false, bytes);
    }
  }

  private write(batch: Entry[], replay: boolean, bytes: number): void {
    if (redeliveredFlags.length < batch.length) redeliveredFlags = new Uint8Array(batch.length * 2);
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      redeliveredFlags[i] = replay || e.sentTo > 0 ? 1 : 0;
      if (e.seq === 0) {
        e.seq = this.nextSeq++;
        this.numbered++;
        this.waitingBytes -= e.size;
      }
      if (!replay) e.sentTo = this.launch;
    }
    // Encoded straight from the entries: no message objects on the hot path.
    const request = preEncodedDeliverRequest(encodeRawDeliveryItems(batch, redeliveredFlags));
    const through = batch[batch.length - 1]!.seq;
    this.launchSentThrough = Math.max(this.launchSentThrough, through);
    this.batches.push({ through, bytes, at: performance.now() });
    this.inFlightBytes += bytes;
    this.stream!.write(request);
  }
}
