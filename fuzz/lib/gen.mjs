/**
 * fast-check arbitraries for the gRPC fuzzers. An input is plain data (so a
 * seed and an index reproduce it); `encode*` turns it into bytes when it is
 * sent, resolving symbolic parts such as which token to carry.
 *
 * Messages come in four flavours: a valid encoding of the method's request
 * (fields drawn from edge-heavy arbitraries), a valid encoding with byte
 * mutations, a "field soup" (random tags, wire types, lying lengths, nested
 * soups, deep groups), and plain random bytes. Framing lies too: compressed
 * flags, bad lengths, gzip that is not gzip, trailing half frames.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { FLAG, FRAME, PREFACE, frame, grpcMessage, hpackBlock, settingsPayload, u32 as u32be } from "./h2.mjs";

// ---- field values ----------------------------------------------------------

/**
 * Bulk (up to 16 MiB) messages: about 1 message in 600. FUZZ_BULK=0 leaves
 * them out (to look for other bugs while a bulk one is open).
 */
const bulkWeight = Number(process.env.FUZZ_BULK ?? 1) === 0 ? 0 : 1;

export const u64 = fc.oneof(
  { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 1000n }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
  { weight: 1, arbitrary: fc.constantFrom(0n, 1n, 2n ** 31n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n) },
);
export const u32 = fc.oneof(
  { weight: 4, arbitrary: fc.nat(64) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 2, 0x7fffffff, 0x80000000, 0xffffffff) },
);
export const i32 = fc.oneof(fc.integer({ min: -3, max: 8 }), fc.integer({ min: -0x80000000, max: 0x7fffffff }));

/** Mostly short, sometimes long; any UTF-16 including lone surrogates and controls. */
export const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 24 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 16 }) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", ".", "..", "../../../etc/passwd", "\u0000", "\r\n", "%2E", "a".repeat(4096)) },
  { weight: 1, arbitrary: fc.nat(70_000).map((n) => "x".repeat(n)) },
);

export const smallBytes = (max = 64) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.uint8Array({ maxLength: max }) },
    { weight: 1, arbitrary: fc.nat(max * 64).map((n) => new Uint8Array(n).fill(0x41)) },
  );

/** A 32-byte node id, usually; sometimes empty, short or long. */
export const nodeId = fc.oneof(
  { weight: 5, arbitrary: fc.uint8Array({ minLength: 32, maxLength: 32 }) },
  { weight: 2, arbitrary: fc.nat(4).map((n) => new Uint8Array(32).fill(n)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }) },
);

// ---- message bytes -----------------------------------------------------------

/** Byte mutations; positions are fractions of the length, so they fit any message. */
const mutation = fc.oneof(
  fc.record({ op: fc.constant("flip"), at: fc.double({ min: 0, max: 1, noNaN: true }), bit: fc.nat(7) }),
  fc.record({ op: fc.constant("set"), at: fc.double({ min: 0, max: 1, noNaN: true }), byte: fc.constantFrom(0x00, 0x08, 0x0a, 0x0b, 0x0c, 0x7f, 0x80, 0xff) }),
  fc.record({ op: fc.constant("insert"), at: fc.double({ min: 0, max: 1, noNaN: true }), data: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
  fc.record({ op: fc.constant("delete"), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("truncate"), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ op: fc.constant("dup"), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 32 }), times: fc.integer({ min: 1, max: 50 }) }),
);

export function mutate(bytes, muts) {
  let b = Buffer.from(bytes);
  for (const m of muts) {
    const at = Math.min(b.length, Math.floor(m.at * (b.length + 1)));
    switch (m.op) {
      case "flip":
        if (b.length > 0) b[Math.min(at, b.length - 1)] ^= 1 << m.bit;
        break;
      case "set":
        if (b.length > 0) b[Math.min(at, b.length - 1)] = m.byte;
        break;
      case "insert":
        b = Buffer.concat([b.subarray(0, at), m.data, b.subarray(at)]);
        break;
      case "delete":
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
        break;
      case "truncate":
        b = b.subarray(0, at);
        break;
      case "dup": {
        const piece = b.subarray(at, at + m.len);
        b = Buffer.concat([b.subarray(0, at), ...Array(m.times).fill(piece), b.subarray(at)]);
        break;
      }
    }
  }
  return b;
}

