/**
 * The broken fixture's modes (fixtures/broken.ts), each with the one check it
 * must fail, the checks that are skipped for it, and what the failure says.
 */
import { AFTER_DELIVER, ALL, type Mode } from "./helpers.js";

/** Launch, handshake, control calls, health, host calls and leaving. */
export const LAUNCH_MODES: Mode[] = [
  ["no-cookie-check", "cookie", []],
  ["ignore-env", "env", [], /^without PLUGWIRE_PROTOCOL_VERSIONS, it printed a handshake line and served/],
  ["max-version", "protocol-version", [], /offered "2, 1", it chose protocol=2, which it cannot speak/],
  ["bad-handshake", "handshake", ALL.filter((id) => id !== "cookie" && id !== "handshake")],
  ["two-handshakes", "handshake-once", [], /^it printed 2 handshake lines on stdout/],
  ["handshake-noise", "handshake-once", [], /1 whitespace character\(s\) " " follow its last field/],
  ["no-auth", "auth", []],
  ["bad-describe", "describe", []],
  ["no-watch", "health-watch", [], /^Health.Watch\(""\) ended \(INTERNAL: .*\) without sending a status/],
  ["host-call-no-token", "host-calls", [], /^1 of 1 host call\(s\) carried no authorization metadata/],
  ["serving-after-shutdown", "health-after-shutdown", [], /after its Shutdown reply, Health.Check still answered SERVING/],
  ["ignore-stdin", "stdin-eof", []],
  ["slow-shutdown", "shutdown", ["health-after-shutdown"]],
];

/** Delivery, reconnects, the message limit and state. */
export const DELIVERY_MODES: Mode[] = [
  ["no-ack", "deliver", AFTER_DELIVER],
  ["out-of-order-ack", "deliver", AFTER_DELIVER],
  ["ack-on-drain", "ack-cadence", [], /one ack covered 640 items \(\d+–\d+\), over 512/],
  ["ignore-forget", "peer-forgotten", [], /no ack through seq \d+: none advanced for \d+ ms .*the first item never acked is seq \d+, a peer_forgotten item/],
  ["forget-ack-ahead", "peer-forgotten", [], /which covers the forget too, but that ack had no outcome for the payload \(its error outcome came only in a later ack/],
  ["forget-not-in-applied-seq", "peer-forgotten", [], /a snapshot taken once the forget at seq \d+ was acked says applied_seq=\d+; .*a peer_forgotten item counts like a payload/],
  ["ack-old-stream", "reconnect", ["message-limit", "redelivery"], /write acks to the newest Deliver stream/],
  ["no-dedup", "redelivery", [], /came again, marked redelivered, and it ran them again: it sent outcomes for seq \d+ \(a payload of kind/],
  ["small-receive-limit", "message-limit", [], /RESOURCE_EXHAUSTED/],
  ["small-send-limit", "message-limit", [], /RESOURCE_EXHAUSTED/],
  ["crash-on-restore-garbage", "restore-garbage", ["restore-keeps-state"]],
  ["wrong-version-error", "restore-unsupported-version", []],
  ["restore-dirty", "restore-keeps-state", [], /after the refused restores of 'restore-unsupported-version' and 'restore-garbage', applied_seq became \d+/],
];
