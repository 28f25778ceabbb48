/**
 * The shared test vectors (sdk/testdata/vectors.json), read here as every
 * other SDK's tests read them: the file is what scripts/generate-testdata.mjs
 * makes from the contract, and the TS side (protobuf-es, the hand-written
 * codec of the hot messages, the token line and protocol-version parsers)
 * decodes and encodes each vector exactly.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { create, fromBinary, fromJson, toBinary, toJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { DeliveryProcessor, type Item } from "../src/delivery.js";
import { handshakeLine } from "../src/serve.js";
import * as pb from "@plugwire/proto";
import {
  MAX_MESSAGE_BYTES,
  decodeDeliverRequest,
  decodeDeliverResponse,
  encodeDeliverRequest,
  encodeDeliverResponse,
  MAX_TOKEN_LINE_BYTES,
  PROTOCOL_VERSION,
  SNAPSHOT_CHUNK_BYTES,
  TOKEN_LINE_PREFIX,
  HANDSHAKE_PREFIX,
  parseProtocolVersions,
  parseTokenLine,
} from "@plugwire/proto";

const repo = join(fileURLToPath(new URL(".", import.meta.url)), "..", "..", "..");

interface Stream {
  name: string;
  batches: string[];
  calls: { seq: number; item: string; redelivered: boolean }[];
  ackedThrough: number;
  outcomes: { seq: number; error: boolean; effects: { peer: string; frame: string }[] }[];
}

interface Vectors {
  deliverStreams: Stream[];
  handshakeLines: { protocolVersion: number; socketPath: string; line: string }[];
  protocolVersion: number;
  tokenLinePrefix: string;
  handshakePrefix: string;
  limits: Record<string, number>;
  messages: { type: string; name: string; hex: string; json: JsonValue }[];
  tokenLines: { line: string; token: string | null }[];
  versionLists: { value: string; versions: number[] | null }[];
}

const vectors = JSON.parse(readFileSync(join(repo, "sdk", "testdata", "vectors.json"), "utf8")) as Vectors;

function schemaOf(type: string): DescMessage {
  const schema = (pb as unknown as Record<string, DescMessage>)[`${type.replace(/^plugwire\.v1\./, "")}Schema`];
  assert.ok(schema, `no schema for ${type}`);
  return schema;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

const CLAIMED = ["vec.hit", "vec.ping", "vec.fail"];
const effect = (peer: Uint8Array, text: string): pb.Effect =>
  create(pb.EffectSchema, { effect: { case: "sendDirect", value: { peer, frame: new TextEncoder().encode(text) } } });

describe("sdk/testdata/vectors.json", () => {
  it("is what scripts/generate-testdata.mjs makes (run it and commit after a contract change)", () => {
    execFileSync(process.execPath, [join(repo, "scripts", "generate-testdata.mjs"), "--check"], { stdio: "pipe", timeout: 60_000 });
  });

  it("covers every kind of vector", () => {
    const types = new Set(vectors.messages.map((m) => m.type));
    for (const t of ["DeliverRequest", "DeliverResponse", "SnapshotResponse", "RestoreRequest"]) assert.ok(types.has(`plugwire.v1.${t}`), t);
    assert.ok(vectors.tokenLines.some((l) => l.token === null) && vectors.tokenLines.some((l) => l.token !== null));
    assert.ok(vectors.versionLists.some((l) => l.versions === null) && vectors.versionLists.some((l) => l.versions !== null));
    assert.ok(vectors.deliverStreams.length > 0);
  });

  for (const v of vectors.messages) {
    it(`${v.type}: ${v.name}`, () => {
      const schema = schemaOf(v.type);
      const bytes = Buffer.from(v.hex, "hex");
      assert.deepEqual(toJson(schema, fromBinary(schema, bytes)), v.json, "decoding hex gives json");
      assert.equal(hex(toBinary(schema, fromJson(schema, v.json))), v.hex, "encoding json gives hex");
      if (v.type === "plugwire.v1.DeliverRequest") {
        const m = decodeDeliverRequest(bytes);
        assert.deepEqual(toJson(pb.DeliverRequestSchema, m), v.json, "the hand-written codec decodes it");
        assert.equal(hex(encodeDeliverRequest(m)), v.hex, "and encodes it");
      }
      if (v.type === "plugwire.v1.DeliverResponse") {
        const m = decodeDeliverResponse(bytes);
        assert.deepEqual(toJson(pb.DeliverResponseSchema, m), v.json, "the hand-written codec decodes it");
        assert.equal(hex(encodeDeliverResponse(m)), v.hex, "and encodes it");
      }
    });
  }

  // The processor of sdk/src/delivery.ts, with a runner that does what serve()'s
  // does (an unclaimed kind throws) for the vectors' recorder plugin.
  for (const v of vectors.deliverStreams) {
    it(`Deliver stream: ${v.name}`, async () => {
      const calls: Stream["calls"] = [];
      const processor = new DeliveryProcessor(
        (item: Item) => {
          calls.push({ seq: item.seq, item: item.forgotten ? "forget" : "payload", redelivered: item.redelivered });
          if (item.forgotten) return [effect(item.forgotten, "bye")];
          if (!CLAIMED.includes(item.payload.kind)) {
            calls.pop(); // serve() throws before the handler runs
            throw new Error(`plugin 'recorder' does not claim payload kind '${item.payload.kind}'`);
          }
          if (item.payload.kind === "vec.ping") return [effect(item.payload.src, "pong")];
          if (item.payload.kind === "vec.fail") throw new Error("vec.fail fails");
          return [];
        },
        () => {},
      );
      const acks: pb.DeliverResponse[] = [];
      processor.attach((r) => acks.push(r));
      for (const batch of v.batches) {
        const request = fromBinary(pb.DeliverRequestSchema, Buffer.from(batch, "hex"));
        processor.push(request);
        const last = Math.max(...request.items.map((i) => Number(i.seq)));
        // Each batch is applied before the next arrives, as when the host redelivers on a new stream.
        for (let i = 0; i < 500 && processor.appliedSeq < last; i++) await sleep(10);
        assert.ok(processor.appliedSeq >= last, `batch through seq ${last} applied`);
      }
      for (let i = 0; i < 500 && (acks.at(-1)?.ackedThrough ?? 0n) < BigInt(v.ackedThrough); i++) await sleep(10);
      await processor.close();
      assert.deepEqual(calls, v.calls);
      const throughs = acks.map((a) => Number(a.ackedThrough));
      assert.deepEqual(throughs, [...throughs].sort((a, b) => a - b), "acks never go down");
      assert.equal(throughs.at(-1), v.ackedThrough);
      const outcomes = acks.flatMap((a) =>
        a.outcomes.map((o) => ({
          seq: Number(o.seq),
          error: o.error !== undefined,
          effects: o.effects.map((e) => ({ peer: hex(e.effect.value!.peer), frame: new TextDecoder().decode(e.effect.value!.frame) })),
        })),
      );
      assert.deepEqual(outcomes, v.outcomes);
    });
  }

  it("handshake lines", () => {
    assert.ok(vectors.handshakeLines.length > 0);
    for (const { protocolVersion, socketPath, line } of vectors.handshakeLines) assert.equal(handshakeLine(protocolVersion, socketPath), line);
  });

  it("token lines", () => {
    for (const { line, token } of vectors.tokenLines) {
      const parsed = parseTokenLine(line);
      assert.equal("token" in parsed ? parsed.token : null, token, JSON.stringify(line));
    }
  });

  it("protocol version lists", () => {
    for (const { value, versions } of vectors.versionLists) assert.deepEqual(parseProtocolVersions(value) ?? null, versions, JSON.stringify(value));
  });

  it("constants and limits", () => {
    assert.equal(vectors.protocolVersion, PROTOCOL_VERSION);
    assert.equal(vectors.tokenLinePrefix, TOKEN_LINE_PREFIX);
    assert.equal(vectors.handshakePrefix, HANDSHAKE_PREFIX);
    assert.equal(vectors.limits.maxMessageBytes, MAX_MESSAGE_BYTES);
    assert.equal(vectors.limits.snapshotChunkBytes, SNAPSHOT_CHUNK_BYTES);
    assert.equal(vectors.limits.maxTokenLineBytes, MAX_TOKEN_LINE_BYTES);
  });
});
