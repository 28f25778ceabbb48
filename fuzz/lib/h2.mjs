/**
 * HTTP/2 and gRPC wire pieces for the fuzzers: gRPC message framing, an HPACK
 * encoder (literal fields, no Huffman), frame building, and two ways to send:
 * a node:http2 client session (well-formed HTTP/2 carrying fuzzed gRPC) and a
 * raw net.Socket (the preface and arbitrary frames).
 */
import http2 from "node:http2";
import net from "node:net";
import { gzipSync, deflateSync } from "node:zlib";

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
};
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 };

export const GRPC_STATUS = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
  "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

/**
 * One gRPC length-prefixed message: flag byte, u32 length, payload. `frame`
 * may lie: `flag` other than 0/1, `lengthDelta` added to the true length, or
 * `length` replacing it. A compressed flag with `compress` set compresses.
 */
export function grpcMessage(payload, frame = {}) {
  let body = Buffer.from(payload);
  if (frame.compress === "gzip") body = gzipSync(body);
  else if (frame.compress === "deflate") body = deflateSync(body);
  const header = Buffer.alloc(5);
  header[0] = frame.flag ?? (frame.compress ? 1 : 0);
  let length = frame.length ?? body.length + (frame.lengthDelta ?? 0);
  length = Math.max(0, Math.min(0xffffffff, length));
  header.writeUInt32BE(length >>> 0, 1);
  return Buffer.concat([header, body]);
}

/** HPACK integer with an N-bit prefix; `first` holds the bits above the prefix. */
function hpackInt(value, prefixBits, first) {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function hpackString(s) {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([Buffer.from(hpackInt(bytes.length, 7, 0)), bytes]);
}

/** An HPACK block of literal fields without indexing (new names), in order. */
export function hpackBlock(headers) {
  const parts = [];
  for (const [name, value] of headers) {
    parts.push(Buffer.from([0x00]), hpackString(name), hpackString(value));
  }
  return Buffer.concat(parts);
}

/** One HTTP/2 frame; `length` may lie about the payload's size. */
export function frame(type, flags, streamId, payload = Buffer.alloc(0), length) {
  const header = Buffer.alloc(9);
  const n = length ?? payload.length;
  header.writeUIntBE(n & 0xffffff, 0, 3);
  header[3] = type & 0xff;
  header[4] = flags & 0xff;
  header.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([header, payload]);
}

export function settingsPayload(pairs) {
  const b = Buffer.alloc(pairs.length * 6);
  pairs.forEach(([id, value], i) => {
    b.writeUInt16BE(id & 0xffff, i * 6);
    b.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return b;
}

export function u32(value) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(value >>> 0);
  return b;
}

/** The frames found in `bytes` (a server's output), as far as they parse. */
export function parseFrames(bytes) {
  const frames = [];
  let pos = 0;
  while (pos + 9 <= bytes.length) {
    const length = bytes.readUIntBE(pos, 3);
    const type = bytes[pos + 3];
    const streamId = bytes.readUInt32BE(pos + 5) & 0x7fffffff;
    const payload = bytes.subarray(pos + 9, pos + 9 + length);
    frames.push({ type, flags: bytes[pos + 4], streamId, payload });
    pos += 9 + length;
  }
  return frames;
}

/** Raw connections not yet closed (each is destroyed when its exchange ends). */
const rawSockets = new Set();

/** Destroys every raw connection still open; returns how many there were. */
export function closeRawConnections() {
  const n = rawSockets.size;
  for (const socket of rawSockets) socket.destroy();
  rawSockets.clear();
  return n;
}

/**
 * Sends `chunks` on a fresh connection to the unix socket, reads what comes
 * back until the server closes or `quietMs` passes without a byte (at most
 * `maxMs` in all), then destroys the socket. Resolves with an outcome kind.
 */
export function rawExchange(socketPath, chunks, { quietMs = 40, maxMs = 600 } = {}) {
  return new Promise((resolve) => {
    const received = [];
    let bytes = 0;
    let done = false;
    let quiet;
    const socket = net.connect(socketPath);
    rawSockets.add(socket);
    socket.once("close", () => rawSockets.delete(socket));
    const finish = (how) => {
      if (done) return;
      done = true;
      clearTimeout(quiet);
      clearTimeout(hard);
      socket.destroy();
      const frames = parseFrames(Buffer.concat(received));
      const goaway = frames.find((f) => f.type === FRAME.GOAWAY);
      const rst = frames.find((f) => f.type === FRAME.RST_STREAM);
      const headers = frames.some((f) => f.type === FRAME.HEADERS);
      let kind;
      if (how === "connect-error") kind = "raw:connect-error";
      else if (goaway) kind = `raw:goaway:${goaway.payload.length >= 8 ? goaway.payload.readUInt32BE(4) : "?"}`;
      else if (headers) kind = "raw:response";
      else if (rst) kind = `raw:rst:${rst.payload.length >= 4 ? rst.payload.readUInt32BE(0) : "?"}`;
      else if (how === "closed") kind = bytes > 0 ? "raw:closed-after-settings" : "raw:closed-silent";
      else kind = "raw:left-open";
      resolve(kind);
    };
    const hard = setTimeout(() => finish("timeout"), maxMs);
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish("quiet"), quietMs);
    };
    let connected = false;
    socket.on("connect", () => {
      connected = true;
      for (const chunk of chunks) if (!socket.destroyed) socket.write(chunk);
      arm();
    });
    socket.on("data", (d) => {
      bytes += d.length;
      if (bytes < 1 << 20) received.push(d);
      arm();
    });
    socket.on("error", () => finish(connected ? "closed" : "connect-error"));
    socket.on("close", () => finish(connected ? "closed" : "connect-error"));
  });
}

