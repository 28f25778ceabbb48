import { create } from "@bufbuild/protobuf";
import {
  DeliverResponseSchema,
  ItemOutcomeSchema,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
  type ItemOutcome,
} from "@plugwire/proto";
import type { NodeId, Payload } from "./types.js";

/** One sequenced item of the Deliver stream, as the processor runs it. */
export type Item =
  | { readonly seq: number; readonly redelivered: boolean; readonly payload: Payload; readonly forgotten?: undefined }
  | { readonly seq: number; readonly redelivered: boolean; readonly payload?: undefined; readonly forgotten: NodeId };

/** Handles one item; returns the effects it produced, or throws. */
export type ItemRunner = (item: Item) => Promise<Effect[]> | Effect[];

/** Writes an ack to the Deliver stream. */
export type AckSender = (r: DeliverResponse) => void;

/** Most items handled before an ack is sent even if more are queued (docs/protocol.md §8). */
const MAX_UNACKED = 512;
/** While the queue stays busy, an ack goes out once this long has passed since the last one. */
const ACK_INTERVAL_MS = 20;
/**
 * An ack goes out once the outcomes waiting for it carry this many effects,
 * so one ack stays under the host's limit of 65,536 effects (docs/protocol.md
 * §8 Effects) whenever each item is within maxEffectsPerItem (at most 32,768).
 */
const MAX_PENDING_EFFECTS = 16_384;

/** A Deliver stream acks are written to, and what was received and acked on it. */
interface AckStream {
  readonly send: AckSender;
  /** Ends this stream (when a newer one supersedes it). */
  readonly end?: () => void;
  /** Highest seq received on this stream: an ack on it never covers more. */
  high: number;
  /** acked_through of the last ack written to it: acks on it never go down. */
  acked: number;
}

/**
 * Runs items (payloads and forgotten peers) one at a time in seq order and
 * acks them cumulatively on the newest Deliver stream. An ack goes out after
 * a handled item when the queue is empty, when MAX_UNACKED items were
 * handled since the last ack, or when ACK_INTERVAL_MS have passed since it.
 * An ack on a stream covers at most the highest seq received on that stream
 * and never goes down. Exclusive tasks (snapshot, restore) run between items,
 * never during one, after the pending ack is sent.
 *
 * Redelivered items need no special treatment: after a crash the host sends
 * them one at a time, each once the one before it is acked, and an ack goes
 * out as soon as the queue drains.
 */
