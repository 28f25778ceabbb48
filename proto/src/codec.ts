/**
 * Hand-written protobuf encoders and decoders for the two hot messages,
 * DeliverRequest (host → plugin) and DeliverResponse (plugin → host). They
 * produce exactly the bytes protobuf-es's toBinary produces and the messages
 * its fromBinary produces (unknown fields are skipped, not kept); a
 * property-based test holds them to that. The grpc binding uses them in place
 * of the reflective codec for these two message types.
 */
import type { DeliverRequest, DeliverResponse, DeliveryItem, Effect, ItemOutcome, Payload, PeerForgotten } from "./gen/plugwire/v1/plugin_pb.js";

const utf8 = new TextEncoder();
const EMPTY: Uint8Array = new Uint8Array(0);
const utf8Decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });

function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 4;
  n = Math.floor(n / 0x10000000);
  while (n > 0) {
    size++;
    n = Math.floor(n / 0x80);
  }
  return size;
}

/** Size of a uint64 varint given as bigint. */
function varint64Size(n: bigint): number {
  if (n <= 0xffffffffn) return varintSize(Number(n));
  let size = 1;
  while (n >= 0x80n) {
    size++;
    n >>= 7n;
  }
  return size;
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(n: number): void {
    while (n >= 0x80) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n = n >= 0x100000000 ? Math.floor(n / 0x80) : n >>> 7;
    }
    this.buf[this.pos++] = n;
  }

  varint64(n: bigint): void {
    if (n <= 0xffffffffn) {
      this.varint(Number(n));
      return;
    }
    while (n >= 0x80n) {
      this.buf[this.pos++] = Number(n & 0x7fn) | 0x80;
      n >>= 7n;
    }
    this.buf[this.pos++] = Number(n);
  }

  bytes(b: Uint8Array): void {
    this.varint(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
  }
}

// ---- DeliverRequest ------------------------------------------------------

/** Kinds are few and repeat: their UTF-8 bytes are cached (bounded). */
const kindBytes = new Map<string, Uint8Array>();
function encodeKind(kind: string): Uint8Array {
  let bytes = kindBytes.get(kind);
  if (bytes === undefined) {
    bytes = utf8.encode(kind);
    if (kindBytes.size >= 1024) kindBytes.clear();
    kindBytes.set(kind, bytes);
  }
  return bytes;
}

function lenField(n: number): number {
  return n > 0 ? 1 + varintSize(n) + n : 0;
}

/** Writes a DeliveryItem's `payload` field (3): the nested Payload of `inner` bytes. */
function writePayload(w: Writer, inner: number, src: Uint8Array, kind: Uint8Array, body: Uint8Array): void {
  w.buf[w.pos++] = 0x1a;
  w.varint(inner);
  if (src.byteLength > 0) {
    w.buf[w.pos++] = 0x0a;
    w.bytes(src);
  }
  if (kind.byteLength > 0) {
    w.buf[w.pos++] = 0x12;
    w.bytes(kind);
  }
  if (body.byteLength > 0) {
    w.buf[w.pos++] = 0x1a;
    w.bytes(body);
  }
}

/** Writes a DeliveryItem's `peer_forgotten` field (4): the nested PeerForgotten of `inner` bytes. */
function writeForgotten(w: Writer, inner: number, nodeId: Uint8Array): void {
  w.buf[w.pos++] = 0x22;
  w.varint(inner);
  if (nodeId.byteLength > 0) {
    w.buf[w.pos++] = 0x0a;
    w.bytes(nodeId);
  }
}

const U32_MAX = 0xffffffffn;

/** A seq as a number when it fits in 32 bits (every seq in practice), else -1 (written as bigint). */
function smallSeq(seq: bigint): number {
  return seq <= U32_MAX ? Number(seq) : -1;
}

/**
 * Per-item sizes of the batch being encoded, reused across calls (encoding
 * is synchronous): the nested message's size and the DeliveryItem's size.
 */
let innerSizes = new Int32Array(256);
let itemSizes = new Int32Array(256);
let itemKinds: Uint8Array[] = [];

