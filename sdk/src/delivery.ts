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

/** Most items handled before an ack is sent even if more are queued. */
const MAX_UNACKED = 512;
/** While the queue stays busy, an ack also goes out at least this often (checked every 16 items). */
const ACK_INTERVAL_MS = 20;

/**
 * Runs items (payloads and forgotten peers) one at a time in seq order and
 * acks them cumulatively. Acks go out when the queue drains, every
 * MAX_UNACKED items, and every ACK_INTERVAL_MS while busy. Exclusive tasks
 * (snapshot, restore) run between items, never during one.
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
  private lastAcked = 0;
  private lastFlushAt = 0;
  private outcomes: ItemOutcome[] = [];
  private exclusive: Array<() => Promise<void>> = [];
  private send: AckSender | undefined;

  constructor(private readonly run: ItemRunner, private readonly onHandlerError: (item: Item, e: unknown) => void) {}

  /** Seq of the last payload whose handler has finished. */
  get appliedSeq(): number {
    return this.lastHandled;
  }

  /** Attaches the stream acks are written to; replaces any earlier one. */
  attach(send: AckSender): void {
    this.send = send;
    this.lastAcked = 0; // a new stream: re-ack what this process already handled
  }

  detach(send: AckSender): void {
    if (this.send === send) this.send = undefined;
  }

  push(request: DeliverRequest): void {
    for (const it of request.items) {
      const seq = Number(it.seq);
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

  /** After a Restore: the state now includes every payload up to `seq`. */
  restoredThrough(seq: number): void {
    this.lastHandled = seq;
    this.lastAcked = Math.min(this.lastAcked, seq);
  }

  /** Runs `task` between payloads and resolves with its result. */
  runExclusive<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusive.push(() => task().then(resolve, reject));
      this.kick();
    });
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
        if (this.head >= this.queue.length) break;
        const item = this.queue[this.head++]!;
        try {
          const ran = this.run(item);
          const effects = ran instanceof Promise ? await ran : ran;
          if (effects.length > 0) this.outcomes.push(create(ItemOutcomeSchema, { seq: BigInt(item.seq), effects }));
        } catch (e) {
          this.onHandlerError(item, e);
          const message = e instanceof Error ? e.message : String(e);
          this.outcomes.push(create(ItemOutcomeSchema, { seq: BigInt(item.seq), error: { message } }));
        }
        this.lastHandled = item.seq;
        if (
          this.lastHandled - this.lastAcked >= MAX_UNACKED ||
          ((item.seq & 15) === 0 && performance.now() - this.lastFlushAt >= ACK_INTERVAL_MS)
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
    if (this.head < this.queue.length || this.exclusive.length > 0) this.kick();
  }

  private flush(): void {
    if (this.lastHandled === this.lastAcked || this.send === undefined) return;
    this.lastFlushAt = performance.now();
    this.send(create(DeliverResponseSchema, { ackedThrough: BigInt(this.lastHandled), outcomes: this.outcomes }));
    this.lastAcked = this.lastHandled;
    this.outcomes = [];
  }
}
