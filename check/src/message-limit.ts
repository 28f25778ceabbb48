/**
 * The 16 MiB message limit, both ways (docs/protocol.md §0): the plugin
 * accepts a Deliver message carrying the largest payload a host sends, and
 * may answer it with an ack of nearly the same size.
 */
import { randomBytes } from "node:crypto";
import { MAX_MESSAGE_BYTES } from "@plugwire/proto";
import { claimedKinds, unclaimedKind, withExit } from "./deliver.js";
import { KNOWN_PEER } from "./host-stub.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, type Check, type Outcome } from "./types.js";

/** The largest payload a host sends: src, kind and body together (docs/protocol.md §13). */
export const MAX_PAYLOAD_BYTES = MAX_MESSAGE_BYTES - 1024;
/** Claimed kinds that get a largest payload each: a plugin may answer only some kinds with effects. */
const MAX_KINDS = 3;

const MIB = 1024 * 1024;

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

const LARGEST = "16 MiB − 1 KiB";

export const messageLimitCheck: Check = {
  id: "message-limit",
  title: "accepts a message of nearly 16 MiB, and may answer with one",
  needs: ["reconnect"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const log = session.delivery!;
    const claimed = claimedKinds(session);
    // A plugin that claims no kinds still receives the message, and answers it with an error outcome.
    const kinds = claimed.length > 0 ? claimed.slice(0, MAX_KINDS) : [unclaimedKind(claimed)];
    let seq = log.sentThrough;
    let largestReply = 0;
    try {
      for (const kind of kinds) {
        const body = randomBytes(MAX_PAYLOAD_BYTES - KNOWN_PEER.length - Buffer.byteLength(kind));
        log.send([{ seq: ++seq, payload: { src: KNOWN_PEER, kind, body } }]);
        await log.until(seq, session.timeoutMs);
        const outcome = log.outcomes.find((o) => o.outcome.seq === seq)?.outcome;
        const reply = (outcome?.effects ?? []).reduce((n, e) => n + (e.effect.case === "sendDirect" ? e.effect.value.frame.length : 0), 0);
        largestReply = Math.max(largestReply, reply);
      }
    } catch (e) {
      if (!(e instanceof CheckFailure)) throw e;
      return fail(
        await withExit(
          session,
          `a payload of ${LARGEST} (src + kind + body, the largest a host sends), in a Deliver message just under 16 MiB, broke delivery: ${e.message}. ` +
            `Let both ends of every channel receive and send messages of up to 16 MiB (16777216 bytes); most gRPC libraries receive only 4 MiB unless told ` +
            `(Go: grpc.MaxRecvMsgSize and grpc.MaxSendMsgSize on the server; Python: grpc.max_receive_message_length and grpc.max_send_message_length)`,
        ),
      );
    } finally {
      log.end(); // the delivery phase is over
    }
    const answered =
      largestReply > 4 * MIB
        ? `; it answered with ${mib(largestReply)} of effects, so its sending side was tried too`
        : "; its answers were small, so its sending side was not tried";
    return pass(`${kinds.length} payload(s) of ${LARGEST} (${kinds.map((k) => `'${k}'`).join(", ")}) acked${answered}`);
  },
};
