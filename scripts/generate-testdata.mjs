#!/usr/bin/env node
// Writes sdk/testdata/vectors.json, the test vectors every SDK's tests read
// (TS: sdk/test/testdata.test.ts; Python: sdk/python/tests/test_testdata.py;
// Go: sdk/go/testdata_test.go; Rust: sdk/rust/src/testdata.rs), so the four
// SDKs stay byte-compatible with the host. Made from the TS contract
// (@plugwire/proto, after npm run build): protobuf-es encodes each message,
// the hand-written codec of the hot messages (proto/src/codec.ts) must give
// the same bytes, and the JSON is protobuf's canonical JSON mapping of it.
//
//   node scripts/generate-testdata.mjs           write the file
//   node scripts/generate-testdata.mjs --check   exit 1 if the file is not what it would write
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary, toJson } from "@bufbuild/protobuf";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const proto = await import(join(root, "proto", "dist", "index.js"));
const pb = await import(join(root, "proto", "dist", "gen", "plugwire", "v1", "plugin_pb.js"));
const codec = await import(join(root, "proto", "dist", "codec.js"));
const { parseHandshake } = await import(join(root, "host", "dist", "src", "handshake", "parse.js"));
const out = join(root, "sdk", "testdata", "vectors.json");

const peer = (b) => new Uint8Array(32).fill(b);
const utf8 = (s) => new TextEncoder().encode(s);
const hex = (bytes) => Buffer.from(bytes).toString("hex");

const payload = (seq, src, kind, body, redelivered = false) => ({ seq: BigInt(seq), redelivered, item: { case: "payload", value: { src, kind, body } } });
const forget = (seq, nodeId, redelivered = false) => ({ seq: BigInt(seq), redelivered, item: { case: "peerForgotten", value: { nodeId } } });
const send = (p, frame) => ({ effect: { case: "sendDirect", value: { peer: p, frame } } });

const messages = [
  ["DeliverRequest", "empty (a keep-alive; carries no items)", {}],
  ["DeliverRequest", "one payload", { items: [payload(1, peer(0xa1), "counter.hit", utf8("hit"))] }],
  ["DeliverRequest", "a payload with an empty body", { items: [payload(2, peer(0xa1), "counter.hit", new Uint8Array())] }],
  [
    "DeliverRequest",
    "a batch: payloads, a forgotten peer in seq order among them, a redelivered payload",
    {
      items: [
        payload(7, peer(0xa1), "counter.hit", utf8("a")),
        forget(8, peer(0xa1)),
        payload(9, peer(0xb2), "counter.ping", utf8("hi"), true),
      ],
    },
  ],
  ["DeliverRequest", "a seq above 2^32 and 2^53 (uint64 on the wire, a string in JSON)", { items: [payload("9007199254740993", peer(0x01), "k", utf8("x"))] }],
  ["DeliverRequest", "a redelivered forget", { items: [forget(3, peer(0xc3), true)] }],
  ["DeliverResponse", "a cumulative ack with no outcomes (every item handled, no effects)", { ackedThrough: 9n }],
  ["DeliverResponse", "an ack of seq 0 (nothing handled yet) is all defaults: no bytes", { ackedThrough: 0n }],
  [
    "DeliverResponse",
    "an ack with the effects of one item (sent when the host reads the ack)",
    { ackedThrough: 9n, outcomes: [{ seq: 9n, effects: [send(peer(0xb2), utf8("pong:hi"))] }] },
  ],
  [
    "DeliverResponse",
    "a handler error on one item and effects on another",
    {
      ackedThrough: 12n,
      outcomes: [
        { seq: 10n, error: { message: "boom" } },
        { seq: 12n, effects: [send(peer(0x01), utf8("a")), send(peer(0x02), new Uint8Array())] },
      ],
    },
  ],
  ["SnapshotResponse", "snapshot header (the first message of the stream)", { part: { case: "header", value: { id: "example.counter", version: 1, appliedSeq: 7n, sizeBytes: 13n } } }],
  ["SnapshotResponse", "snapshot chunk", { part: { case: "chunk", value: utf8('{"a1":5,"b2":') } }],
  ["SnapshotResponse", "an empty chunk", { part: { case: "chunk", value: new Uint8Array() } }],
  ["RestoreRequest", "restore header", { part: { case: "header", value: { id: "example.counter", version: 2, appliedSeq: 4294967296n, sizeBytes: 0n } } }],
  ["RestoreRequest", "restore chunk", { part: { case: "chunk", value: utf8("2}") } }],
];