/** A random protobuf-like field list; field numbers favour the low (real) ones. */
const fieldNumber = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 6 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x1fffffff }) });
const { soup } = fc.letrec((tie) => ({
  soup: fc.array(tie("field"), { maxLength: 6, depthIdentifier: "soup" }),
  field: fc.oneof(
    { depthSize: "small", depthIdentifier: "soup" },
    fc.record({ no: fieldNumber, wt: fc.constant(0), v: u64 }),
    fc.record({ no: fieldNumber, wt: fc.constant(0), overlong: fc.integer({ min: 10, max: 14 }) }),
    fc.record({ no: fieldNumber, wt: fc.constantFrom(1, 5), raw: fc.uint8Array({ maxLength: 9 }) }),
    fc.record({ no: fieldNumber, wt: fc.constant(2), raw: fc.uint8Array({ maxLength: 40 }), lie: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 1 << 30 }) }) }),
    fc.record({ no: fieldNumber, wt: fc.constant(2), nested: tie("soup") }),
    fc.record({ no: fieldNumber, wt: fc.constantFrom(3, 4, 6, 7) }),
  ),
}));

/** Deeply nested structures: groups (wire type 3) and length-delimited nests, 1k to 200k deep. */
const deep = fc.record({
  pattern: fc.constantFrom("group", "nested-len", "group-unclosed", "repeated-tag"),
  no: fc.integer({ min: 1, max: 5 }),
  depth: fc.oneof(fc.integer({ min: 1000, max: 5000 }), fc.integer({ min: 20_000, max: 200_000 })),
});

function varint(n) {
  let v = BigInt(n);
  const out = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

const tag = (no, wt) => varint((BigInt(no) << 3n) | BigInt(wt));

export function encodeSoup(fields) {
  const parts = [];
  for (const f of fields) {
    parts.push(tag(f.no, f.wt));
    if (f.wt === 0) parts.push(f.overlong ? Buffer.from([...Array(f.overlong - 1).fill(0xff), 0x01]) : varint(f.v));
    else if (f.wt === 2) {
      const body = f.nested ? encodeSoup(f.nested) : Buffer.from(f.raw);
      parts.push(varint(Math.max(0, body.length + (f.lie ?? 0))), body);
    } else if (f.raw) parts.push(Buffer.from(f.raw));
  }
  return Buffer.concat(parts);
}

function encodeDeep({ pattern, no, depth }) {
  switch (pattern) {
    case "group":
      return Buffer.concat([Buffer.concat(Array(depth).fill(tag(no, 3))), Buffer.concat(Array(depth).fill(tag(no, 4)))]);
    case "group-unclosed":
      return Buffer.concat(Array(depth).fill(tag(no, 3)));
    case "repeated-tag":
      return Buffer.concat(Array(depth).fill(Buffer.concat([tag(no, 2), varint(0)])));
    default: {
      // field `no` holding field `no` holding ...: each level a length prefix.
      let inner = Buffer.alloc(0);
      for (let i = 0; i < Math.min(depth, 20_000); i++) inner = Buffer.concat([tag(no, 2), varint(inner.length), inner]);
      return inner;
    }
  }
}

/**
 * Large messages, up to the 16 MiB limit: one big bytes field (legitimate),
 * or millions of tiny fields, which cost a decoder seconds and gigabytes.
 */
const bulk = fc.record({
  pattern: fc.constantFrom("unknown-varints", "repeated-field1", "repeated-field2", "repeated-field3", "one-big-field"),
  size: fc.constantFrom(256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024 - 1024),
});

export function encodeBulk({ pattern, size }) {
  if (pattern === "one-big-field") {
    const head = Buffer.concat([tag(1, 2), varint(size - 8)]);
    return Buffer.concat([head, Buffer.alloc(size - 8, 0x61)]);
  }
  const pair = pattern === "unknown-varints" ? [0x78, 0x00] : pattern === "repeated-field1" ? [0x0a, 0x00] : pattern === "repeated-field2" ? [0x12, 0x00] : [0x1a, 0x00];
  const b = Buffer.alloc(size - (size % 2));
  for (let i = 0; i < b.length; i += 2) {
    b[i] = pair[0];
    b[i + 1] = pair[1];
  }
  return b;
}

/** Message bytes for a request whose valid shape is `init`. */
export function messageBytes(init) {
  const usual = fc.oneof(
    { weight: 10, arbitrary: fc.record({ kind: fc.constant("valid"), init }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("mutated"), init, muts: fc.array(mutation, { minLength: 1, maxLength: 4 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant("soup"), fields: soup }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("random"), data: fc.uint8Array({ maxLength: 300 }) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "empty" }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("deep"), deep }) },
  );
  if (!bulkWeight) return usual;
  return fc.oneof({ weight: 1, arbitrary: fc.record({ kind: fc.constant("bulk"), bulk }) }, { weight: 600, arbitrary: usual });
}

