/**
 * Ack cadence under a steady stream (docs/protocol.md §8): while its queue
 * stays busy, a plugin acks at least every 512 items handled or every
 * 20 ms, and again when the queue drains.
 */
import { performance } from "node:perf_hooks";
import type { ItemInit, SeenAck } from "./acks.js";
import { claimedKinds, ordinaryItem, ordinaryItems, withExit } from "./deliver.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, type Check, type Outcome } from "./types.js";
import { ms } from "./util.js";

/** Items one ack may cover at most while the queue is busy. */
export const MAX_ITEMS_PER_ACK = 512;
/** Longest time between acks while the queue is busy, in ms. */
export const ACK_INTERVAL_MS = 20;
/** The steady stream: batches written back to back, as fast as the socket takes them. */
const BATCHES = 2;
const ITEMS_PER_BATCH = 640;

/**
 * What breaks the cadence in the acks of one burst: `acks` arrived after
 * the burst was written, `before` is acked_through when it began. An ack
 * may cover at most MAX_ITEMS_PER_ACK items; two acks that cover more than
 * one item between them may be at most ACK_INTERVAL_MS + `slackMs` apart.
 */
export function cadenceProblems(acks: readonly Pick<SeenAck, "ackedThrough" | "at">[], before: bigint, slackMs: number): string[] {
  const problems: string[] = [];
  let through = before;
  let previousAt: number | undefined;
  for (const ack of acks) {
    if (ack.ackedThrough <= through) continue; // a repeat covers nothing new
    const covered = ack.ackedThrough - through;
    if (covered > BigInt(MAX_ITEMS_PER_ACK)) {
      problems.push(`one ack covered ${covered} items (${through + 1n}–${ack.ackedThrough}), over ${MAX_ITEMS_PER_ACK}`);
    }
    if (previousAt !== undefined && covered > 1n && ack.at - previousAt > ACK_INTERVAL_MS + slackMs) {
      problems.push(`${ms(ack.at - previousAt)} passed between two acks while ${covered} items were handled (seqs ${through + 1n}–${ack.ackedThrough})`);
    }
    through = ack.ackedThrough;
    previousAt = ack.at;
  }
  return problems;
}

export const ackCadenceCheck: Check = {
  id: "ack-cadence",
  title: `acks at least every ${MAX_ITEMS_PER_ACK} items or ${ACK_INTERVAL_MS} ms while busy, and when the queue drains`,
  needs: ["deliver"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const log = session.delivery!;
    const kinds = claimedKinds(session);
    const before = log.through;
    const firstAck = log.acks.length;
    let seq = log.sentThrough;
    const startedAt = performance.now();
    for (let b = 0; b < BATCHES; b++) {
      const items: ItemInit[] = [];
      for (let i = 0; i < ITEMS_PER_BATCH; i++) items.push(ordinaryItem(kinds, ++seq, i));
      log.send(items);
    }
    try {
      await log.until(seq, session.timeoutMs);
    } catch (e) {
      if (e instanceof CheckFailure) return fail(await withExit(session, `with ${BATCHES * ITEMS_PER_BATCH} items written at once: ${e.message}`));
      throw e;
    }
    const acks = log.acks.slice(firstAck);
    const problems = cadenceProblems(acks, before, session.options.exitMarginMs);
    const what = `${BATCHES} batches of ${ITEMS_PER_BATCH} ${ordinaryItems(kinds)}, written back to back`;
    if (problems.length > 0) {
      const more = problems.length > 2 ? ` (and ${problems.length - 2} more)` : "";
      return fail(
        `with ${what}: ${problems.slice(0, 2).join("; ")}${more}. While items are queued, send an ack after at most ${MAX_ITEMS_PER_ACK} handled items ` +
          `or ${ACK_INTERVAL_MS} ms, whichever comes first, not only when the queue drains or a batch ends (the host holds a bounded window of un-acked items)`,
      );
    }
    let widest = 0n;
    let through = before;
    for (const a of acks) {
      if (a.ackedThrough - through > widest) widest = a.ackedThrough - through;
      if (a.ackedThrough > through) through = a.ackedThrough;
    }
    return pass(`${what}: acked in ${acks.length} ack(s) of at most ${widest} items, all within ${ms(performance.now() - startedAt)}`);
  },
};