const vectors = messages.map(([type, name, init]) => {
  const schema = pb[`${type}Schema`];
  const message = create(schema, init);
  const bytes = toBinary(schema, message);
  // The hand-written codec the host uses for the hot messages must agree.
  const hand = type === "DeliverRequest" ? codec.encodeDeliverRequest(message) : type === "DeliverResponse" ? codec.encodeDeliverResponse(message) : undefined;
  if (hand && hex(hand) !== hex(bytes)) throw new Error(`codec.ts and protobuf-es disagree on '${name}': ${hex(hand)} vs ${hex(bytes)}`);
  return { type: `plugwire.v1.${type}`, name, hex: hex(bytes), json: toJson(schema, message) };
});

// The token line (docs/protocol.md §6): the first line on stdin, without its LF.
const tokenLines = [
  ["PLUGWIRE_TOKEN abc123", "abc123"],
  ["PLUGWIRE_TOKEN " + "Zz9~!".repeat(8), "Zz9~!".repeat(8)],
  ["PLUGWIRE_TOKEN ", null],
  ["PLUGWIRE_TOKEN a b", null],
  ["PLUGWIRE_TOKEN a\tb", null],
  ["PLUGWIRE_TOKEN\tabc", null],
  ["PLUGWIRE_TOKENabc", null],
  ["plugwire_token abc", null],
  ["TOKEN abc", null],
  ["", null],
].map(([line, token]) => {
  const parsed = proto.parseTokenLine(line);
  const got = "token" in parsed ? parsed.token : null;
  if (got !== token) throw new Error(`parseTokenLine(${JSON.stringify(line)}) gave ${got}, the table says ${token}`);
  return { line, token };
});

// PLUGWIRE_PROTOCOL_VERSIONS, the versions the host offers: the list, or null when malformed.
const versionLists = ["1", "1,2", " 1 , 2 ", "3,1", "", "1,", ",1", "a", "1;2", "-1", "1.0", "0x1", "4294967295", "4294967296", "\t2\t"].map((value) => ({
  value,
  versions: proto.parseProtocolVersions(value) ?? null,
}));

// Deliver streams: batches (DeliverRequests) given to one SDK delivery loop,
// in order, and what it must do with them. The plugin under test is the
// "recorder" every SDK's test defines the same way: it claims vec.hit (does
// nothing), vec.ping (SendDirect(src, "pong")) and vec.fail (SendDirect(src,
// "dropped"), then fails); a forgotten peer gets SendDirect(peer, "bye").
// calls: the handler calls, in order (item "payload" or "forget"). acks: all
// acks merged: the highest acked_through, and every outcome in seq order (an
// outcome exists only for an item with an error or effects; error: whether it
// has one, the text is the SDK's own).
const A = peer(0xa1);
const B = peer(0xb2);
const bye = (p) => ({ peer: hex(p), frame: "bye" });
const pong = (p) => ({ peer: hex(p), frame: "pong" });
const streams = [
  {
    name: "payloads and a forget run in seq order, one seq space; effects ride on the cumulative ack",
    batches: [[payload(1, A, "vec.hit", new Uint8Array()), forget(2, A), payload(3, B, "vec.ping", utf8("x"))]],
    calls: [[1, "payload"], [2, "forget"], [3, "payload"]],
    ackedThrough: 3,
    outcomes: [{ seq: 2, error: false, effects: [bye(A)] }, { seq: 3, error: false, effects: [pong(B)] }],
  },
  {
    name: "items at or below the applied seq are skipped (no call, no outcome) but acked",
    batches: [
      [payload(1, A, "vec.hit", new Uint8Array()), forget(2, A)],
      [payload(1, A, "vec.hit", new Uint8Array(), true), forget(2, A, true), payload(3, B, "vec.ping", new Uint8Array())],
    ],
    calls: [[1, "payload"], [2, "forget"], [3, "payload"]],
    ackedThrough: 3,
    outcomes: [{ seq: 2, error: false, effects: [bye(A)] }, { seq: 3, error: false, effects: [pong(B)] }],
  },
  {
    name: "a failing handler: an error outcome without its effects, acked and not retried",
    batches: [[payload(1, A, "vec.fail", new Uint8Array()), payload(2, A, "vec.hit", new Uint8Array())]],
    calls: [[1, "payload"], [2, "payload"]],
    ackedThrough: 2,
    outcomes: [{ seq: 1, error: true, effects: [] }],
  },
  {
    name: "an unclaimed kind: an error outcome, no handler call",
    batches: [[payload(1, A, "vec.unclaimed", new Uint8Array()), payload(2, B, "vec.ping", new Uint8Array())]],
    calls: [[2, "payload"]],
    ackedThrough: 2,
    outcomes: [{ seq: 1, error: true, effects: [] }, { seq: 2, error: false, effects: [pong(B)] }],
  },
  {
    name: "redelivered items after a crash are handled once, flag passed to the handler",
    batches: [[payload(1, A, "vec.ping", new Uint8Array(), true), forget(2, B, true)], [payload(3, A, "vec.hit", new Uint8Array())]],
    calls: [[1, "payload", true], [2, "forget", true], [3, "payload"]],
    ackedThrough: 3,
    outcomes: [{ seq: 1, error: false, effects: [pong(A)] }, { seq: 2, error: false, effects: [bye(B)] }],
  },
].map((c) => ({
  name: c.name,
  batches: c.batches.map((items) => hex(toBinary(pb.DeliverRequestSchema, create(pb.DeliverRequestSchema, { items })))),
  calls: c.calls.map(([seq, item, redelivered = false]) => ({ seq, item, redelivered })),
  ackedThrough: c.ackedThrough,
  outcomes: c.outcomes,
}));

