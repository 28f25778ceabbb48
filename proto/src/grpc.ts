/**
 * Binds protobuf-es service descriptors to grpc-js: service definitions,
 * typed server handlers with the auth check and error mapping, and typed
 * clients that attach the auth token to every call. Nothing else in plugwire
 * touches grpc-js serializers or `any`.
 */
import { timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { PlugwireError, toServiceStatus } from "./errors.js";
import { AUTH_METADATA_KEY, MAX_MESSAGE_BYTES } from "./wire.js";
import { DeliverRequestSchema, DeliverResponseSchema } from "./gen/plugwire/v1/plugin_pb.js";
import { decodeDeliverRequest, decodeDeliverResponse, encodeDeliverRequest, encodeDeliverResponse } from "./codec.js";

type MethodShape = GenServiceMethods[string];
type In<T extends MethodShape> = MessageShape<T["input"]>;
type Out<T extends MethodShape> = MessageShape<T["output"]>;
type InInit<T extends MethodShape> = MessageInitShape<T["input"]>;
type OutInit<T extends MethodShape> = MessageInitShape<T["output"]>;

/** Typed server handlers for a service; one entry per method, by localName. */
export type ServiceHandlers<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (request: In<S[K]>, call: grpc.ServerUnaryCall<In<S[K]>, Out<S[K]>>) => Promise<OutInit<S[K]>>
    : S[K]["methodKind"] extends "server_streaming"
      ? (request: In<S[K]>, call: grpc.ServerWritableStream<In<S[K]>, OutInit<S[K]>>) => Promise<void>
      : S[K]["methodKind"] extends "client_streaming"
        ? (call: grpc.ServerReadableStream<In<S[K]>, Out<S[K]>>) => Promise<OutInit<S[K]>>
        : (call: grpc.ServerDuplexStream<In<S[K]>, OutInit<S[K]>>) => void;
};

/** Per-call options of a typed client. */
export interface CallOptions {
  /** Fail the call with DEADLINE_EXCEEDED after this many milliseconds. */
  deadlineMs?: number;
}

/** A typed client for a service; one entry per method, by localName. */
export type ServiceClient<S extends GenServiceMethods> = {
  [K in keyof S]: S[K]["methodKind"] extends "unary"
    ? (request: InInit<S[K]>, options?: CallOptions) => Promise<Out<S[K]>>
    : S[K]["methodKind"] extends "server_streaming"
      ? (request: InInit<S[K]>, options?: CallOptions) => grpc.ClientReadableStream<Out<S[K]>>
      : S[K]["methodKind"] extends "client_streaming"
        ? (options?: CallOptions) => { stream: grpc.ClientWritableStream<InInit<S[K]>>; response: Promise<Out<S[K]>> }
        : (options?: CallOptions) => grpc.ClientDuplexStream<InInit<S[K]>, Out<S[K]>>;
};

/** Channel and server options that set the message limits explicitly. */
export function messageLimitOptions(maxMessageBytes = MAX_MESSAGE_BYTES): grpc.ChannelOptions {
  return {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
  };
}

/**
 * HTTP/2 flow-control window of every plugwire channel and server, in bytes.
 * The 64 KiB default lets a stream carry about 200 payloads of 256 B before
 * it waits a round trip for WINDOW_UPDATE; on a local socket a large window
 * costs nothing. Set PLUGWIRE_FLOW_CONTROL_WINDOW=65535 to measure without it.
 */
const FLOW_CONTROL_WINDOW_BYTES = Number(process.env.PLUGWIRE_FLOW_CONTROL_WINDOW ?? 8 * 1024 * 1024);