/** `resolve` turns symbolic values in a valid init into concrete ones (e.g. the in-flight seq). */
export function encodeMessage(schema, m, resolve = (x) => x) {
  switch (m.kind) {
    case "valid":
      return Buffer.from(toBinary(schema, create(schema, resolve(m.init))));
    case "mutated":
      return mutate(toBinary(schema, create(schema, resolve(m.init))), m.muts);
    case "soup":
      return encodeSoup(m.fields);
    case "random":
      return Buffer.from(m.data);
    case "deep":
      return encodeDeep(m.deep);
    case "bulk":
      return encodeBulk(m.bulk);
    default:
      return Buffer.alloc(0);
  }
}

/** How a message is framed: honest (mostly), compressed, or lying. */
export const framing = fc.oneof(
  { weight: 20, arbitrary: fc.constant({}) },
  { weight: 2, arbitrary: fc.record({ compress: fc.constantFrom("gzip", "deflate") }) },
  { weight: 2, arbitrary: fc.record({ flag: fc.constantFrom(1, 2, 0x80, 0xff) }) },
  { weight: 2, arbitrary: fc.record({ lengthDelta: fc.integer({ min: -8, max: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ length: fc.constantFrom(0, 16 * 1024 * 1024, 16 * 1024 * 1024 + 1, 0x7fffffff, 0xffffffff) }) },
);

// ---- headers and auth ------------------------------------------------------

/** Which token a call carries, symbolically; see `authHeader`. */
export const auth = fc.oneof(
  { weight: 45, arbitrary: fc.constant("valid") },
  { weight: 15, arbitrary: fc.constant("none") },
  { weight: 8, arbitrary: fc.constant("wrong") },
  { weight: 10, arbitrary: fc.constant("other") },
  { weight: 4, arbitrary: fc.constant("old") },
  { weight: 4, arbitrary: fc.constant("dup") },
  { weight: 4, arbitrary: fc.constant("lower") },
  {
    weight: 10,
    arbitrary: fc.oneof(
      fc.constantFrom("Bearer", "Bearer ", "Bearer  ", "bearer", "Basic dXNlcjpwYXNz", "Bearer \u00ff", "Token x"),
      fc.string({ maxLength: 40 }).map((s) => `Bearer ${s.replace(/[^\x20-\x7e]/g, "")}`),
      fc.nat(20_000).map((n) => `Bearer ${"A".repeat(n)}`),
    ).map((raw) => ({ raw })),
  },
);

/** The authorization header value(s) for a symbolic auth, given the tokens. */
export function authHeader(a, tokens) {
  if (typeof a === "object") return a.raw;
  switch (a) {
    case "valid":
      return `Bearer ${tokens.valid}`;
    case "wrong":
      return "Bearer 6Zt1tBxUjx1bLj0bA0vFtQ1rUeQ5x3nqZf3S1k5bW0c";
    case "other":
      return `Bearer ${tokens.other}`;
    case "old":
      return `Bearer ${tokens.old ?? tokens.other}`;
    case "dup":
      return ["Bearer wrong-token-first", `Bearer ${tokens.valid}`];
    case "lower":
      return `bearer ${tokens.valid}`;
    default:
      return undefined;
  }
}

const headerName = fc.oneof(
  fc.constantFrom("x-fuzz", "grpc-status", "grpc-message", "grpc-accept-encoding", "user-agent", "x-a-bin", "grpc-trace-bin", "grpc-tags-bin", "plugwire-error-bin", "authorization", "content-length", "grpc-previous-rpc-attempts"),
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/),
);
const headerValue = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,40}$/) },
  { weight: 1, arbitrary: fc.constantFrom("!!!notbase64", "AAAA", "=", "\t") },
  { weight: 1, arbitrary: fc.nat(12_000).map((n) => "v".repeat(n)) },
);

