/**
 * A second Deliver stream, as a host opens after reconnecting (docs/protocol.md
 * §8): the plugin acks on the new stream only once an item arrives on it,
 * its first ack there covers everything it has handled, and items it already
 * applied that come again (marked redelivered) are skipped, not run again.
 */
import { AckLog, describeItem, type ItemInit } from "./acks.js";
import { claimedKinds, ordinaryItem, withExit } from "./deliver.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, type Check, type Outcome } from "./types.js";
import { describeFailure, quote } from "./util.js";

/** Items at the end of the first stream sent again on the second: the forgets and the unclaimed payloads of 'peer-forgotten' among them. */
const REDELIVERED_TAIL = 7;
/** New items after them. */
const NEW_ITEMS = 2;

export const reconnectCheck: Check = {
  id: "reconnect",
  title: "acks on a second Deliver stream, its first ack covering everything already handled",
  needs: ["deliver"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const old = session.delivery!;
    old.end(); // the first stream is over, as after a lost connection
    const conn = session.main!.conn!;
    const log = new AckLog(conn.plugin.deliver(), old);
    session.delivery = log;
    const handled = old.through;
    const last = old.launchSentThrough;
    const from = last - BigInt(REDELIVERED_TAIL) + 1n > 1n ? last - BigInt(REDELIVERED_TAIL) + 1n : 1n;
    try {
      // A round trip before the first item: a plugin that acks a new stream at once has done so by now.
      await conn.health.check({ service: "" }, { deadlineMs: session.timeoutMs }).catch((e: unknown) => {
        throw new CheckFailure(`Health.Check failed: ${describeFailure(e)}`);
      });
      const items: ItemInit[] = [];
      for (let seq = from; seq <= last; seq++) items.push({ ...old.sent.get(seq)!.init, redelivered: true });
      const kinds = claimedKinds(session);
      for (let n = 0; n < NEW_ITEMS; n++) items.push(ordinaryItem(kinds, last + 1n + BigInt(n), n));
      log.send(items);
      session.redelivered = { seqs: items.filter((it) => it.redelivered).map((it) => it.seq), log };
      await log.until(last + BigInt(NEW_ITEMS), session.timeoutMs);
    } catch (e) {
      if (!(e instanceof CheckFailure)) throw e;
      const hint = log.acks.length === 0 && !log.streamEnd ? "; after a reconnect, write acks to the newest Deliver stream, not the one you first got" : "";
      return fail(await withExit(session, `on a second Deliver stream: ${e.message}${hint}`));
    }
    const first = log.acks[0]!;
    if (first.ackedThrough < handled) {
      return fail(
        `the first ack on a second Deliver stream said acked_through=${first.ackedThrough}, but the plugin had handled and acked through ${handled} on the first one; ` +
          `the first ack on a new stream covers everything the process has handled (up to the highest seq that stream carried)`,
      );
    }
    return pass(
      `a second stream carried seqs ${from}–${last} again (redelivered) and ${last + 1n}–${last + BigInt(NEW_ITEMS)} new; ` +
        `the first ack on it was through ${first.ackedThrough}, the last through ${log.through}`,
    );
  },
};

export const redeliveryCheck: Check = {
  id: "redelivery",
  title: "skips items it already applied when they are delivered again",
  // The redelivered items include payloads of an unclaimed kind, which any plugin that runs them answers with an error outcome.
  needs: ["reconnect", "unclaimed-kind"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const { seqs, log } = session.redelivered!;
    const again = log.outcomes.filter((o) => seqs.includes(o.outcome.seq));
    if (again.length > 0) {
      const shown = again.slice(0, 3).map(({ outcome }) => {
        const item = describeItem(log.sent.get(outcome.seq));
        const what = outcome.error ? `error ${quote(outcome.error.message, 60)}` : `${outcome.effects.length} effect(s)`;
        return `seq ${outcome.seq} (${item}): ${what}`;
      });
      return fail(
        `${again.length} item(s) it had already applied came again, marked redelivered, and it ran them again: it sent outcomes for ${shown.join("; ")}. ` +
          `An item whose seq is at or below the last seq the process applied (handled, or covered by a restored snapshot) is a duplicate: ` +
          `skip its handler and let the cumulative ack cover it`,
      );
    }
    const kinds = [...new Set(seqs.map((s) => describeItem(log.sent.get(s))))];
    return pass(`${seqs.length} redelivered items it had applied (${kinds.join(", ")}) were skipped: no outcome for any of them`);
  },
};