/** Encodes a DeliverRequest exactly as protobuf-es toBinary would. */
export function encodeDeliverRequest(message: DeliverRequest): Buffer {
  const encoded = preEncoded(message);
  if (encoded !== undefined) return encoded;
  const items = message.items;
  const count = items.length;
  if (innerSizes.length < count) {
    innerSizes = new Int32Array(count * 2);
    itemSizes = new Int32Array(count * 2);
  }
  if (itemKinds.length < count) itemKinds = new Array<Uint8Array>(count * 2).fill(EMPTY);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const it = items[i]!;
    let size = 0;
    const seq = smallSeq(it.seq);
    if (seq > 0) size += 1 + varintSize(seq);
    else if (seq < 0) size += 1 + varint64Size(it.seq);
    if (it.redelivered) size += 2;
    let inner = 0;
    const item = it.item;
    if (item.case === "payload") {
      const p = item.value;
      const kind = encodeKind(p.kind);
      itemKinds[i] = kind;
      inner = lenField(p.src.byteLength) + lenField(kind.byteLength) + lenField(p.body.byteLength);
      size += 1 + varintSize(inner) + inner;
    } else if (item.case === "peerForgotten") {
      inner = lenField(item.value.nodeId.byteLength);
      size += 1 + varintSize(inner) + inner;
    }
    innerSizes[i] = inner;
    itemSizes[i] = size;
    total += 1 + varintSize(size) + size;
  }
  const w = new Writer(Buffer.allocUnsafe(total));
  const buf = w.buf;
  for (let i = 0; i < count; i++) {
    const it = items[i]!;
    const inner = innerSizes[i]!;
    buf[w.pos++] = 0x0a;
    w.varint(itemSizes[i]!);
    const seq = smallSeq(it.seq);
    if (seq > 0) {
      buf[w.pos++] = 0x08;
      w.varint(seq);
    } else if (seq < 0) {
      buf[w.pos++] = 0x08;
      w.varint64(it.seq);
    }
    if (it.redelivered) {
      buf[w.pos++] = 0x10;
      buf[w.pos++] = 0x01;
    }
    const item = it.item;
    if (item.case === "payload") {
      writePayload(w, inner, item.value.src, itemKinds[i]!, item.value.body);
      itemKinds[i] = EMPTY;
    } else if (item.case === "peerForgotten") {
      writeForgotten(w, inner, item.value.nodeId);
    }
  }
  return buf;
}

// ---- DeliverRequest straight from the host's queue -------------------------

/** One item of a batch as the host's delivery queue holds it (no message objects). */
export interface RawDeliveryItem {
  readonly seq: number;
  /** A forgotten peer (`src` is its node id) rather than a payload. */
  readonly forget: boolean;
  readonly src: Uint8Array;
  readonly kind: string;
  readonly body: Uint8Array;
}

const PRE_ENCODED = Symbol("plugwire.preEncodedDeliverRequest");

/**
 * Encodes a batch straight from the host's queue entries, with no message
 * objects and no bigint: the bytes encodeDeliverRequest would write for the
 * same items. `redelivered[i]` is item i's redelivered flag (non-zero: set).
 * Every seq is a safe integer (the host numbers items from 1).
 */
export function encodeRawDeliveryItems(items: readonly RawDeliveryItem[], redelivered: Uint8Array): Buffer {
  const count = items.length;
  if (innerSizes.length < count) {
    innerSizes = new Int32Array(count * 2);
    itemSizes = new Int32Array(count * 2);
  }
  if (itemKinds.length < count) itemKinds = new Array<Uint8Array>(count * 2).fill(EMPTY);
  let total = 0;
  for (let i = 0; i < count; i++) {
    const it = items[i]!;
    let size = it.seq > 0 ? 1 + varintSize(it.seq) : 0;
    if (redelivered[i]) size += 2;
    let inner: number;
    if (it.forget) {
      inner = lenField(it.src.byteLength);
    } else {
      const kind = encodeKind(it.kind);
      itemKinds[i] = kind;
      inner = lenField(it.src.byteLength) + lenField(kind.byteLength) + lenField(it.body.byteLength);
    }
    size += 1 + varintSize(inner) + inner;
    innerSizes[i] = inner;
    itemSizes[i] = size;
    total += 1 + varintSize(size) + size;
  }
  const w = new Writer(Buffer.allocUnsafe(total));
  const buf = w.buf;
  for (let i = 0; i < count; i++) {
    const it = items[i]!;
    buf[w.pos++] = 0x0a;
    w.varint(itemSizes[i]!);
    if (it.seq > 0) {
      buf[w.pos++] = 0x08;
      w.varint(it.seq);
    }
    if (redelivered[i]) {
      buf[w.pos++] = 0x10;
      buf[w.pos++] = 0x01;
    }
    if (it.forget) {
      writeForgotten(w, innerSizes[i]!, it.src);
    } else {
      writePayload(w, innerSizes[i]!, it.src, itemKinds[i]!, it.body);
      itemKinds[i] = EMPTY;
    }
  }
  return buf;
}