function channelOptions(maxMessageBytes?: number): grpc.ChannelOptions {
  return { ...messageLimitOptions(maxMessageBytes), "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW_BYTES };
}

/**
 * Hand-written codecs for the hot-path messages, byte-compatible with
 * protobuf-es (see codec.ts and its property test); every other message uses
 * the reflective codec.
 */
const FAST_CODECS: Record<string, { encode: (m: never) => Buffer; decode: (b: Uint8Array) => unknown; decodeWithin?: (b: Uint8Array, maxFields: number) => unknown }> = {
  // A server's field budget is checked by the decoder itself as it reads, in the same single pass.
  [DeliverRequestSchema.typeName]: { encode: encodeDeliverRequest, decode: (b) => decodeDeliverRequest(b), decodeWithin: decodeDeliverRequest },
  [DeliverResponseSchema.typeName]: { encode: encodeDeliverResponse, decode: decodeDeliverResponse },
};

function serializer<D extends DescMessage>(schema: D): (value: MessageInitShape<D>) => Buffer {
  const fast = FAST_CODECS[schema.typeName];
  return (value) => {
    const message = "$typeName" in value && value.$typeName === schema.typeName
      ? (value as MessageShape<D>)
      : create(schema, value);
    if (fast) return fast.encode(message as never);
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  const fast = FAST_CODECS[schema.typeName];
  if (fast) return (bytes) => fast.decode(bytes) as MessageShape<D>;
  return (bytes) => fromBinary(schema, bytes);
}

/**
 * Most protobuf fields (those of nested messages included) a request of each
 * type may hold when a server decodes it: {@link MAX_REQUEST_FIELDS}, and
 * {@link MAX_DELIVER_REQUEST_FIELDS} for a `DeliverRequest` batch. grpc-js
 * decodes a request before any handler or token check runs, and a 16 MiB
 * message of millions of tiny fields keeps protobuf-es busy for seconds and
 * takes gigabytes (found by the fuzzer against the host and the SDK). The
 * count runs on the raw bytes before decoding and stops at the budget, so a
 * request costs at most that many steps whatever its size; a large `bytes`
 * field is one field. A DeliverRequest (the hot path) is counted by its
 * hand-written decoder as it reads, in the same single pass, with the same
 * bound. A request over its budget is refused (INTERNAL,
 * "Error deserializing request"). docs/protocol.md §13 lists the budgets.
 */
export const MAX_REQUEST_FIELDS = 256;
/**
 * A DeliverRequest's budget: 16 fields per item for 4096 items (the default
 * in-flight window). A payload item holds 7 today (items, seq, redelivered,
 * payload, src, kind, body), so a batch of up to 9362 payload items passes;
 * the host's batches hold 128 by default (`maxBatch`).
 */
export const MAX_DELIVER_REQUEST_FIELDS = 16 * 4096;

/** The field budget of a request of this type when a server decodes it. */
export function requestFieldBudget(schema: DescMessage): number {
  return schema.typeName === DeliverRequestSchema.typeName ? MAX_DELIVER_REQUEST_FIELDS : MAX_REQUEST_FIELDS;
}

/**
 * Throws unless `bytes` is protobuf with at most `budget` fields (those of
 * nested messages of `schema` included). Runs on the raw bytes; never decodes.
 */
export function checkFieldCount(schema: DescMessage, bytes: Uint8Array, budget: number): void {
  const left = { n: budget };
  countFields(schema, bytes, left, budget);
}

function countFields(schema: DescMessage, bytes: Uint8Array, left: { n: number }, budget: number): void {
  let pos = 0;
  const varint = (): number => {
    let value = 0;
    for (let shift = 1, i = 0; i < 10; i++, shift *= 128) {
      if (pos >= bytes.length) throw new Error("truncated varint");
      const b = bytes[pos++]!;
      value += (b & 0x7f) * shift;
      if (b < 0x80) return value;
    }
    throw new Error("varint longer than 10 bytes");
  };
  while (pos < bytes.length) {
    if (--left.n < 0) throw new Error(`a ${schema.typeName} request holds at most ${budget} protobuf fields`);
    const tag = varint();
    const wireType = tag % 8;
    if (wireType === 0) varint();
    else if (wireType === 1) pos += 8;
    else if (wireType === 5) pos += 4;
    else if (wireType === 2) {
      const length = varint();
      const end = pos + length;
      if (end > bytes.length) throw new Error("length-delimited field runs past the end");
      const field = schema.fields.find((f) => f.number === Math.floor(tag / 8));
      const nested = field?.fieldKind === "message" || (field?.fieldKind === "list" && field.listKind === "message") ? field.message : undefined;
      if (nested) countFields(nested, bytes.subarray(pos, end), left, budget);
      pos = end;
    } else if (wireType !== 3 && wireType !== 4) throw new Error(`invalid wire type ${wireType}`);
    if (pos > bytes.length) throw new Error("fixed-size field runs past the end");
  }
}

/** A server-side request deserializer: the field budget first, then the codec. */
function requestDeserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  const budget = requestFieldBudget(schema);
  const within = FAST_CODECS[schema.typeName]?.decodeWithin;
  if (within) return (bytes) => within(bytes, budget) as MessageShape<D>;
  const decode = deserializer(schema);
  return (bytes) => {
    checkFieldCount(schema, bytes, budget);
    return decode(bytes);
  };
}

function methodPath(service: DescService, method: DescMethod): string {
  return `/${service.typeName}/${method.name}`;
}

/** The grpc-js service definition of a protobuf-es service descriptor. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: methodPath(service, method),
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      // Only servers call requestDeserialize: they decode what any local
      // process may send, before its token is checked.
      requestDeserialize: requestDeserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
      originalName: method.name,
    };
  }
  return definition;
}

/**
 * Reads the bearer token of a call: the one `authorization` value, which must
 * be `Bearer ` and the token. Undefined when there is none, when the value
 * has another form, or when the header appears more than once
 * (docs/protocol.md §6).
 */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get(AUTH_METADATA_KEY);
  if (values.length !== 1) return undefined;
  const value = values[0];
  if (typeof value !== "string" || !value.startsWith("Bearer ")) return undefined;
  return value.slice("Bearer ".length);
}

