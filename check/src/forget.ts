/**
 * Forgotten peers in the Deliver stream: a peer_forgotten item shares the
 * payloads' seq space, is applied in its place, is covered by the cumulative
 * ack like a payload, and counts towards a stateful plugin's applied_seq.
 */
import { randomBytes } from "node:crypto";
import { firstProblems, outcomeProblems, type ItemInit } from "./acks.js";
import { BODY_BYTES, claimedKinds, ordinaryItem, unclaimedKind, withExit } from "./deliver.js";
import { KNOWN_PEER, UNKNOWN_PEER } from "./host-stub.js";
import type { Session } from "./session.js";
import { readSnapshot } from "./stateful.js";
import { CheckFailure, fail, pass, type Check, type Outcome } from "./types.js";
import { describeFailure, quote } from "./util.js";

const IN_ORDER = "Apply items strictly in seq order, payloads and peer_forgotten alike, and ack an item only once everything before it is done";

export const peerForgottenCheck: Check = {
  id: "peer-forgotten",
  title: "applies peer_forgotten items of the Deliver stream in seq order and acks them in place",
  // The probe ahead of the first forget is a payload of an unclaimed kind, whose error outcome 'unclaimed-kind' guarantees.
  needs: ["unclaimed-kind"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const log = session.delivery!;
    const kinds = claimedKinds(session);
    const unclaimed = unclaimedKind(kinds);
    const firstOutcome = log.outcomes.length;
    let seq = log.sentThrough;
    const payload = (kind: string): ItemInit => ({ seq: ++seq, payload: { src: KNOWN_PEER, kind, body: randomBytes(BODY_BYTES) } });
    const forget = (nodeId: Uint8Array): ItemInit => ({ seq: ++seq, forget: { nodeId } });
    // A payload of a claimed kind (a forget for a plugin that claims none).
    const ordinary = (n: number): ItemInit => ordinaryItem(kinds, ++seq, n);

    // Forgets between payloads and at the end of a batch. The payload right
    // before the first forget must be acked with an error outcome; where that
    // outcome arrives shows whether the forget was acked ahead of it.
    const mixed = [ordinary(0), payload(unclaimed), forget(KNOWN_PEER), ordinary(1), forget(UNKNOWN_PEER)];
    const probe = mixed[1]!.seq;
    const firstForget = mixed[2]!.seq;
    let alone: bigint | undefined;
    let applied = "";
    // The first rule broken. The phase still ends on a payload when it can, so that the
    // 'snapshot' check that follows judges applied_seq after a payload, not after a forget.
    let problem: string | undefined;
    try {
      log.send(mixed);
      await log.until(seq, session.timeoutMs);
      problem = probeOutcomeProblem(session, probe, firstForget, unclaimed);

      // A batch of one forget: the queue drains on a forget.
      log.send([forget(KNOWN_PEER)]);
      alone = seq;
      await log.until(seq, session.timeoutMs);

      const stateful = session.main!.description?.stateful;
      if (stateful) {
        let appliedSeq: bigint | undefined;
        try {
          const snap = await readSnapshot(session.main!.conn!, session.timeoutMs);
          appliedSeq = snap.header.appliedSeq;
          // Other state than the final one: 'restore-keeps-state' offers it in restores that must be refused.
          session.earlierSnapshot = { header: snap.header, bytes: snap.bytes };
        } catch (e) {
          const why = e instanceof CheckFailure ? e.message : describeFailure(e);
          applied = `; applied_seq not checked: Snapshot failed (${why}), which 'snapshot' reports`;
        }
        if (appliedSeq !== undefined && appliedSeq !== alone) {
          problem ??=
            `a snapshot taken once the forget at seq ${alone} was acked says applied_seq=${appliedSeq}; applied_seq is the seq of the last item applied, ` +
            `and a peer_forgotten item counts like a payload: after a crash the host restores the snapshot and replays every item after applied_seq`;
        }
        if (appliedSeq !== undefined) applied = `; a snapshot then said applied_seq ${appliedSeq}`;
      }

      // Delivery goes on after forgets, for the forgotten peer too.
      log.send([ordinary(0)]);
      await log.until(seq, session.timeoutMs);
    } catch (e) {
      if (!(e instanceof CheckFailure)) throw e;
      problem ??= await withExit(session, `with peer_forgotten items in the stream: ${e.message}`);
    } finally {
      log.end(); // this stream is over; 'reconnect' opens the next one
    }
    if (problem) return fail(problem);

    const outcomes = log.outcomes.slice(firstOutcome);
    const problems = outcomeProblems(outcomes, log.sent);
    if (problems.length > 0) return fail(`${firstProblems(problems)}. ${IN_ORDER}; each outcome comes with the ack that first covers its item`);
    const forgetErrors = outcomes.filter((o) => o.outcome.error && log.sent.get(o.outcome.seq)?.case === "forget");
    const errors = forgetErrors.length > 0
      ? `; the plugin reported ${forgetErrors.length} failed forget(s), e.g. seq ${forgetErrors[0]!.outcome.seq}: ${quote(forgetErrors[0]!.outcome.error!.message, 80)}`
      : "";
    return pass(
      `forgets at seqs ${firstForget} and ${firstForget + 2n} (between payloads, last in a batch) and ${alone} (alone in a batch) acked in place; ` +
        `the payload ahead of the first forget had its outcome in the ack that covered it${applied}${errors}`,
    );
  },
};

/**
 * The probe (a payload of an unclaimed kind, right before the first forget)
 * must carry its error outcome in the ack that first covers it. A plugin that
 * acks a forget ahead of the payloads before it covers the probe too early.
 */
function probeOutcomeProblem(session: Session, probe: bigint, firstForget: bigint, kind: string): string | undefined {
  const log = session.delivery!;
  const cover = log.acks.find((a) => a.ackedThrough >= probe);
  if (!cover) return undefined; // cannot happen after until(); the ack rules are judged there
  const seen = log.outcomes.filter((o) => o.outcome.seq === probe);
  const inPlace = seen.find((o) => o.previousThrough < probe && probe <= o.ackedThrough);
  if (inPlace?.outcome.error?.message) return undefined;
  const what = `seq ${probe} (a payload of unclaimed kind '${kind}', just ahead of the forget at seq ${firstForget})`;
  if (inPlace) return `${what} was acked with an outcome that has no error; a payload of a kind the plugin does not claim is acked with error.message set`;
  const later = seen.find((o) => o.previousThrough >= probe);
  const fate = later ? `its error outcome came only in a later ack, through ${later.ackedThrough}` : "its error outcome never came";
  if (cover.ackedThrough >= firstForget) {
    return `${what} was first covered by an ack through ${cover.ackedThrough}, which covers the forget too, but that ack had no outcome for the payload (${fate}): the forget was acked before the payload ahead of it was done. ${IN_ORDER}`;
  }
  return `${what} was first covered by an ack through ${cover.ackedThrough}, which had no outcome for it (${fate}); ack a payload of an unclaimed kind with an error outcome, in the ack that covers it`;
}