/**
 * A DeliverRequest whose bytes are already encoded (encodeRawDeliveryItems):
 * the grpc serializer sends them as they are. Its `items` are decoded from
 * those bytes on first read, for code that looks inside (tests, the model).
 */
export function preEncodedDeliverRequest(bytes: Buffer): DeliverRequest {
  let items: DeliveryItem[] | undefined;
  const request = {
    $typeName: "plugwire.v1.DeliverRequest" as const,
    get items(): DeliveryItem[] {
      return (items ??= decodeDeliverRequest(bytes).items);
    },
    set items(value: DeliveryItem[]) {
      items = value;
      delete (request as { [PRE_ENCODED]?: Buffer })[PRE_ENCODED];
    },
    [PRE_ENCODED]: bytes,
  };
  return request as DeliverRequest;
}

/** The bytes of a request made by preEncodedDeliverRequest, if it is one. */
function preEncoded(message: DeliverRequest): Buffer | undefined {
  return (message as { [PRE_ENCODED]?: Buffer })[PRE_ENCODED];
}

/** Decoded kinds kept for reuse (round robin), and the longest kind kept. */
const KIND_CACHE = 8;
const KIND_CACHE_MAX_BYTES = 128;
const kindCacheBytes: Uint8Array[] = Array.from({ length: KIND_CACHE }, () => new Uint8Array(KIND_CACHE_MAX_BYTES + 1));
const kindCacheStrings: string[] = new Array<string>(KIND_CACHE).fill("");
let kindCacheNext = 0;

class Reader {
  pos = 0;
  /** Fields read so far, against `maxFields` (a server's budget for a request, see grpc.ts). */
  fields = 0;
  constructor(
    readonly buf: Uint8Array,
    /** Where the message being read ends: no read goes past it (set per nested message). */
    public end = buf.byteLength,
    readonly maxFields = Infinity,
  ) {}

  /** Reads a field's tag, counting the field against the budget. */
  tag(): number {
    if (++this.fields > this.maxFields) throw new Error(`a DeliverRequest holds at most ${this.maxFields} protobuf fields`);
    return this.varint();
  }

  varint(): number {
    let result = 0;
    let shift = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("premature end of varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * shift;
      if (b < 0x80) return result;
      shift *= 0x80;
    }
    throw new Error("varint is too long");
  }

  varint64(): bigint {
    const start = this.pos;
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error("premature end of varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, result);
      shift += 7n;
    }
    this.pos = start;
    throw new Error("varint is too long");
  }

  /** A uint64 that usually fits in 2^53: fast path with a bigint fallback. */
  uint64(): bigint {
    const start = this.pos;
    // Up to 7 bytes encode < 2^49, exact in a double.
    for (let i = 0; i < 7 && this.pos < this.end; i++) {
      if (this.buf[this.pos + i]! < 0x80) return BigInt(this.varint());
    }
    this.pos = start;
    return this.varint64();
  }

  length(): number {
    const n = this.varint();
    if (this.pos + n > this.end) throw new Error("length-delimited field runs past the end");
    return n;
  }

