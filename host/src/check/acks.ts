/**
 * Watches the Deliver stream from the host's side: what was sent, every ack,
 * and every rule an ack or an outcome broke.
 */
import type * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DeliverRequestSchema, DeliverResponse, PayloadOutcome } from "@plugwire/proto";
import { CheckFailure } from "./types.js";
import { messageOf } from "./util.js";

/** One payload as the kit sends it. */
export interface PayloadInit {
  seq: bigint;
  src: Uint8Array;
  kind: string;
  body: Uint8Array;
}

export type DeliverStream = grpc.ClientDuplexStream<MessageInitShape<typeof DeliverRequestSchema>, DeliverResponse>;

/** An outcome, with the ack it came in. */
export interface SeenOutcome {
  outcome: PayloadOutcome;
  /** acked_through of the ack that carried it, and of the ack before. */
  ackedThrough: bigint;
  previousThrough: bigint;
}

export class AckLog {
  /** Highest seq sent so far. */
  sentThrough = 0n;
  /** Highest acked_through seen. */
  through = 0n;
  acks = 0;
  readonly kinds = new Map<bigint, string>();
  readonly outcomes: SeenOutcome[] = [];
  /** Broken ack rules (acked_through going down or past what was sent). */
  readonly ackProblems: string[] = [];
  /** Set when the stream failed or the plugin ended it. */
  streamEnd: string | undefined;
  private waiters: Array<() => boolean> = [];

  constructor(private readonly stream: DeliverStream) {
    stream.on("data", (r: DeliverResponse) => this.onAck(r));
    stream.on("error", (e: Error) => this.onEnd(`the Deliver stream failed: ${messageOf(e)}`));
    stream.on("end", () => this.onEnd("the plugin ended the Deliver stream"));
  }

  send(payloads: PayloadInit[]): void {
    for (const p of payloads) {
      this.kinds.set(p.seq, p.kind);
      if (p.seq > this.sentThrough) this.sentThrough = p.seq;
    }
    this.stream.write({ payloads });
  }

  /** Resolves once everything through `seq` is acked; rejects on a broken rule, a broken stream or the timeout. */
  until(seq: bigint, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): boolean => {
        if (this.ackProblems.length > 0) reject(new CheckFailure(this.ackProblems[0]!));
        else if (this.through >= seq) resolve();
        else if (this.streamEnd) reject(new CheckFailure(`${this.streamEnd} before acking seq ${seq}`));
        else return false;
        clearTimeout(timer);
        return true;
      };
      if (done()) return;
      this.waiters.push(done);
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new CheckFailure(this.stalled(seq, timeoutMs)));
      }, timeoutMs);
    });
  }

  /** Half-closes the stream; the plugin should end its side. */
  end(): void {
    this.stream.end();
  }

  private stalled(seq: bigint, timeoutMs: number): string {
    const next = this.through + 1n;
    const kind = this.kinds.get(next);
    return (
      `no ack through seq ${seq} within ${timeoutMs} ms (${this.acks} ack(s), the last through ${this.through}); ` +
      `the first payload never acked is seq ${next}${kind ? ` of kind '${kind}'` : ""}. ` +
      `Ack every payload once its handler finishes, whenever the queue drains and at least every 512 payloads`
    );
  }

  private onAck(r: DeliverResponse): void {
    this.acks++;
    const previous = this.through;
    if (r.ackedThrough < previous) {
      this.ackProblems.push(`acked_through went down from ${previous} to ${r.ackedThrough}; acks are cumulative and never go back`);
    } else if (r.ackedThrough > this.sentThrough) {
      this.ackProblems.push(
        `an ack says acked_through=${r.ackedThrough}, but the highest seq sent was ${this.sentThrough}; ack only payloads whose handler has finished`,
      );
    }
    for (const outcome of r.outcomes) this.outcomes.push({ outcome, ackedThrough: r.ackedThrough, previousThrough: previous });
    if (r.ackedThrough > this.through) this.through = r.ackedThrough;
    this.wake();
  }

  private onEnd(why: string): void {
    this.streamEnd ??= why;
    this.wake();
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => !w());
  }
}