export const requestHeaders = fc.record({
  method: fc.oneof({ weight: 20, arbitrary: fc.constant("POST") }, { weight: 1, arbitrary: fc.constantFrom("GET", "PUT", "HEAD", "OPTIONS") }),
  contentType: fc.oneof(
    { weight: 18, arbitrary: fc.constant("application/grpc") },
    { weight: 1, arbitrary: fc.constantFrom("application/grpc+proto", "application/grpc+json", "application/json", "text/plain", "application/grpc-web", "") },
    { weight: 1, arbitrary: fc.constant(undefined) },
  ),
  te: fc.oneof({ weight: 10, arbitrary: fc.constant("trailers") }, { weight: 1, arbitrary: fc.constant(undefined) }),
  encoding: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("gzip", "deflate", "identity", "snappy", "br", "gzip, deflate", "") }),
  timeout: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("1m", "50m", "1S", "5u", "1n", "99999999H", "abc", "-1m", "0S", "") }),
  extra: fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 }),
});

export function buildHeaders(path, h, authValue) {
  const headers = { ":method": h.method, ":path": path, ":scheme": "http", ":authority": "localhost" };
  if (h.contentType !== undefined) headers["content-type"] = h.contentType;
  if (h.te !== undefined) headers.te = h.te;
  if (h.encoding !== undefined) headers["grpc-encoding"] = h.encoding;
  if (h.timeout !== undefined) headers["grpc-timeout"] = h.timeout;
  for (const [name, value] of h.extra) {
    if (name === "authorization" || name === "content-length") continue; // set below / computed by the client
    headers[name] = value;
  }
  // node:http2 sends one authorization field at most: a duplicate is folded as a proxy would (the raw path sends both).
  if (authValue !== undefined) headers.authorization = Array.isArray(authValue) ? authValue.join(", ") : authValue;
  return headers;
}

// ---- whole inputs -------------------------------------------------------------

const otherPaths = fc.oneof(
  fc.constantFrom(
    "/", "", "*", "/plugwire.v1.HostService/", "/plugwire.v1.HostService/Nope", "/plugwire.v1.HostService/lookupName",
    "/plugwire.v1.PluginService/Describe", "/plugwire.v1.HostService/GetSigningSeed/x", "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/plugwire.admin.v1.Admin/StopPlugin", "/../../etc/passwd", "//plugwire.v1.HostService//LookupName",
  ),
  fc.stringMatching(/^\/[\x21-\x7e]{0,60}$/),
);

/**
 * A gRPC call over a well-formed HTTP/2 stream. `methods` is the method table
 * of the target: [{ name, path, kind, schema, init, weight }].
 */
