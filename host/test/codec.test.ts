// The hand-written codec of the hot messages must agree with protobuf-es,
// byte for byte and message for message, on any input.
import test from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { create, equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  DeliverRequestSchema,
  DeliverResponseSchema,
  MAX_EFFECTS_PER_ACK,
  decodeDeliverRequest,
  decodeDeliverResponse,
  encodeDeliverRequest,
  encodeDeliverResponse,
  encodeRawDeliveryItems,
  effectCount,
  preEncodedDeliverRequest,
  type RawDeliveryItem,
} from "@plugwire/proto";

const u64 = fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 2n ** 32n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const bytes = fc.uint8Array({ maxLength: 300 });
const text = fc.string({ unit: "grapheme", maxLength: 40 });

const payload = fc.record({ src: bytes, kind: text, body: bytes }).map((value) => ({ case: "payload" as const, value }));
const forgotten = fc.record({ nodeId: bytes }).map((value) => ({ case: "peerForgotten" as const, value }));
const item = fc.record({
  seq: u64,
  redelivered: fc.boolean(),
  item: fc.oneof({ weight: 4, arbitrary: payload }, { weight: 1, arbitrary: forgotten }, { weight: 1, arbitrary: fc.constant({ case: undefined }) }),
});
const deliverRequest = fc.array(item, { maxLength: 20 }).map((items) => create(DeliverRequestSchema, { items }));

const effect = fc.oneof(
  fc.record({ peer: bytes, frame: bytes }).map((value) => ({ effect: { case: "sendDirect" as const, value } })),
  fc.constant({}),
);
const outcome = fc.record(
  { seq: u64, error: fc.record({ message: text }), effects: fc.array(effect, { maxLength: 4 }) },
  { requiredKeys: ["seq", "effects"] },
);
const deliverResponse = fc
  .record({ ackedThrough: u64, outcomes: fc.array(outcome, { maxLength: 10 }) })
  .map((init) => create(DeliverResponseSchema, init));

const RUNS = { numRuns: 500, seed: 4242 };

test("encodeDeliverRequest writes the bytes protobuf-es writes", () => {
  fc.assert(
    fc.property(deliverRequest, (m) => {
      assert.deepEqual(new Uint8Array(encodeDeliverRequest(m)), toBinary(DeliverRequestSchema, m));
    }),
    RUNS,
  );
});

test("decodeDeliverRequest reads what protobuf-es reads", () => {
  fc.assert(
    fc.property(deliverRequest, (m) => {
      const wire = toBinary(DeliverRequestSchema, m);
      assert.ok(equals(DeliverRequestSchema, decodeDeliverRequest(wire), fromBinary(DeliverRequestSchema, wire)));
    }),
    RUNS,
  );
});

test("encodeDeliverResponse writes the bytes protobuf-es writes", () => {
  fc.assert(
    fc.property(deliverResponse, (m) => {
      assert.deepEqual(new Uint8Array(encodeDeliverResponse(m)), toBinary(DeliverResponseSchema, m));
    }),
    RUNS,
  );
});

test("decodeDeliverResponse reads what protobuf-es reads", () => {
  fc.assert(
    fc.property(deliverResponse, (m) => {
      const wire = toBinary(DeliverResponseSchema, m);
      assert.ok(equals(DeliverResponseSchema, decodeDeliverResponse(wire), fromBinary(DeliverResponseSchema, wire)));
    }),
    RUNS,
  );
});

test("the decoders skip unknown fields of every wire type", () => {
  // field 9 varint, field 10 fixed64, field 11 bytes, field 12 fixed32, then a payload
  const unknown = Uint8Array.from([0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 2, 9, 9, 0x65, 1, 2, 3, 4]);
  const known = toBinary(
    DeliverRequestSchema,
    create(DeliverRequestSchema, { items: [{ seq: 7n, item: { case: "payload", value: { kind: "k" } } }] }),
  );
  const wire = new Uint8Array([...unknown, ...known]);
  const decoded = decodeDeliverRequest(wire);
  assert.equal(decoded.items.length, 1);
  assert.equal(decoded.items[0]!.seq, 7n);
  assert.equal(decoded.items[0]!.item.case === "payload" && decoded.items[0]!.item.value.kind, "k");
  assert.equal(decodeDeliverResponse(unknown).outcomes.length, 0);
});

test("the decoders reject truncated input instead of reading past it", () => {
  const wire = toBinary(DeliverRequestSchema, create(DeliverRequestSchema, { items: [{ seq: 1n, item: { case: "payload", value: { body: new Uint8Array(50) } } }] }));
  assert.throws(() => decodeDeliverRequest(wire.subarray(0, wire.length - 10)), /past the end|premature end/);
});

