/**
 * Watches the Deliver stream from the host's side: what was sent, every ack,
 * and every rule an ack or an outcome broke.
 */
import type * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { performance } from "node:perf_hooks";
import type { DeliverRequestSchema, DeliverResponse, DeliveryItemSchema, ItemOutcome } from "@plugwire/proto";
import { CheckFailure } from "./types.js";
import { messageOf } from "./util.js";

/** One sequenced item as the kit sends it: a payload or a forgotten peer, `redelivered` when sent again. */
export type ItemInit =
  | { seq: bigint; redelivered?: boolean; payload: { src: Uint8Array; kind: string; body: Uint8Array } }
  | { seq: bigint; redelivered?: boolean; forget: { nodeId: Uint8Array } };

/** What the kit sent at one seq, and the item itself, to send it again. */
export type SentItem = ({ case: "payload"; kind: string } | { case: "forget" }) & { init: ItemInit };

export type DeliverStream = grpc.ClientDuplexStream<MessageInitShape<typeof DeliverRequestSchema>, DeliverResponse>;

/** An outcome, with the ack it came in. */
export interface SeenOutcome {
  outcome: ItemOutcome;
  /** acked_through of the ack that carried it, and of the ack before. */
  ackedThrough: bigint;
  previousThrough: bigint;
}

/** One ack as it arrived. */
export interface SeenAck {
  ackedThrough: bigint;
  /** The highest acked_through seen on this stream before this ack. */
  previousThrough: bigint;
  /** Seqs of the outcomes it carried, in order. */
  outcomeSeqs: bigint[];
  /** performance.now() when it arrived. */
  at: number;
  /** The highest seq sent on this stream when it arrived. */
  sentThrough: bigint;
}

/** "a payload of kind 'x'", "a peer_forgotten item", for messages. */
export function describeItem(item: SentItem | undefined): string {
  if (!item) return "an item the kit never sent";
  return item.case === "payload" ? `a payload of kind '${item.kind}'` : "a peer_forgotten item";
}

function toWire(item: ItemInit): MessageInitShape<typeof DeliveryItemSchema> {
  const redelivered = item.redelivered ?? false;
  return "payload" in item
    ? { seq: item.seq, redelivered, item: { case: "payload", value: item.payload } }
    : { seq: item.seq, redelivered, item: { case: "peerForgotten", value: item.forget } };
}

/**
 * One Deliver stream of the main launch. Seqs are per plugin, not per
 * stream, so the streams of a launch share one `sent` map; the ack rules
 * are judged per stream.
 */
export class AckLog {
  /** Highest seq sent on this stream so far. */
  sentThrough = 0n;
  /** Highest acked_through seen on this stream. */
  through = 0n;
  /** Items sent at one seq, on this stream or an earlier one of the launch. */
  readonly sent: Map<bigint, SentItem>;
  /** Every item sent on this stream, with how often; a seq sent again is a redelivery. */
  readonly sentHere = new Map<bigint, number>();
  readonly outcomes: SeenOutcome[] = [];
  readonly acks: SeenAck[] = [];
  /** Broken ack rules (acked_through going down or past what was sent). */
  readonly ackProblems: string[] = [];
  /** Set when the stream failed or the plugin ended it. */
  streamEnd: string | undefined;
  private waiters: Array<() => boolean> = [];
  private ended = false;

  constructor(
    private readonly stream: DeliverStream,
    /** The `sent` map of the launch's earlier stream, when this one replaces it. */
    earlier?: AckLog,
  ) {
    this.sent = earlier?.sent ?? new Map();
    stream.on("data", (r: DeliverResponse) => this.onAck(r));
    stream.on("error", (e: Error) => this.onEnd(`the Deliver stream failed: ${messageOf(e)}`));
    stream.on("end", () => this.onEnd("the plugin ended the Deliver stream"));
  }

  /** The highest seq sent on any stream of the launch. */
  get launchSentThrough(): bigint {
    let high = 0n;
    for (const seq of this.sent.keys()) if (seq > high) high = seq;
    return high;
  }

  /** Sends `items` as one DeliverRequest. */
  send(items: readonly ItemInit[]): void {
    for (const item of items) {
      this.sent.set(item.seq, "payload" in item ? { case: "payload", kind: item.payload.kind, init: item } : { case: "forget", init: item });
      this.sentHere.set(item.seq, (this.sentHere.get(item.seq) ?? 0) + 1);
      if (item.seq > this.sentThrough) this.sentThrough = item.seq;
    }
    this.stream.write({ items: items.map(toWire) });
  }