/**
 * node:http2's own cap on a client session's memory, in MB (default 10). A
 * session over it refuses the response HEADERS it receives with
 * RST_STREAM(ENHANCE_YOUR_CALM) and the request never closes (its body is
 * still queued): with a 16 MiB body queued before the server's SETTINGS
 * opened its windows, an answer the server sent in time was dropped by the
 * fuzzer itself and counted as a hang. The fuzzer queues one body of at most
 * 16 MiB per stream, a few streams per session at a time.
 */
export const CLIENT_SESSION_MEMORY_MB = 256;

/**
 * A small pool of node:http2 client sessions on a unix socket; a session the
 * server closed (GOAWAY, protocol error) is replaced on next use. Every
 * session the pool opened is kept until it is gone, so close() ends them all,
 * replaced ones still draining included: a server that serves one connection
 * (a plugin, docs/protocol.md §6) sees none of them left open.
 */
export class SessionPool {
  constructor(socketPath, size = 4) {
    this.socketPath = socketPath;
    this.sessions = new Array(size).fill(undefined);
    this.next = 0;
    this.opened = 0;
    this.all = new Set();
  }

  get() {
    const i = this.next++ % this.sessions.length;
    let s = this.sessions[i];
    if (!s || s.closed || s.destroyed) {
      s = http2.connect("http://localhost", {
        createConnection: () => net.connect(this.socketPath),
        // Let the fuzzer send what it likes; the server decides.
        maxSendHeaderBlockLength: 1 << 20,
        // Node's default session memory (10 MB) counts the fuzzer's own unsent
        // body: with a 16 MiB message still queued, nghttp2 on this side refuses
        // the server's answer (RST_STREAM ENHANCE_YOUR_CALM from the client) and
        // the stream never closes, which looked like a hang (inputs #8391 of
        // host-service and #31071 of plugin-service, seed 20251129).
        maxHeaderListPairs: 10_000,
        peerMaxConcurrentStreams: 1000,
        maxSessionMemory: CLIENT_SESSION_MEMORY_MB,
      });
      s.on("error", () => undefined);
      s.on("goaway", () => s.close());
      s.on("close", () => this.all.delete(s));
      s.setTimeout(0);
      this.opened++;
      this.sessions[i] = s;
      this.all.add(s);
    }
    return s;
  }