/** Whether a call carries exactly `Bearer <token>`; compared in constant time. */
export function hasBearerToken(metadata: grpc.Metadata, token: string): boolean {
  const presented = bearerToken(metadata);
  if (presented === undefined) return false;
  const a = Buffer.from(presented);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface BindOptions {
  /**
   * Called with each call's metadata before the handler runs. Throw a
   * PlugwireError (for example `unauthenticated`) to refuse the call.
   */
  authorize: (metadata: grpc.Metadata, method: string) => void;
}

/** Adds a service with typed handlers to a grpc-js server. */
export function addService<S extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<S>,
  handlers: ServiceHandlers<S>,
  options: BindOptions,
): void {
  const implementation: grpc.UntypedServiceImplementation = {};
  const table = handlers as Record<string, (...args: never[]) => unknown>;
  for (const method of service.methods) {
    const handler = table[method.localName] as unknown as (...args: unknown[]) => unknown;
    if (handler === undefined) throw new Error(`no handler for ${service.typeName}.${method.name}`);
    const authorize = (call: { metadata: grpc.Metadata }): void => options.authorize(call.metadata, method.name);
    switch (method.methodKind) {
      case "unary":
      case "client_streaming":
        implementation[method.localName] = ((
          call: grpc.ServerUnaryCall<unknown, unknown> & grpc.ServerReadableStream<unknown, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) => {
          let pending: Promise<unknown>;
          try {
            authorize(call);
            pending = method.methodKind === "unary"
              ? (handler(call.request, call) as Promise<unknown>)
              : (handler(call) as Promise<unknown>);
          } catch (e) {
            callback(toServiceStatus(e));
            return;
          }
          pending.then(
            (response) => callback(null, response),
            (e: unknown) => callback(toServiceStatus(e)),
          );
        }) as grpc.handleUnaryCall<unknown, unknown>;
        break;
      case "server_streaming":
        implementation[method.localName] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
          const fail = (e: unknown): void => {
            call.emit("error", toServiceStatus(e));
          };
          try {
            authorize(call);
            (handler(call.request, call) as Promise<void>).then(() => call.end(), fail);
          } catch (e) {
            fail(e);
          }
        };
        break;
      case "bidi_streaming":
        implementation[method.localName] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
          try {
            authorize(call);
            handler(call);
          } catch (e) {
            call.emit("error", toServiceStatus(e));
          }
        };
        break;
    }
  }
  server.addService(serviceDefinition(service), implementation);
}

export interface ClientOptions {
  /** The auth token sent as `authorization: Bearer <token>` on every call. */
  token: string;
  /** Largest message either side may send, in bytes. */
  maxMessageBytes?: number;
  /** The plugin the calls concern; set as `plugin` on every error. */
  plugin?: string;
  /**
   * Another connection whose channel (and so whose one HTTP/2 connection)
   * this one uses, e.g. a plugin's Health client next to its PluginService
   * client: a plugin serves one connection, its host's (docs/protocol.md §6.3).
   */
  shareWith?: Connection<GenServiceMethods>;
  /** Read at every call instead of `token`: attach mode learns its token from the host's first Start (docs/protocol.md §18). */
  tokenOf?: () => string;
  /** Channel credentials; default insecure (unix sockets). Attach mode passes mutual-TLS credentials (remote.ts). */
  credentials?: grpc.ChannelCredentials;
  /** Extra channel options (for example the TLS name override and keepalive of attach mode). */
  channelOptions?: grpc.ChannelOptions;
}