export class DeliveryProcessor {
  private readonly queue: Item[] = [];
  private head = 0;
  private running = false;
  private lastHandled = 0;
  private lastFlushAt = 0;
  private handledSinceAck = 0;
  /** Effects in `outcomes`. */
  private pendingEffects = 0;
  /** Outcomes of handled items not yet written, in seq order. */
  private outcomes: ItemOutcome[] = [];
  private exclusive: Array<() => Promise<void>> = [];
  private stream: AckStream | undefined;
  private closed = false;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly run: ItemRunner, private readonly onHandlerError: (item: Item, e: unknown) => void) {}

  /** Seq of the last item whose handler has finished, or of the restored snapshot. */
  get appliedSeq(): number {
    return this.lastHandled;
  }

  /**
   * Attaches a new Deliver stream: later acks go to it only. Nothing is acked
   * on it before an item arrives on it; its first ack then covers what this
   * process handled, up to the highest seq the stream carried. Outcomes not
   * yet written went with the old stream: the host redelivers their items,
   * which this process skips as duplicates (docs/protocol.md §8).
   *
   * One stream at a time: the one it supersedes is ended (`end`), so items
   * can no longer arrive on it and opening many streams holds one open.
   */
  attach(send: AckSender, end?: () => void): void {
    const previous = this.stream;
    this.stream = { send, end, high: 0, acked: 0 };
    previous?.end?.();
    this.outcomes = [];
    this.pendingEffects = 0;
    this.lastFlushAt = performance.now();
  }

  detach(send: AckSender): void {
    if (this.stream?.send === send) this.stream = undefined;
  }

  /**
   * Queues the items of one Deliver message. `from` is the stream it came on
   * (default: the newest); items at or below the applied seq are skipped as
   * duplicates, and the next ack covers them.
   */
  push(request: DeliverRequest, from?: AckSender): void {
    if (this.closed) return;
    const stream = from === undefined || from === this.stream?.send ? this.stream : undefined;
    for (const it of request.items) {
      const seq = Number(it.seq);
      if (stream && seq > stream.high) stream.high = seq;
      if (seq <= this.lastHandled) continue; // already applied by this process
      const redelivered = it.redelivered;
      if (it.item.case === "payload") {
        const p = it.item.value;
        this.queue.push({ seq, redelivered, payload: { seq, src: p.src, kind: p.kind, body: p.body, redelivered } });
      } else if (it.item.case === "peerForgotten") {
        this.queue.push({ seq, redelivered, forgotten: it.item.value.nodeId });
      } else {
        // An item of a kind this SDK does not know (a newer host): acked, with an error outcome.
        this.queue.push({ seq, redelivered, payload: { seq, src: new Uint8Array(0), kind: "", body: new Uint8Array(0), redelivered } });
      }
    }
    this.kick();
  }

  /**
   * After a Restore: the state now includes every item up to `seq`, and
   * nothing after it. Duplicate detection starts again from `seq`, up or down.
   */
  restoredThrough(seq: number): void {
    this.lastHandled = seq;
    // Items queued past the restored state are still to be applied; outcomes
    // of items the restored state no longer includes are void.
    this.outcomes = this.outcomes.filter((o) => Number(o.seq) <= seq);
    this.pendingEffects = 0;
    for (const o of this.outcomes) this.pendingEffects += o.effects.length;
    while (this.head < this.queue.length && this.queue[this.head]!.seq <= seq) this.head++;
  }

  /** Runs `task` between items (after the pending ack is sent) and resolves with its result. */
  runExclusive<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusive.push(() => task().then(resolve, reject));
      this.kick();
    });
  }

  /**
   * Stops taking items (Shutdown, SIGTERM, stdin EOF): the handler running now
   * finishes, the final ack goes out, and items still queued are dropped (the
   * host redelivers them to the next launch). Resolves once no handler runs.
   */
  close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    this.head = 0;
    if (!this.running) {
      this.flush();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private kick(): void {
    if (!this.running) {
      this.running = true;
      void this.loop();
    }
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        while (this.exclusive.length > 0) {
          // Ack first, so the host has every ack a snapshot's applied_seq covers.
          this.flush();
          await this.exclusive.shift()!();
        }
        if (this.closed || this.head >= this.queue.length) break;
        const item = this.queue[this.head++]!;
        try {
          const ran = this.run(item);
          const effects = ran instanceof Promise ? await ran : ran;
          if (effects.length > 0) {
            this.outcomes.push(create(ItemOutcomeSchema, { seq: BigInt(item.seq), effects }));
            this.pendingEffects += effects.length;
          }
        } catch (e) {
          this.onHandlerError(item, e);
          const message = e instanceof Error ? e.message : String(e);
          this.outcomes.push(create(ItemOutcomeSchema, { seq: BigInt(item.seq), error: { message } }));
        }
        this.lastHandled = item.seq;
        this.handledSinceAck++;
        if (
          this.handledSinceAck >= MAX_UNACKED ||
          this.pendingEffects >= MAX_PENDING_EFFECTS ||
          performance.now() - this.lastFlushAt >= ACK_INTERVAL_MS
        ) {
          this.flush();
          // Let the ack reach the socket, and health checks and new items in,
          // even when every handler is synchronous.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        if (this.head > 4096 && this.head * 2 > this.queue.length) {
          this.queue.splice(0, this.head);
          this.head = 0;
        }
      }
      this.flush();
    } finally {
      this.running = false;
    }
    if (this.exclusive.length > 0 || (!this.closed && this.head < this.queue.length)) {
      this.kick();
      return;
    }
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  /** Writes the pending ack, if it advances the current stream's acked_through. */
  private flush(): void {
    const stream = this.stream;
    if (stream === undefined) return;
    const through = Math.min(this.lastHandled, stream.high);
    if (through <= stream.acked) return;
    this.lastFlushAt = performance.now();
    this.handledSinceAck = 0;
    let outcomes = this.outcomes;
    if (outcomes.length > 0 && Number(outcomes[outcomes.length - 1]!.seq) > through) {
      // Outcomes of items past what this stream carried wait for a later ack.
      outcomes = this.outcomes.filter((o) => Number(o.seq) <= through);
      this.outcomes = this.outcomes.filter((o) => Number(o.seq) > through);
    } else {
      this.outcomes = [];
    }
    this.pendingEffects = 0;
    for (const o of this.outcomes) this.pendingEffects += o.effects.length;
    stream.acked = through;
    stream.send(create(DeliverResponseSchema, { ackedThrough: BigInt(through), outcomes }));
  }
}