  bytes(): Uint8Array {
    const n = this.length();
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  string(): string {
    const n = this.length();
    const s = utf8Decoder.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }

  /** A payload kind: kinds are few and repeat, so the last few decoded are reused when their bytes match. */
  kind(): string {
    const n = this.length();
    const buf = this.buf;
    const pos = this.pos;
    for (let c = 0; c < KIND_CACHE; c++) {
      const bytes = kindCacheBytes[c]!;
      if (bytes.byteLength !== n) continue;
      let i = 0;
      while (i < n && bytes[i] === buf[pos + i]) i++;
      if (i === n) {
        this.pos += n;
        return kindCacheStrings[c]!;
      }
    }
    const bytes = buf.slice(pos, pos + n);
    const s = utf8Decoder.decode(bytes);
    this.pos += n;
    if (n <= KIND_CACHE_MAX_BYTES) {
      kindCacheBytes[kindCacheNext] = bytes;
      kindCacheStrings[kindCacheNext] = s;
      kindCacheNext = (kindCacheNext + 1) % KIND_CACHE;
    }
    return s;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint64();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2: {
        const n = this.length();
        this.pos += n;
        return;
      }
      case 5:
        this.pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error("fixed-size field runs past the end");
  }
}

function readPayload(r: Reader, end: number, into: Payload | undefined): Payload {
  // A repeated oneof member merges into the one already read, as protobuf-es does.
  const p: Payload = into ?? { $typeName: "plugwire.v1.Payload", src: EMPTY, kind: "", body: EMPTY };
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === 0x0a) p.src = r.bytes();
    else if (tag === 0x12) p.kind = r.kind();
    else if (tag === 0x1a) p.body = r.bytes();
    else r.skip(tag & 7);
  }
  if (r.pos > end) throw new Error("a field runs past the end of its message");
  return p;
}

function readForgotten(r: Reader, end: number, into: PeerForgotten | undefined): PeerForgotten {
  const f: PeerForgotten = into ?? { $typeName: "plugwire.v1.PeerForgotten", nodeId: EMPTY };
  while (r.pos < end) {
    const tag = r.tag();
    if (tag === 0x0a) f.nodeId = r.bytes();
    else r.skip(tag & 7);
  }
  if (r.pos > end) throw new Error("a field runs past the end of its message");
  return f;
}

function readItem(r: Reader, end: number): DeliveryItem {
  const it: DeliveryItem = { $typeName: "plugwire.v1.DeliveryItem", seq: 0n, redelivered: false, item: { case: undefined } };
  // No read of the item's fields goes past the item (nor of a nested message's past it).
  const outer = r.end;
  r.end = end;
  while (r.pos < end) {
    const tag = r.tag();
    switch (tag) {
      case 0x08:
        it.seq = r.uint64();
        break;
      case 0x10:
        it.redelivered = r.varint() !== 0;
        break;
      case 0x1a: {
        const n = r.length();
        const stop = r.pos + n;
        r.end = stop;
        const value = readPayload(r, stop, it.item.case === "payload" ? it.item.value : undefined);
        r.end = end;
        it.item = { case: "payload", value };
        break;
      }
      case 0x22: {
        const n = r.length();
        const stop = r.pos + n;
        r.end = stop;
        const value = readForgotten(r, stop, it.item.case === "peerForgotten" ? it.item.value : undefined);
        r.end = end;
        it.item = { case: "peerForgotten", value };
        break;
      }
      default:
        r.skip(tag & 7);
    }
  }
  r.end = outer;
  r.pos = end;
  return it;
}

/**
 * Decodes a DeliverRequest as protobuf-es fromBinary would (unknown fields
 * dropped). With `maxFields`, it throws once the message has more fields
 * than that (nested ones included; an unknown field counts as one), after at
 * most that many steps: a server's field budget (grpc.ts), checked as it decodes.
 */
export function decodeDeliverRequest(bytes: Uint8Array, maxFields = Infinity): DeliverRequest {
  const r = new Reader(bytes, bytes.byteLength, maxFields);
  const items: DeliveryItem[] = [];
  while (r.pos < r.end) {
    const tag = r.tag();
    if (tag === 0x0a) {
      const n = r.length();
      items.push(readItem(r, r.pos + n));
    } else {
      r.skip(tag & 7);
    }
  }
  return { $typeName: "plugwire.v1.DeliverRequest", items };
}

