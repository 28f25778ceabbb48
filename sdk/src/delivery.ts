import { create } from "@bufbuild/protobuf";
import {
  DeliverResponseSchema,
  PayloadOutcomeSchema,
  type DeliverRequest,
  type DeliverResponse,
  type Effect,
  type PayloadOutcome,
} from "@plugwire/proto";
import type { Payload } from "./types.js";

/** Handles one payload; returns the effects it produced, or throws. */
export type PayloadRunner = (payload: Payload) => Promise<Effect[]> | Effect[];

/**
 * Writes an ack to the Deliver stream. It may return a promise that settles
 * once the ack has been handed to the operating system (a stream write's
 * callback); without one the processor yields one event-loop turn instead.
 */
export type AckSender = (r: DeliverResponse) => void | Promise<void>;

/** Most payloads handled before an ack is sent even if more are queued. */
const MAX_UNACKED = 512;
/** While the queue stays busy, an ack also goes out at least this often (checked every 16 payloads). */
const ACK_INTERVAL_MS = 20;

/**
 * Runs payloads one at a time in seq order and acks them cumulatively. Acks
 * go out when the queue drains or every MAX_UNACKED payloads. Exclusive tasks
 * (snapshot, restore) run between payloads, never during one.
 */
export class DeliveryProcessor {
  private readonly queue: Payload[] = [];
  private head = 0;
  private running = false;
  private lastHandled = 0;
  private lastAcked = 0;
  private lastFlushAt = 0;
  private outcomes: PayloadOutcome[] = [];
  private exclusive: Array<() => Promise<void>> = [];
  private send: AckSender | undefined;

  constructor(private readonly run: PayloadRunner, private readonly onHandlerError: (p: Payload, e: unknown) => void) {}

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
    for (const p of request.payloads) {
      const seq = Number(p.seq);
      if (seq <= this.lastHandled) continue; // already applied by this process
      this.queue.push({ seq, src: p.src, kind: p.kind, body: p.body, redelivered: p.redelivered });
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
        const payload = this.queue[this.head++]!;
        try {
          const ran = this.run(payload);
          const effects = ran instanceof Promise ? await ran : ran;
          if (effects.length > 0) this.outcomes.push(create(PayloadOutcomeSchema, { seq: BigInt(payload.seq), effects }));
        } catch (e) {
          this.onHandlerError(payload, e);
          const message = e instanceof Error ? e.message : String(e);
          this.outcomes.push(create(PayloadOutcomeSchema, { seq: BigInt(payload.seq), error: { message } }));
        }
        this.lastHandled = payload.seq;
        // Redelivered payloads are acked one by one, so that after another
        // crash the host knows exactly which payload was being handled. The
        // ack must have left the process before the next handler runs: if
        // that handler kills the process (a poison pill), an ack still
        // queued in this process is lost, and the host would blame this
        // payload instead, and in the end park it as a dead letter.
        if (payload.redelivered) await ackWritten(this.flush());
        else if (this.lastHandled - this.lastAcked >= MAX_UNACKED) this.flush();
        else if ((payload.seq & 15) === 0 && performance.now() - this.lastFlushAt >= ACK_INTERVAL_MS) this.flush();
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

  private flush(): void | Promise<void> {
    if (this.lastHandled === this.lastAcked || this.send === undefined) return;
    this.lastFlushAt = performance.now();
    const written = this.send(create(DeliverResponseSchema, { ackedThrough: BigInt(this.lastHandled), outcomes: this.outcomes }));
    this.lastAcked = this.lastHandled;
    this.outcomes = [];
    return written;
  }
}

/** Resolves once an ack is written: on the sender's promise, else after one event-loop turn. */
function ackWritten(written: void | Promise<void>): Promise<void> {
  if (!(written instanceof Promise)) return new Promise((resolve) => setImmediate(resolve));
  // Never wait on a write confirmation forever: the delivery loop must not
  // stall behind one (a 60 s chaos run once saw a plugin stop acking until
  // the host's hang detection restarted it).
  let timer: NodeJS.Timeout | undefined;
  const bounded = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ACK_WRITE_WAIT_MS);
  });
  return Promise.race([written.catch(() => undefined), bounded]).finally(() => clearTimeout(timer));
}

/** Longest wait for an ack of a redelivered payload to reach the socket. */
const ACK_WRITE_WAIT_MS = 100;