/** A typed client plus the channel it owns. */
export interface Connection<S extends GenServiceMethods> {
  readonly client: ServiceClient<S>;
  readonly channel: grpc.Client;
  close(): void;
}

/** Opens a channel to `target` (e.g. unix:///tmp/pw-x/p.sock) and types it. */
export function connect<S extends GenServiceMethods>(
  service: GenService<S>,
  target: string,
  options: ClientOptions,
): Connection<S> {
  const shared = options.shareWith ? { channelOverride: options.shareWith.channel.getChannel() } : {};
  const channel = new grpc.Client(target, options.credentials ?? grpc.credentials.createInsecure(), {
    ...channelOptions(options.maxMessageBytes),
    ...options.channelOptions,
    ...shared,
  });
  const auth = `Bearer ${options.token}`;
  const metadata = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set(AUTH_METADATA_KEY, options.tokenOf ? `Bearer ${options.tokenOf()}` : auth);
    return m;
  };
  const callOptions = (o?: CallOptions): grpc.CallOptions =>
    o?.deadlineMs === undefined ? {} : { deadline: Date.now() + o.deadlineMs };
  const wrapError = (e: unknown): PlugwireError => PlugwireError.from(e, "internal", options.plugin);
  const client: Record<string, unknown> = {};
  for (const method of service.methods) {
    const path = methodPath(service, method);
    const ser = serializer(method.input) as (v: unknown) => Buffer;
    const de = deserializer(method.output) as (b: Buffer) => unknown;
    switch (method.methodKind) {
      case "unary":
        client[method.localName] = (request: unknown, o?: CallOptions) =>
          new Promise((resolve, reject) => {
            channel.makeUnaryRequest(path, ser, de, request, metadata(), callOptions(o), (err, value) => {
              if (err) reject(wrapError(err));
              else resolve(value);
            });
          });
        break;
      case "server_streaming":
        client[method.localName] = (request: unknown, o?: CallOptions) =>
          channel.makeServerStreamRequest(path, ser, de, request, metadata(), callOptions(o));
        break;
      case "client_streaming":
        client[method.localName] = (o?: CallOptions) => {
          let stream!: grpc.ClientWritableStream<unknown>;
          const response = new Promise((resolve, reject) => {
            stream = channel.makeClientStreamRequest(path, ser, de, metadata(), callOptions(o), (err, value) => {
              if (err) reject(wrapError(err));
              else resolve(value);
            });
          });
          return { stream, response };
        };
        break;
      case "bidi_streaming":
        client[method.localName] = (o?: CallOptions) =>
          channel.makeBidiStreamRequest(path, ser, de, metadata(), callOptions(o));
        break;
    }
  }
  return { client: client as ServiceClient<S>, channel, close: () => channel.close() };
}

/** grpc-js server options, plus the per-stream receive window. */
export interface ServerOptions extends grpc.ServerOptions {
  /**
   * HTTP/2 receive window of each stream, in bytes: what a client may send
   * on a stream before the server has read it. Default: the window of every
   * plugwire channel (8 MiB). A server that refuses calls from their headers
   * wants it small, so a refused call cannot push megabytes at it first.
   */
  streamWindowBytes?: number;
}

/** Starts a grpc-js server with the message limits set; `options` adds grpc-js server options (for example `interceptors`). */
export function createServer(maxMessageBytes?: number, options: ServerOptions = {}): grpc.Server {
  const { streamWindowBytes = FLOW_CONTROL_WINDOW_BYTES, ...grpcOptions } = options;
  const server = new grpc.Server({ ...grpcOptions, ...messageLimitOptions(maxMessageBytes) });
  // grpc-js 1.14 reads `grpc-node.flow_control_window` on clients only; its
  // server hands these options to http2.createServer when it binds, so the
  // per-stream window is set there. Guarded: a grpc-js without the field
  // simply keeps the default window.
  const internals = server as unknown as { commonServerOptions?: { settings?: Record<string, unknown> } };
  if (internals.commonServerOptions && typeof internals.commonServerOptions === "object") {
    internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, initialWindowSize: streamWindowBytes };
  }
  return server;
}

