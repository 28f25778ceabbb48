/** Delivery: acks, the unclaimed-kind rule, and the outcomes and effects acks carry. */
import { randomBytes } from "node:crypto";
import { health } from "@plugwire/proto";
import { AckLog, firstProblems, outcomeProblems, type ItemInit } from "./acks.js";
import { KNOWN_PEER, UNKNOWN_PEER } from "./host-stub.js";
import { describeExit } from "./process.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, skip, type Check, type Outcome } from "./types.js";
import { describeFailure, quote } from "./util.js";

const BATCHES = 3;
const ITEMS_PER_BATCH = 100;
export const BODY_BYTES = 24;
/** How long a broken stream may precede the plugin's exit event, in ms. */
const EXIT_NOTICE_MS = 250;

export function claimedKinds(session: Session): string[] {
  return (session.main!.description?.payloadKinds ?? []).filter((k) => k !== "");
}

/**
 * The `n`th ordinary item the kit sends at `seq`: a payload of one of the
 * claimed kinds in turn, from the known and the unknown peer in turn, with
 * random bytes; a forgotten peer for a plugin that claims no kinds (a
 * watch-only plugin gets only those from a host).
 */
export function ordinaryItem(kinds: readonly string[], seq: bigint, n: number): ItemInit {
  const peer = n % 2 === 0 ? UNKNOWN_PEER : KNOWN_PEER;
  if (kinds.length === 0) return { seq, forget: { nodeId: peer } };
  return { seq, payload: { src: peer, kind: kinds[n % kinds.length]!, body: randomBytes(BODY_BYTES) } };
}

/** "payloads of 'a', 'b'" or "peer_forgotten items (the plugin claims no kinds)", for details. */
export function ordinaryItems(kinds: readonly string[]): string {
  return kinds.length === 0 ? "peer_forgotten items (the plugin claims no kinds)" : `payloads of ${kinds.map((k) => `'${k}'`).join(", ")}`;
}

/** A kind the plugin does not claim. */
export function unclaimedKind(claimed: readonly string[]): string {
  let kind = "plugwire-check.unclaimed";
  while (claimed.includes(kind)) kind += "-x";
  return kind;
}

/** A failure message, with the plugin's exit if it died. */
export async function withExit(session: Session, message: string): Promise<string> {
  const proc = session.main!.proc;
  const exit = await proc.exitedWithin(EXIT_NOTICE_MS);
  return exit ? `${message}. The plugin crashed: it ${describeExit(exit)}.${proc.stderrHint()}` : message;
}

export const deliverCheck: Check = {
  id: "deliver",
  title: "acks every delivered item, cumulatively and in order",
  needs: ["start"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const kinds = claimedKinds(session);
    const log = new AckLog(session.main!.conn!.plugin.deliver());
    session.delivery = log;
    let seq = 0n;
    try {
      for (let batch = 0; batch < BATCHES; batch++) {
        const items: ItemInit[] = [];
        for (let i = 0; i < ITEMS_PER_BATCH; i++) {
          seq++;
          items.push(ordinaryItem(kinds, seq, Number(seq - 1n)));
        }
        log.send(items);
        await log.until(seq, session.timeoutMs);
      }
    } catch (e) {
      if (e instanceof CheckFailure) return fail(await withExit(session, e.message));
      throw e;
    }
    const errors = log.outcomes.filter((o) => o.outcome.error).length;
    const failed = errors > 0 ? ` (${errors} with a handler error; the bodies are random bytes)` : "";
    return pass(`${seq} ${ordinaryItems(kinds)} in ${BATCHES} batches, acked through ${log.through} in ${log.acks.length} ack(s)${failed}`);
  },
};

export const unclaimedKindCheck: Check = {
  id: "unclaimed-kind",
  title: "answers a payload of an unclaimed kind with an error outcome",
  needs: ["deliver"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const log = session.delivery!;
    const kind = unclaimedKind(claimedKinds(session));
    const seq = log.sentThrough + 1n;
    log.send([{ seq, payload: { src: KNOWN_PEER, kind, body: randomBytes(BODY_BYTES) } }]);
    try {
      await log.until(seq, session.timeoutMs);
    } catch (e) {
      if (e instanceof CheckFailure) return fail(await withExit(session, `after a payload of unclaimed kind '${kind}': ${e.message}`));
      throw e;
    }
    const outcome = log.outcomes.find((o) => o.outcome.seq === seq)?.outcome;
    if (!outcome?.error?.message) {
      return fail(
        `seq ${seq} of kind '${kind}' was acked without an error outcome; handle it like a failed handler: ack it with error.message such as "plugin 'NAME' does not claim payload kind '${kind}'"`,
      );
    }
    try {
      const r = await session.main!.conn!.health.check({ service: "" }, { deadlineMs: session.timeoutMs });
      if (r.status !== health.HealthCheckResponse_ServingStatus.SERVING) {
        return fail(`after the unclaimed payload, Health answered ${health.HealthCheckResponse_ServingStatus[r.status]}`);
      }
    } catch (e) {
      return fail(await withExit(session, `after the unclaimed payload, Health.Check failed: ${describeFailure(e)}`));
    }
    return pass(`seq ${seq} of kind '${kind}' acked with error ${quote(outcome.error.message, 90)}; still SERVING`);
  },
};

export const effectsCheck: Check = {
  id: "effects",
  title: "sends well-formed outcomes and effects",
  needs: ["start"],
  async run(session: Session): Promise<Outcome> {
    const log = session.delivery;
    if (!log) return skip("no payloads were delivered");
    // The outcomes of 'deliver' and 'unclaimed-kind'; 'peer-forgotten' judges those of its own items.
    const outcomes = [...log.outcomes];
    const problems = outcomeProblems(outcomes, log.sent);
    let effects = 0;
    let errors = 0;
    for (const { outcome } of outcomes) {
      if (outcome.error) errors++;
      outcome.effects.forEach((effect, i) => {
        effects++;
        if (effect.effect.case !== "sendDirect") {
          problems.push(`effect #${i} of seq ${outcome.seq} is not a known case (protocol 1 knows only send_direct)`);
        } else if (effect.effect.value.peer.length === 0) {
          problems.push(`the send_direct effect #${i} of seq ${outcome.seq} has an empty peer; set peer to the node id to send to`);
        }
      });
    }
    if (problems.length > 0) {
      return fail(`${firstProblems(problems)}. Each outcome names an item of its own ack; effects are Effect{send_direct{peer, frame}}`);
    }
    return pass(`${outcomes.length} outcome(s): ${effects} send_direct effect(s), ${errors} error(s), all for delivered seqs`);
  },
};