  /** Sessions still open (current and replaced ones), for a check that needs them all gone. */
  get open() {
    return [...this.all].filter((s) => !s.destroyed).length;
  }

  close() {
    for (const s of this.all) s.destroy();
    this.all.clear();
    this.sessions.fill(undefined);
  }
}

/** The state of the connection of the latest request judged a hang (for the failure report). */
export const lastHang = { detail: "", session: undefined };

/**
 * One gRPC-over-HTTP/2 request on a pooled session: sends `headers`, writes
 * `body` chunks, ends the stream when `endStream`, waits for the response's
 * trailers (or `waitMs` for open streams), then cancels if still open.
 * Resolves with an outcome kind. `hangMs`: a finished request without an
 * answer after this long counts as "hang".
 */
export function h2Request(pool, headers, body, { endStream = true, waitMs = 200, hangMs = 10_000, streaming = false } = {}) {
  return new Promise((resolve) => {
    let session;
    let req;
    try {
      session = pool.get();
      req = session.request(headers, { endStream: false });
    } catch (e) {
      resolve(`client-refused:${e.code ?? e.name}`);
      return;
    }
    let status;
    let responded = false;
    let done = false;
    let timer;
    const finish = (kind) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
      // A stream the server reset while its body was still queued never closes
      // on its own (its writable side never finishes), and would keep a closing
      // session, and so its connection, open for good.
      if (!req.destroyed) req.destroy();
      resolve(kind);
    };
    const classify = (h) => {
      if (h["grpc-status"] !== undefined) {
        const code = Number(h["grpc-status"]);
        return `grpc:${GRPC_STATUS[code] ?? code}`;
      }
      return undefined;
    };
    req.on("response", (h) => {
      responded = true;
      status = classify(h) ?? status;
      if (status) finish(status);
      else if (h[":status"] !== 200) finish(`http:${h[":status"]}`);
      else if (streaming && !endStream) finish("stream-open");
    });
    req.on("trailers", (t) => finish(classify(t) ?? "trailers-without-status"));
    req.on("data", () => {
      // Streaming answers (WatchPeers, Snapshot, Deliver): data is an answer.
      if (streaming) responded = true;
    });
    req.on("error", (e) => finish(`stream-error:${e.code ?? e.name}`));
    req.on("close", () => {
      if (done) return;
      if (req.rstCode && req.rstCode !== http2.constants.NGHTTP2_NO_ERROR) finish(`rst:${req.rstCode}`);
      else finish(status ?? (responded ? "closed-without-status" : "closed-without-response"));
    });
    try {
      for (const chunk of body) req.write(chunk);
      if (endStream) req.end();
    } catch (e) {
      finish(`client-refused:${e.code ?? e.name}`);
      return;
    }
    // An open request (no END_STREAM) or a streaming call is cancelled after
    // `waitMs`; a finished unary call gets `hangMs` to answer.
    const limit = !endStream || streaming ? waitMs : hangMs;
    timer = setTimeout(() => {
      if (!endStream) finish(responded ? "cancelled-open-answered" : "cancelled-open");
      else if (streaming) finish(responded ? "stream-cancelled" : "stream-cancelled-unanswered");
      else {
        // What the connection looked like, for the report (lastHang): windows, queues, bytes.
        try {
          const st = session.state ?? {};
          lastHang.detail = `client session: remoteWindowSize ${st.remoteWindowSize}, effectiveLocalWindowSize ${st.effectiveLocalWindowSize}, outboundQueueSize ${st.outboundQueueSize}, socket writableLength ${session.socket?.writableLength}, bytesRead ${session.socket?.bytesRead}, bytesWritten ${session.socket?.bytesWritten}, open streams ${Object.keys(session[Object.getOwnPropertySymbols(session).find((x) => String(x) === "Symbol(state)")]?.streams ?? {}).length}; stream: ${JSON.stringify(req.state)}, writableLength ${req.writableLength}, session closed ${session.closed} destroyed ${session.destroyed}`;
        } catch (e) {
          lastHang.detail = String(e);
        }
        lastHang.session = session;
        finish("hang");
      }
    }, limit);
  });
}