/** Binds a server to a unix socket path; resolves when it listens. */
export function listenUnix(server: grpc.Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) {
        reject(err);
        return;
      }
      widenConnectionWindows(server);
      deferTeardownOfSessions(server);
      dropSessionsNghttp2IsDoneWith(server);
      resolve();
    });
  });
}

/**
 * Raises the connection-level receive window of every HTTP/2 session the
 * server accepts (the per-stream window is set in createServer). grpc-js 1.14
 * has no option for either on servers; its http2 servers are reached through
 * a private field, guarded so that a grpc-js without it keeps the defaults.
 */
export function widenConnectionWindows(server: grpc.Server): void {
  const internals = server as unknown as { http2Servers?: Map<import("node:events").EventEmitter, unknown> };
  if (!(internals.http2Servers instanceof Map)) return;
  for (const http2Server of internals.http2Servers.keys()) {
    http2Server.on("session", (session: import("node:http2").Http2Session) => {
      session.setLocalWindowSize(FLOW_CONTROL_WINDOW_BYTES);
    });
  }
}

// ---- teardown outside nghttp2's receive processing (issue 12, fuzzing) ----

const TEARDOWN_DEFERRED = Symbol("plugwire.teardownDeferred");

/**
 * Makes `session.close()` and `session.destroy()` of a server's HTTP/2
 * session run on the next turn of the event loop, never inside nghttp2's
 * processing of received bytes. Idempotent.
 *
 * Both can otherwise run in the middle of `nghttp2_session_mem_recv2`:
 * node:http2's own close when the peer sends GOAWAY(NO_ERROR), node:http2's
 * destroy of a closed session when its last stream closes, and a close from a
 * 'stream' listener (the SDK's one-connection guard). One raw connection
 * whose single read holds GOAWAY, a call, more HEADERS and a frame with a bad
 * length then aborted the whole process, host or plugin (found by the
 * plugin-service fuzzer; host/test/sdk-raw-connections.test.ts):
 * - destroy calls `nghttp2_session_terminate_session` there; nghttp2 1.61.0
 *   (bundled by Node 20) keeps parsing the same read on some paths, and the
 *   bad frame hits `Assertion iframe->state == NGHTTP2_IB_IGN_ALL failed`
 *   (fixed upstream in nghttp2 1.67.1 and 1.68.1, CVE-2026-27135);
 * - once the session is closed, node:http2 refuses a new stream of the same
 *   read with RST_STREAM(REFUSED_STREAM), sends from inside the receive
 *   callback and destroys the stream twice (`malloc(): mismatching
 *   next->prev_size`; nodejs/node issue 64850 is the same family).
 * Deferred, both run outside the parser.
 */
export function deferSessionTeardown(session: import("node:http2").Http2Session): void {
  const marked = session as unknown as { [TEARDOWN_DEFERRED]?: true };
  if (marked[TEARDOWN_DEFERRED]) return;
  marked[TEARDOWN_DEFERRED] = true;
  const destroy = session.destroy.bind(session);
  const close = session.close.bind(session);
  let destroying = false;
  let closing = false;
  let closeEmitted = false;
  session.once("close", () => (closeEmitted = true));
  session.destroy = ((...args: Parameters<typeof session.destroy>) => {
    if (session.destroyed || destroying) return;
    destroying = true;
    setImmediate(() => destroy(...args));
  }) as typeof session.destroy;
  session.close = ((callback?: () => void) => {
    // The callback runs when the session is gone, whoever closes it (see onSessionClosed).
    if (typeof callback === "function") onSessionClosed(session, () => closeEmitted, callback);
    if (session.closed || session.destroyed || closing) return;
    closing = true;
    setImmediate(() => close());
  }) as typeof session.close;
}

/**
 * Runs `callback` once the session has closed ('close' emitted), now if it
 * already has. node:http2's close(callback) drops the callback of a session
 * that is already closing or destroyed, and a deferred close or destroy
 * (deferSessionTeardown) leaves `closed` false for a turn of the event loop:
 * grpc-js then passes its callback to close() (tryShutdown, unbind), which
 * dropped it, and the host's HostService never finished shutting down after
 * a plugin's GOAWAY or hang-up in the same turn
 * (host/test/session-teardown.test.ts).
 */
function onSessionClosed(session: import("node:http2").Http2Session, emitted: () => boolean, callback: () => void): void {
  if (emitted()) queueMicrotask(callback);
  else session.once("close", callback);
}