// ---- DeliverResponse -----------------------------------------------------

function sendDirectSize(peer: Uint8Array, frame: Uint8Array): number {
  let size = 0;
  if (peer.byteLength > 0) size += 1 + varintSize(peer.byteLength) + peer.byteLength;
  if (frame.byteLength > 0) size += 1 + varintSize(frame.byteLength) + frame.byteLength;
  return size;
}

function effectSize(e: Effect): number {
  if (e.effect.case !== "sendDirect") return 0;
  const inner = sendDirectSize(e.effect.value.peer, e.effect.value.frame);
  return 1 + varintSize(inner) + inner;
}

interface OutcomeSizes {
  size: number;
  message: Uint8Array | undefined;
  errorSize: number;
  effects: number[];
}

function outcomeSize(o: ItemOutcome): OutcomeSizes {
  let size = 0;
  if (o.seq !== 0n) size += 1 + varint64Size(o.seq);
  let message: Uint8Array | undefined;
  let errorSize = 0;
  if (o.error) {
    message = utf8.encode(o.error.message);
    errorSize = message.byteLength > 0 ? 1 + varintSize(message.byteLength) + message.byteLength : 0;
    size += 1 + varintSize(errorSize) + errorSize;
  }
  const effects = o.effects.map(effectSize);
  for (const s of effects) size += 1 + varintSize(s) + s;
  return { size, message, errorSize, effects };
}

/** Encodes a DeliverResponse exactly as protobuf-es toBinary would. */
export function encodeDeliverResponse(message: DeliverResponse): Buffer {
  const sizes = message.outcomes.map(outcomeSize);
  let total = message.ackedThrough !== 0n ? 1 + varint64Size(message.ackedThrough) : 0;
  for (const s of sizes) total += 1 + varintSize(s.size) + s.size;
  const w = new Writer(Buffer.allocUnsafe(total));
  if (message.ackedThrough !== 0n) {
    w.buf[w.pos++] = 0x08;
    w.varint64(message.ackedThrough);
  }
  for (let i = 0; i < message.outcomes.length; i++) {
    const o = message.outcomes[i]!;
    const s = sizes[i]!;
    w.buf[w.pos++] = 0x12;
    w.varint(s.size);
    if (o.seq !== 0n) {
      w.buf[w.pos++] = 0x08;
      w.varint64(o.seq);
    }
    if (o.error) {
      w.buf[w.pos++] = 0x12;
      w.varint(s.errorSize);
      if (s.message!.byteLength > 0) {
        w.buf[w.pos++] = 0x0a;
        w.bytes(s.message!);
      }
    }
    for (let j = 0; j < o.effects.length; j++) {
      const e = o.effects[j]!;
      w.buf[w.pos++] = 0x1a;
      w.varint(s.effects[j]!);
      if (e.effect.case === "sendDirect") {
        const { peer, frame } = e.effect.value;
        w.buf[w.pos++] = 0x0a;
        w.varint(sendDirectSize(peer, frame));
        if (peer.byteLength > 0) {
          w.buf[w.pos++] = 0x0a;
          w.bytes(peer);
        }
        if (frame.byteLength > 0) {
          w.buf[w.pos++] = 0x12;
          w.bytes(frame);
        }
      }
    }
  }
  return w.buf;
}

function readEffect(r: Reader, end: number): Effect {
  const effect: Effect = { $typeName: "plugwire.v1.Effect", effect: { case: undefined } };
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x0a) {
      const n = r.length();
      const stop = r.pos + n;
      const value: { $typeName: "plugwire.v1.SendDirect"; peer: Uint8Array; frame: Uint8Array } = {
        $typeName: "plugwire.v1.SendDirect",
        peer: new Uint8Array(0),
        frame: new Uint8Array(0),
      };
      while (r.pos < stop) {
        const t = r.varint();
        if (t === 0x0a) value.peer = r.bytes();
        else if (t === 0x12) value.frame = r.bytes();
        else r.skip(t & 7);
      }
      effect.effect = { case: "sendDirect", value };
    } else {
      r.skip(tag & 7);
    }
  }
  return effect;
}