test("decodeDeliverResponse builds at most its effect budget and reports the true counts past it", () => {
  const effect = (n: number) => ({ effect: { case: "sendDirect" as const, value: { peer: new Uint8Array([n]), frame: new Uint8Array(0) } } });
  const message = create(DeliverResponseSchema, {
    ackedThrough: 3n,
    outcomes: [
      { seq: 1n, effects: Array.from({ length: 5 }, (_, i) => effect(i)) },
      { seq: 2n, error: { message: "failed" } },
      { seq: 3n, effects: Array.from({ length: 10 }, (_, i) => effect(i)) },
    ],
  });
  const bytes = encodeDeliverResponse(message);
  // Within the budget: exactly what protobuf-es decodes, and the counts are the lengths.
  const whole = decodeDeliverResponse(bytes);
  assert.ok(equals(DeliverResponseSchema, whole, fromBinary(DeliverResponseSchema, bytes)));
  assert.deepEqual(whole.outcomes.map(effectCount), [5, 0, 10]);
  // Past it: 8 effects built in all, but every outcome with effects reports what it carried.
  const capped = decodeDeliverResponse(bytes, 8);
  assert.deepEqual(capped.outcomes.map((o) => o.effects.length), [5, 0, 3]);
  assert.deepEqual(capped.outcomes.map(effectCount), [5, 0, 10]);
  assert.equal(capped.ackedThrough, 3n);
  assert.equal(capped.outcomes[1]!.error?.message, "failed");
  assert.equal(MAX_EFFECTS_PER_ACK, 65_536);
});

test("a 16 MiB ack of 2-byte effects decodes to at most MAX_EFFECTS_PER_ACK effects", () => {
  // Outcome {seq 1, effects: N empty effects}: each effect is the two bytes 0x1a 0x00.
  const n = 8_000_000;
  const inner = Buffer.alloc(2 + 2 * n);
  inner[0] = 0x08;
  inner[1] = 0x01;
  for (let i = 0; i < n; i++) inner[2 + 2 * i] = 0x1a;
  const lenBytes: number[] = [];
  for (let len = inner.length; ; len = Math.floor(len / 128)) {
    if (len < 128) {
      lenBytes.push(len);
      break;
    }
    lenBytes.push((len & 0x7f) | 0x80);
  }
  const bytes = Buffer.concat([Buffer.from([0x08, 0x01, 0x12, ...lenBytes]), inner]);
  const decoded = decodeDeliverResponse(bytes);
  assert.equal(decoded.outcomes[0]!.effects.length, MAX_EFFECTS_PER_ACK);
  assert.equal(effectCount(decoded.outcomes[0]!), n);
});

test("encodeRawDeliveryItems writes the bytes encodeDeliverRequest writes for the same items, and a pre-encoded request reads back as them", () => {
  const rng = (() => {
    let x = 0x9e3779b9;
    return () => ((x = (x * 1103515245 + 12345) >>> 0) / 0x100000000);
  })();
  for (let round = 0; round < 200; round++) {
    const raw: RawDeliveryItem[] = [];
    const flags = new Uint8Array(40);
    const count = 1 + Math.floor(rng() * 40);
    for (let i = 0; i < count; i++) {
      const forget = rng() < 0.2;
      raw.push({
        seq: rng() < 0.05 ? 2 ** 40 + i : 1 + Math.floor(rng() * 1e6),
        forget,
        src: new Uint8Array(rng() < 0.1 ? 0 : 32).fill(i),
        kind: forget ? "" : ["a", "kind.é", "x".repeat(200)][Math.floor(rng() * 3)]!,
        body: forget ? new Uint8Array(0) : new Uint8Array(Math.floor(rng() * 300)).fill(round),
      });
      flags[i] = rng() < 0.3 ? 1 : 0;
    }
    const message = create(DeliverRequestSchema, {
      items: raw.map((r, i) => ({
        seq: BigInt(r.seq),
        redelivered: flags[i] === 1,
        item: r.forget ? { case: "peerForgotten" as const, value: { nodeId: r.src } } : { case: "payload" as const, value: { src: r.src, kind: r.kind, body: r.body } },
      })),
    });
    const bytes = encodeRawDeliveryItems(raw, flags);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(toBinary(DeliverRequestSchema, message)), `round ${round}`);
    const pre = preEncodedDeliverRequest(bytes);
    assert.equal(encodeDeliverRequest(pre), bytes, "the serializer sends the pre-encoded bytes as they are");
    assert.deepEqual(pre.items, fromBinary(DeliverRequestSchema, bytes).items, "its items decode from those bytes");
  }
});