/** deferSessionTeardown for every session a bound grpc-js server accepts (its http2 servers are a private field, guarded). */
function deferTeardownOfSessions(server: grpc.Server): void {
  const internals = server as unknown as {
    http2Servers?: Map<import("node:events").EventEmitter, unknown>;
    sessions?: Map<import("node:http2").Http2Session, unknown>;
  };
  if (!(internals.http2Servers instanceof Map)) return;
  for (const http2Server of internals.http2Servers.keys()) http2Server.on("session", deferSessionTeardown);
  if (internals.sessions instanceof Map) for (const session of internals.sessions.keys()) deferSessionTeardown(session);
}

// ---- connections node:http2 gave up on are closed (issue 12, fuzzing) ----

/** How often a server's HTTP/2 session is checked for nghttp2 being done with it (dropSessionsNghttp2IsDoneWith). */
export const DONE_SESSION_CHECK_MS = 500;

const DONE_WATCHED = Symbol("plugwire.doneWatched");

/**
 * Destroys a server HTTP/2 session once nghttp2 wants neither to read nor to
 * write on it. Returns false when that cannot be told (node:http2's native
 * handle is a private field, guarded): then nothing is watched.
 *
 * After a connection error (for example DATA on an idle stream) nghttp2 sends
 * GOAWAY(PROTOCOL_ERROR) and from then on wants neither to read nor to write:
 * "the application should drop the connection" (nghttp2), and RFC 9113
 * §5.4.1 says the connection must be closed. node:http2 (Node 20) only stops
 * reading the socket: no event is emitted, the socket stays open, the peer's
 * bytes pile up unread and the session never sees its peer close. A plugin
 * held such a connection (the host's one, after a valid call) for good, and
 * the fuzzer judged it a hang (plugin-service #75066;
 * host/test/fuzz-regressions.test.ts). node:http2 itself reads the same state
 * through the handle's hasPendingData() before it destroys a closed session.
 * The check runs from a timer, never inside nghttp2's processing of received
 * bytes, and a session's destroy is deferred anyway (deferSessionTeardown).
 */
export function closeWhenNghttp2IsDone(session: import("node:http2").Http2Session): boolean {
  const marked = session as unknown as { [DONE_WATCHED]?: true };
  if (marked[DONE_WATCHED]) return true;
  const handleKey = Object.getOwnPropertySymbols(session).find((k) => k.description === "kHandle");
  if (!handleKey) return false;
  const handleOf = (): { hasPendingData?: () => boolean } | undefined => (session as unknown as Record<symbol, { hasPendingData?: () => boolean } | undefined>)[handleKey];
  if (typeof handleOf()?.hasPendingData !== "function") return false;
  marked[DONE_WATCHED] = true;
  const timer = setInterval(() => {
    if (session.destroyed) {
      clearInterval(timer);
      return;
    }
    const handle = handleOf();
    if (handle && typeof handle.hasPendingData === "function" && !handle.hasPendingData()) {
      clearInterval(timer);
      session.destroy();
    }
  }, DONE_SESSION_CHECK_MS);
  timer.unref();
  session.once("close", () => clearInterval(timer));
  return true;
}

/** closeWhenNghttp2IsDone for every session a bound grpc-js server accepts (its http2 servers are a private field, guarded). */
export function dropSessionsNghttp2IsDoneWith(server: grpc.Server): void {
  const internals = server as unknown as {
    http2Servers?: Map<import("node:events").EventEmitter, unknown>;
    sessions?: Map<import("node:http2").Http2Session, unknown>;
  };
  if (!(internals.http2Servers instanceof Map)) return;
  for (const http2Server of internals.http2Servers.keys()) http2Server.on("session", closeWhenNghttp2IsDone);
  if (internals.sessions instanceof Map) for (const session of internals.sessions.keys()) closeWhenNghttp2IsDone(session);
}

/**
 * The HTTP/2 stream under a server call, as a server interceptor sees it (the
 * innermost call of grpc-js 1.14 holds it in a private field). Undefined when
 * a grpc-js without the field is installed: callers then do without.
 */
export function http2StreamOf(call: grpc.ServerInterceptingCallInterface): import("node:http2").ServerHttp2Stream | undefined {
  const stream = (call as unknown as { stream?: unknown }).stream;
  if (stream && typeof stream === "object" && typeof (stream as { on?: unknown }).on === "function" && "session" in stream) {
    return stream as import("node:http2").ServerHttp2Stream;
  }
  return undefined;
}