/**
 * The most effects one DeliverResponse may carry, over all its outcomes
 * (docs/protocol.md §8 Effects). The decoder materialises at most this many;
 * past it, effects are only counted, so a 16 MiB ack of 8 million empty
 * effects costs a scan, not gigabytes of objects. The host fails the items
 * of such an ack and performs none of its effects.
 */
export const MAX_EFFECTS_PER_ACK = 65_536;

/**
 * The most outcomes one DeliverResponse may carry. An ack has at most one
 * outcome per item it newly covers, and the host's window holds far fewer
 * items (128 KiB of at least 32 bytes each); a message with more is refused
 * as malformed rather than built (a 16 MiB ack holds 4 million tiny ones).
 */
export const MAX_OUTCOMES_PER_ACK = 65_536;

/** True counts of effects of the outcomes of a response that went past its decode budget. */
const countedEffects = new WeakMap<ItemOutcome, number>();

/**
 * How many effects `outcome` carried on the wire. Equals `outcome.effects.length`
 * unless its DeliverResponse went past the decoder's effect budget, in which
 * case `effects` holds only some of them and must not be performed.
 */
export function effectCount(outcome: ItemOutcome): number {
  return countedEffects.get(outcome) ?? outcome.effects.length;
}

/** Decoding state of one DeliverResponse: effects materialised so far, and the budget. */
interface EffectBudget {
  left: number;
  over: boolean;
}

function readOutcome(r: Reader, end: number, budget: EffectBudget): ItemOutcome {
  const o: ItemOutcome = { $typeName: "plugwire.v1.ItemOutcome", seq: 0n, effects: [] };
  let counted = 0;
  while (r.pos < end) {
    const tag = r.varint();
    if (tag === 0x08) {
      o.seq = r.uint64();
    } else if (tag === 0x12) {
      const n = r.length();
      const stop = r.pos + n;
      const error = o.error ?? { $typeName: "plugwire.v1.HandlerError" as const, message: "" };
      while (r.pos < stop) {
        const t = r.varint();
        if (t === 0x0a) error.message = r.string();
        else r.skip(t & 7);
      }
      o.error = error;
    } else if (tag === 0x1a) {
      const n = r.length();
      counted++;
      if (budget.left > 0) {
        budget.left--;
        o.effects.push(readEffect(r, r.pos + n));
      } else {
        // Past the budget: counted, never built.
        budget.over = true;
        r.pos += n;
      }
    } else {
      r.skip(tag & 7);
    }
  }
  if (counted !== o.effects.length) countedEffects.set(o, counted);
  return o;
}

/**
 * Decodes a DeliverResponse as protobuf-es fromBinary would (unknown fields
 * dropped), building at most `maxEffects` effects; see {@link effectCount}.
 */
export function decodeDeliverResponse(bytes: Uint8Array, maxEffects = MAX_EFFECTS_PER_ACK): DeliverResponse {
  const r = new Reader(bytes);
  const message: DeliverResponse = { $typeName: "plugwire.v1.DeliverResponse", ackedThrough: 0n, outcomes: [] };
  const budget: EffectBudget = { left: maxEffects, over: false };
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 0x08) {
      message.ackedThrough = r.uint64();
    } else if (tag === 0x12) {
      const n = r.length();
      if (message.outcomes.length >= MAX_OUTCOMES_PER_ACK) {
        throw new Error(
          `a DeliverResponse carried more than ${MAX_OUTCOMES_PER_ACK} outcomes; an ack has at most one per item it newly covers (docs/protocol.md §8)`,
        );
      }
      message.outcomes.push(readOutcome(r, r.pos + n, budget));
    } else {
      r.skip(tag & 7);
    }
  }
  // Over budget: every outcome with effects reports its true count, so none is mistaken for complete.
  if (budget.over) for (const o of message.outcomes) if (!countedEffects.has(o) && o.effects.length > 0) countedEffects.set(o, o.effects.length);
  return message;
}