export function grpcInput(methods) {
  const method = fc.oneof(
    ...methods.map((m, i) => ({ weight: m.weight ?? 10, arbitrary: fc.constant(i) })),
    { weight: 3, arbitrary: fc.constant(-1) },
  );
  return method.chain((mi) => {
    const m = methods[mi];
    const msg = messageBytes(m ? m.init : fc.constant({}));
    const many = m && (m.kind === "client" || m.kind === "bidi");
    let messages = many
      ? fc.array(fc.record({ bytes: msg, framing }), { maxLength: 6 })
      : // Unary calls carry exactly one message most of the time.
        fc.oneof({ weight: 12, arbitrary: fc.tuple(fc.record({ bytes: msg, framing })) }, { weight: 1, arbitrary: fc.array(fc.record({ bytes: msg, framing }), { maxLength: 3 }) });
    if (m?.sequence) {
      // A coherent stream (e.g. a Restore header and chunks that fit it), all valid encodings.
      const coherent = m.sequence.map((inits) => inits.map((init) => ({ bytes: { kind: "valid", init }, framing: {} })));
      messages = fc.oneof({ weight: 1, arbitrary: messages }, { weight: 1, arbitrary: coherent });
    }
    return fc.record({
      type: fc.constant("grpc"),
      method: fc.constant(mi),
      otherPath: mi === -1 ? otherPaths : fc.constant(undefined),
      auth: m?.auth ?? auth,
      headers: requestHeaders,
      messages,
      trailing: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      split: fc.oneof({ weight: 8, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      endStream: fc.oneof({ weight: 12, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      waitMs: fc.integer({ min: 5, max: 150 }),
    });
  });
}

/** Bytes of a gRPC body: the framed messages, then any trailing half frame, maybe split in 1-7 byte chunks. */
export function encodeBody(input, schema, resolve) {
  // A compressed message need not match the grpc-encoding header: a mismatch is an input too.
  const parts = input.messages.map((m) => grpcMessage(encodeMessage(schema, m.bytes, resolve), m.framing));
  if (input.trailing) parts.push(Buffer.from(input.trailing));
  const body = Buffer.concat(parts);
  if (!input.split) return body.length ? [body] : [];
  const chunks = [];
  for (let i = 0, n = 1; i < body.length; i += n, n = (n % 7) + 1) chunks.push(body.subarray(i, i + n));
  return chunks;
}

// ---- raw HTTP/2 ------------------------------------------------------------

const streamId = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(1, 3, 5) },
  { weight: 1, arbitrary: fc.constantFrom(0, 2, 0x7fffffff, 0x80000001) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
const grpcHeadersBlock = (methods) =>
  fc.integer({ min: 0, max: methods.length - 1 }).chain((method) =>
    fc.record({ kind: fc.constant("grpc"), method: fc.constant(method), auth: methods[method].auth ?? auth, drop: fc.option(fc.constantFrom(":method", ":path", ":scheme", "content-type", "te"), { nil: undefined }), upper: fc.boolean() }),
  );
const headerBlock = (methods) =>
  fc.oneof(
    { weight: 6, arbitrary: grpcHeadersBlock(methods) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("random"), data: fc.uint8Array({ maxLength: 64 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("literal"), pairs: fc.array(fc.tuple(fc.string({ maxLength: 12 }), fc.string({ maxLength: 30 })), { maxLength: 6 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("table-size"), size: fc.integer({ min: 0, max: 0xffffffff }) }) },
  );

const rawFrame = (methods) =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ t: fc.constant("headers"), streamId, endStream: fc.boolean(), endHeaders: fc.oneof({ weight: 8, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }), padded: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) }), block: headerBlock(methods) }) },
    {
      weight: 6,
      arbitrary: fc.integer({ min: 0, max: methods.length - 1 }).chain((method) =>
        fc.record({ t: fc.constant("data"), streamId, endStream: fc.boolean(), method: fc.constant(method), bytes: messageBytes(methods[method].init), framing, padded: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 300 }) }) }),
      ),
    },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("settings"), ack: fc.boolean(), pairs: fc.array(fc.tuple(fc.integer({ min: 0, max: 10 }), fc.oneof(fc.nat(100), fc.integer({ min: 0, max: 0xffffffff }))), { maxLength: 6 }), garble: fc.boolean() }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("window"), streamId, inc: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 0x7fffffff }), fc.constant(0xffffffff)) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("rst"), streamId, code: fc.integer({ min: 0, max: 20 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("ping"), ack: fc.boolean(), data: fc.uint8Array({ maxLength: 12 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("goaway"), last: fc.nat(10), code: fc.nat(15), debug: fc.uint8Array({ maxLength: 20 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("priority"), streamId, dep: fc.oneof(fc.nat(7), fc.integer({ min: 0, max: 0xffffffff })), weight: fc.nat(255) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("continuation"), streamId, endHeaders: fc.boolean(), block: headerBlock(methods) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant("push"), streamId, promised: fc.nat(9), block: headerBlock(methods) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant("generic"), type: fc.nat(255), flags: fc.nat(255), streamId, payload: fc.uint8Array({ maxLength: 64 }), lie: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffff }) }) }) },
  );