  /**
   * Resolves once everything through `seq` is acked. Rejects on a broken ack
   * rule, a broken stream, or when no ack advanced for `timeoutMs`: a plugin
   * that is slow but making progress is busy, not stuck.
   */
  until(seq: bigint, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      let progress = this.through;
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== done);
          reject(new CheckFailure(this.stalled(seq, timeoutMs)));
        }, timeoutMs);
      };
      const done = (): boolean => {
        if (this.ackProblems.length > 0) reject(new CheckFailure(this.ackProblems[0]!));
        else if (this.through >= seq) resolve();
        else if (this.streamEnd) reject(new CheckFailure(`${this.streamEnd} before acking seq ${seq}`));
        else {
          if (this.through > progress) {
            progress = this.through;
            arm();
          }
          return false;
        }
        clearTimeout(timer);
        return true;
      };
      if (done()) return;
      this.waiters.push(done);
      arm();
    });
  }

  /** Half-closes the stream, once; the plugin should end its side. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.stream.end();
  }

  private stalled(seq: bigint, timeoutMs: number): string {
    const next = this.through + 1n;
    const item = this.sent.get(next);
    const advice =
      item?.case === "forget"
        ? "A peer_forgotten item is sequenced like a payload: apply it in seq order and ack it, also when it is the last item of a batch or the only one"
        : "Ack every item once it is applied, whenever the queue drains and at least every 512 items";
    return (
      `no ack through seq ${seq}: none advanced for ${timeoutMs} ms (${this.acks.length} ack(s), the last through ${this.through}); ` +
      `the first item never acked is seq ${next}, ${describeItem(item)}. ${advice}`
    );
  }

  private onAck(r: DeliverResponse): void {
    const previous = this.through;
    if (r.ackedThrough < previous) {
      this.ackProblems.push(`acked_through went down from ${previous} to ${r.ackedThrough}; acks are cumulative and never go back`);
    } else if (r.ackedThrough > this.sentThrough) {
      this.ackProblems.push(
        this.sentThrough === 0n
          ? `an ack (acked_through=${r.ackedThrough}) came on a Deliver stream before any item was sent on it; ack on a stream only once an item has arrived on it`
          : `an ack says acked_through=${r.ackedThrough}, but the highest seq sent on this stream was ${this.sentThrough}; ack only items that have been applied, and on each stream at most the highest seq it carried`,
      );
    }
    this.acks.push({
      ackedThrough: r.ackedThrough,
      previousThrough: previous,
      outcomeSeqs: r.outcomes.map((o) => o.seq),
      at: performance.now(),
      sentThrough: this.sentThrough,
    });
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

/**
 * What is wrong with where outcomes arrived, one phrase per problem: an
 * outcome names a seq that was sent, comes with the ack that first covers it
 * (`previous acked_through < seq <= acked_through`), appears once, and
 * outcomes in one ack are in seq order.
 */
export function outcomeProblems(outcomes: readonly SeenOutcome[], sent: ReadonlyMap<bigint, SentItem>): string[] {
  const problems: string[] = [];
  const seen = new Set<bigint>();
  let previous: { seq: bigint; ackedThrough: bigint } | undefined;
  for (const { outcome, ackedThrough, previousThrough } of outcomes) {
    const seq = outcome.seq;
    if (!sent.has(seq)) problems.push(`an outcome for seq ${seq}, which was never sent`);
    else if (seq > ackedThrough) problems.push(`the outcome for seq ${seq} came in an ack through ${ackedThrough}; send it with the ack that covers its item`);
    else if (seq <= previousThrough) problems.push(`the outcome for seq ${seq} came after an earlier ack (through ${previousThrough}) already covered it`);
    if (seen.has(seq)) problems.push(`two outcomes for seq ${seq}`);
    if (previous && previous.ackedThrough === ackedThrough && seq < previous.seq) {
      problems.push(`outcomes out of seq order within one ack (${previous.seq} before ${seq})`);
    }
    seen.add(seq);
    previous = { seq, ackedThrough };
  }
  return problems;
}

/** Up to three problems in one phrase, with a count of the rest. */
export function firstProblems(problems: readonly string[]): string {
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : "";
  return `${problems.slice(0, 3).join("; ")}${more}`;
}