// The handshake line an SDK prints once it listens (docs/protocol.md §5), LF
// included; the host's parser must read back what went in.
const handshakeLines = [
  [1, "/tmp/pw-k3x9Qa/echo-4.sock"],
  [1, "/run/user/1000/plugwire/a.b_c-d/counter-py-17.sock"],
].map(([protocolVersion, socketPath]) => {
  const line = `${proto.HANDSHAKE_PREFIX} protocol=${protocolVersion} network=unix address=${socketPath} transport=grpc\n`;
  const parsed = parseHandshake(line.slice(0, -1), [protocolVersion]);
  if (!parsed.ok || parsed.handshake.address !== socketPath || parsed.handshake.protocolVersion !== protocolVersion) {
    throw new Error(`the host does not read back the handshake line ${JSON.stringify(line)}: ${JSON.stringify(parsed)}`);
  }
  return { protocolVersion, socketPath, line };
});

const doc = {
  comment:
    "Generated by scripts/generate-testdata.mjs from @plugwire/proto; do not edit. Every SDK's tests read it. messages: hex is the protobuf encoding, json its canonical JSON mapping (bytes base64, uint64 as strings, defaults omitted); decoding hex must give json, and encoding must give hex. handshakeLines: the line an SDK prints once it listens, LF included, for a protocol version and socket path. tokenLines: the first stdin line without its LF, and the token it carries (null: refused). versionLists: PLUGWIRE_PROTOCOL_VERSIONS values and the versions they offer (null: malformed). deliverStreams: DeliverRequest batches (hex) for one delivery loop running the recorder plugin of scripts/generate-testdata.mjs (vec.hit: nothing; vec.ping: SendDirect(src, 'pong'); vec.fail: SendDirect(src, 'dropped') then fail; a forget: SendDirect(peer, 'bye')), the handler calls it must make, and its acks merged (highest acked_through; outcomes in seq order, only for items with an error or effects). limits: the wire limits of docs/protocol.md.",
  protocolVersion: proto.PROTOCOL_VERSION,
  tokenLinePrefix: proto.TOKEN_LINE_PREFIX,
  handshakePrefix: proto.HANDSHAKE_PREFIX,
  limits: {
    maxMessageBytes: proto.MAX_MESSAGE_BYTES,
    snapshotChunkBytes: proto.SNAPSHOT_CHUNK_BYTES,
    maxTokenLineBytes: proto.MAX_TOKEN_LINE_BYTES,
    maxPayloadKinds: proto.MAX_PAYLOAD_KINDS,
    maxPayloadKindLength: proto.MAX_PAYLOAD_KIND_LENGTH,
    maxSnapshotVersions: proto.MAX_SNAPSHOT_VERSIONS,
  },
  messages: vectors,
  deliverStreams: streams,
  handshakeLines,
  tokenLines,
  versionLists,
};
const text = `${JSON.stringify(doc, null, 2)}\n`;
if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(out, "utf8");
  } catch {
    /* missing */
  }
  if (current !== text) {
    console.error(`${out} is not what scripts/generate-testdata.mjs makes: run it and commit the result`);
    process.exit(1);
  }
} else {
  writeFileSync(out, text);
}