/** A raw connection: a preface (usually right), a SETTINGS frame (usually), then frames; some repeated as floods. */
export function rawInput(methods) {
  return fc.record({
    type: fc.constant("raw"),
    preface: fc.oneof(
      { weight: 18, arbitrary: fc.constant({ kind: "valid" }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("mutated"), muts: fc.array(mutation, { minLength: 1, maxLength: 2 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant("http1"), line: fc.constantFrom("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "POST /plugwire.v1.HostService/LookupName HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", "\r\n\r\n") }) },
    ),
    settings: fc.oneof({ weight: 8, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    frames: fc.array(
      fc.record({
        frame: rawFrame(methods),
        repeat: fc.oneof({ weight: 20, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.integer({ min: 2, max: 400 }) }),
      }),
      { minLength: 1, maxLength: 8 },
    ),
    quietMs: fc.integer({ min: 5, max: 60 }),
  });
}

function padded(payload, pad) {
  if (!pad) return { payload, flags: 0 };
  return { payload: Buffer.concat([Buffer.from([pad & 0xff]), payload, Buffer.alloc(pad & 0xff)]), flags: FLAG.PADDED };
}

function encodeBlock(block, methods, tokens) {
  switch (block.kind) {
    case "grpc": {
      const m = methods[block.method];
      const pairs = [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", m.path],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ].filter(([k]) => k !== block.drop);
      const a = authHeader(block.auth, tokens);
      for (const v of Array.isArray(a) ? a : a === undefined ? [] : [a]) pairs.push(["authorization", v]);
      return hpackBlock(block.upper ? pairs.map(([k, v]) => [k.toUpperCase(), v]) : pairs);
    }
    case "literal":
      return hpackBlock(block.pairs.map(([k, v]) => [k.replace(/[^\x00-\xff]/g, "?"), v.replace(/[^\x00-\xff]/g, "?")]));
    case "table-size": {
      // Dynamic table size update (001xxxxx), 5-bit prefix integer.
      const out = [0x3f];
      let v = block.size - 31;
      if (block.size < 31) return Buffer.from([0x20 | block.size]);
      while (v >= 128) {
        out.push((v % 128) + 128);
        v = Math.floor(v / 128);
      }
      out.push(v);
      return Buffer.from(out);
    }
    default:
      return Buffer.from(block.data);
  }
}

function encodeFrame(f, methods, tokens, resolve) {
  switch (f.t) {
    case "headers": {
      const p = padded(encodeBlock(f.block, methods, tokens), f.padded);
      return frame(FRAME.HEADERS, p.flags | (f.endStream ? FLAG.END_STREAM : 0) | (f.endHeaders ? FLAG.END_HEADERS : 0), f.streamId, p.payload);
    }
    case "data": {
      const m = methods[f.method];
      const p = padded(grpcMessage(encodeMessage(m.schema, f.bytes, resolve), f.framing), f.padded);
      return frame(FRAME.DATA, p.flags | (f.endStream ? FLAG.END_STREAM : 0), f.streamId, p.payload);
    }
    case "settings": {
      const payload = f.ack ? Buffer.alloc(0) : settingsPayload(f.pairs);
      return frame(FRAME.SETTINGS, f.ack ? FLAG.ACK : 0, 0, f.garble ? Buffer.concat([payload, Buffer.from([1, 2])]) : payload);
    }
    case "window":
      return frame(FRAME.WINDOW_UPDATE, 0, f.streamId, u32be(f.inc));
    case "rst":
      return frame(FRAME.RST_STREAM, 0, f.streamId, u32be(f.code));
    case "ping":
      return frame(FRAME.PING, f.ack ? FLAG.ACK : 0, 0, Buffer.from(f.data));
    case "goaway":
      return frame(FRAME.GOAWAY, 0, 0, Buffer.concat([u32be(f.last), u32be(f.code), Buffer.from(f.debug)]));
    case "priority":
      return frame(FRAME.PRIORITY, 0, f.streamId, Buffer.concat([u32be(f.dep), Buffer.from([f.weight])]));
    case "continuation":
      return frame(FRAME.CONTINUATION, f.endHeaders ? FLAG.END_HEADERS : 0, f.streamId, encodeBlock(f.block, methods, tokens));
    case "push":
      return frame(FRAME.PUSH_PROMISE, FLAG.END_HEADERS, f.streamId, Buffer.concat([u32be(f.promised), encodeBlock(f.block, methods, tokens)]));
    default:
      return frame(f.type, f.flags, f.streamId, Buffer.from(f.payload), f.lie);
  }
}

/** The byte chunks of a raw input. */
export function encodeRaw(input, methods, tokens, resolve) {
  const chunks = [];
  if (input.preface.kind === "valid") chunks.push(PREFACE);
  else if (input.preface.kind === "mutated") chunks.push(mutate(PREFACE, input.preface.muts));
  else chunks.push(Buffer.from(input.preface.line, "latin1"));
  if (input.settings) chunks.push(frame(FRAME.SETTINGS, 0, 0, settingsPayload([[4, 1 << 20]])));
  for (const { frame: f, repeat } of input.frames) {
    const bytes = encodeFrame(f, methods, tokens, resolve);
    chunks.push(repeat === 1 ? bytes : Buffer.concat(Array(repeat).fill(bytes)));
  }
  return chunks;
}

/** A target's input: mostly gRPC calls, some raw connections. */
export function targetInput(methods, rawShare = 0.2) {
  const w = Math.round(rawShare * 100);
  return fc.oneof({ weight: 100 - w, arbitrary: grpcInput(methods) }, { weight: w, arbitrary: rawInput(methods) });
}
