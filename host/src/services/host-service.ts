/**
 * HostService: the application's ports served to plugins over the host's
 * unix socket. The caller is identified by its auth token and checked for the
 * capability each call needs.
 */
import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { chmodSync, lstatSync, mkdirSync, rmSync } from "node:fs";
import { constants as http2 } from "node:http2";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  HostService,
  PeerSource as WirePeerSource,
  type CallsRequest,
  type CallsResponse,
  type CallsResponseSchema,
  PlugwireError,
  WatchPeersResponseSchema,
  addService,
  bearerToken,
  createServer,
  http2StreamOf,
  listenTcp,
  listenUnix,
  toServiceStatus,
  type GetSigningSeedRequest,
  type GetSigningSeedResponse,
  type LookupNameRequest,
  type LookupNameResponse,
  type LookupX25519Request,
  type LookupX25519Response,
  type SendDirectRequest,
  type SendDirectResponse,
  type SendRoutedRequest,
  type SendRoutedResponse,
  type WatchPeersResponse,
  type TcpAddress,
} from "@plugwire/proto";
import { PLUGIN_DEFAULTS, type Capability } from "../config.js";
import type { HostMetrics } from "../metrics.js";
import { MAX_CONNECTIONS_PER_TOKEN, MAX_UNAUTHENTICATED_CONNECTIONS, UNAUTHENTICATED_IDLE_MS, limitConnections } from "./connection-guard.js";
import type { HostPorts, NodeId, PeerEvent } from "../ports.js";

/** The plugin behind a token, as the host service needs to know it. */
export interface Caller {
  name: string;
  capabilities: ReadonlySet<Capability>;
  /** Answers a SendRouted made from a payload handler, deduplicated by (seq, index); `call` is what it sends. */
  sendRoutedOnce(seq: number, index: number, send: () => Promise<boolean>, call: { dst: Uint8Array; frame: Uint8Array }): Promise<boolean>;
}

/** The per-plugin limits of HostService calls (host options of the same names, docs/configuration.md). */
export interface HostCallLimits {
  /** LookupX25519, LookupName, GetSigningSeed and WatchPeers opens per second; 0: no limit. */
  hostLookupsPerSecond: number;
  /** SendDirect and SendRouted calls per second; 0: no limit. */
  hostSendsPerSecond: number;
  /** WatchPeers streams open at once. */
  maxWatchPeersStreams: number;
  /** Unread peer events after which a WatchPeers stream is ended. */
  maxWatchPeersBacklog: number;
  /** Bytes of request bodies in transfer at once. */
  maxHostCallBytes: number;
}

export const HOST_CALL_LIMIT_DEFAULTS: HostCallLimits = {
  hostLookupsPerSecond: PLUGIN_DEFAULTS.hostLookupsPerSecond,
  hostSendsPerSecond: PLUGIN_DEFAULTS.hostSendsPerSecond,
  maxWatchPeersStreams: PLUGIN_DEFAULTS.maxWatchPeersStreams,
  maxWatchPeersBacklog: PLUGIN_DEFAULTS.maxWatchPeersBacklog,
  maxHostCallBytes: PLUGIN_DEFAULTS.maxHostCallBytes,
};

/** Where the host service reports a limit hit: a pino logger will do. */
export interface WarnLogger {
  warn(fields: object, msg: string): void;
}

export interface HostServiceOptions {
  ports: HostPorts;
  socketPath: string;
  /** Resolves a token to the calling plugin, or undefined for an unknown token. */
  callerOf(token: string): Caller | undefined;
  /** The limits of a plugin's calls, by plugin name; defaults when undefined. */
  limitsOf?(plugin: string): Partial<HostCallLimits> | undefined;
  logger?: WarnLogger;
  metrics?: HostMetrics;
  /** A limit hit is logged at once, then once per this many ms with a count while it goes on. Default 10 s. */
  warnIntervalMs?: number;
}

/** HTTP/2 streams open at once per connection to the host's socket (docs/protocol.md §13). */
export const MAX_CONCURRENT_STREAMS_PER_CONNECTION = 128;

/**
 * HTTP/2 receive window of each HostService stream: a 1 MiB call goes in one
 * round trip (6 ms; 67 ms with the 64 KiB HTTP/2 default), and a call
 * refused from its headers pushes at most this much at the host before its
 * reset reaches the client (100 refused 16 MiB calls: no measurable growth).
 */
const STREAM_WINDOW_BYTES = 1024 * 1024;

const SERVICE_PREFIX = `/${HostService.typeName}/`;

/** What each method needs, and which rate limit it counts against. */
const METHODS: Readonly<Record<string, { capability: Capability; limit: "hostLookupsPerSecond" | "hostSendsPerSecond" }>> = {
  LookupX25519: { capability: "peers", limit: "hostLookupsPerSecond" },
  LookupName: { capability: "peers", limit: "hostLookupsPerSecond" },
  WatchPeers: { capability: "peers", limit: "hostLookupsPerSecond" },
  GetSigningSeed: { capability: "identity", limit: "hostLookupsPerSecond" },
  SendDirect: { capability: "control", limit: "hostSendsPerSecond" },
  SendRouted: { capability: "control", limit: "hostSendsPerSecond" },
};

const CLASS_TEXT = {
  hostLookupsPerSecond: "LookupX25519/LookupName/GetSigningSeed/WatchPeers",
  hostSendsPerSecond: "SendDirect/SendRouted",
} as const;

/** The unary method each call of the Calls stream stands for (by its oneof case). */
const CALL_METHODS = {
  lookupX25519: "LookupX25519",
  lookupName: "LookupName",
  sendDirect: "SendDirect",
  sendRouted: "SendRouted",
  getSigningSeed: "GetSigningSeed",
} as const;

/**
 * Calls of one Calls stream the host runs at once; past this many it stops
 * reading the stream until one finishes (as MAX_CONCURRENT_STREAMS_PER_CONNECTION
 * bounds unary calls).
 */
export const MAX_CALLS_IN_PROGRESS_PER_STREAM = 128;

/**
 * What a HostService call does, once its caller is known and admitted: shared
 * by the unary RPCs and the Calls stream. Answers are complete messages (with
 * their $typeName), so encoding them needs no reflective create().
 */
function hostOps(ports: HostPorts) {
  return {
    async lookupX25519(_from: Caller, request: LookupX25519Request): Promise<LookupX25519Response> {
      return { $typeName: "plugwire.v1.LookupX25519Response", x25519Pub: await ports.peers.lookupX25519(request.nodeId) };
    },
    async lookupName(_from: Caller, request: LookupNameRequest): Promise<LookupNameResponse> {
      return { $typeName: "plugwire.v1.LookupNameResponse", name: await ports.peers.lookupName(request.nodeId) };
    },
    async sendDirect(_from: Caller, request: SendDirectRequest): Promise<SendDirectResponse> {
      if (!request.send) throw new PlugwireError("invalid_argument", "SendDirect needs a 'send' field");
      await ports.control.sendDirect(request.send.peer, request.send.frame);
      return { $typeName: "plugwire.v1.SendDirectResponse" };
    },
    async sendRouted(from: Caller, request: SendRoutedRequest): Promise<SendRoutedResponse> {
      const send = async (): Promise<boolean> => ports.control.sendRouted(request.dst, request.frame);
      // Only an origin in flight to the caller is remembered (the Caller
      // checks); a forged one is sent without being kept.
      const routed = request.origin
        ? await from.sendRoutedOnce(Number(request.origin.seq), request.origin.index, send, { dst: request.dst, frame: request.frame })
        : await send();
      return { $typeName: "plugwire.v1.SendRoutedResponse", routed };
    },
    async getSigningSeed(_from: Caller, _request: GetSigningSeedRequest): Promise<GetSigningSeedResponse> {
      return { $typeName: "plugwire.v1.GetSigningSeedResponse", seed: await ports.identity.signingSeed() };
    },
  };
}
type HostOps = ReturnType<typeof hostOps>;

/** Bytes a call's request holds in its bytes fields: what maxHostCallBytes counts for a call on the Calls stream. */
function callRequestBytes(call: CallsRequest["call"]): number {
  switch (call.case) {
    case "lookupX25519":
    case "lookupName":
      return call.value.nodeId.byteLength;
    case "sendDirect":
      return (call.value.send?.peer.byteLength ?? 0) + (call.value.send?.frame.byteLength ?? 0);
    case "sendRouted":
      return call.value.dst.byteLength + call.value.frame.byteLength;
    default:
      return 0;
  }
}

/** A token bucket holding up to one second of calls. */
class Bucket {
  private tokens: number;
  private last = performance.now();
  constructor(private rate: number) {
    this.tokens = rate;
  }
  take(rate: number): boolean {
    if (rate !== this.rate) {
      this.rate = rate;
      this.tokens = Math.min(this.tokens, rate);
    }
    const now = performance.now();
    this.tokens = Math.min(rate, this.tokens + ((now - this.last) * rate) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** What the host service keeps per plugin (by name, so across launches). */
interface PluginCalls {
  buckets: Map<string, Bucket>;
  watchStreams: number;
  requestBytes: number;
  /** Calls answered on Calls streams, ever. */
  streamCalls: number;
}

/**
 * Logs a repeated event once when it starts, then at most once per interval
 * with the count of repeats, until an interval passes without one.
 */
class AggregatedWarnings {
  private readonly open = new Map<string, { count: number; timer: NodeJS.Timeout }>();
  constructor(
    private readonly logger: WarnLogger | undefined,
    private readonly intervalMs: number,
  ) {}

  report(key: string, fields: object, msg: string): void {
    const entry = this.open.get(key);
    if (entry) {
      entry.count++;
      return;
    }
    this.logger?.warn(fields, msg);
    const state = { count: 0, timer: undefined as unknown as NodeJS.Timeout };
    const tick = (): void => {
      if (state.count === 0) {
        this.open.delete(key);
        return;
      }
      this.logger?.warn({ ...fields, repeats: state.count, intervalMs: this.intervalMs }, `${msg} (${state.count} more time(s) in the last ${this.intervalMs / 1000} s)`);
      state.count = 0;
      state.timer = setTimeout(tick, this.intervalMs).unref();
    };
    state.timer = setTimeout(tick, this.intervalMs).unref();
    this.open.set(key, state);
  }

  close(): void {
    for (const { timer } of this.open.values()) clearTimeout(timer);
    this.open.clear();
  }
}

function toWireEvent(event: PeerEvent): WatchPeersResponse {
  return create(WatchPeersResponseSchema, {
    event: {
      event:
        event.type === "seen"
          ? {
              case: "seen",
              value: {
                nodeId: event.nodeId,
                x25519Pub: event.x25519Pub,
                name: event.name,
                source: event.source === "direct" ? WirePeerSource.DIRECT : WirePeerSource.ROUTED,
              },
            }
          : { case: "forgotten", value: { nodeId: event.nodeId } },
    },
  });
}

/** A failed call of the Calls stream: the status its unary twin would have ended with. */
function callError(e: unknown): { code: number; message: string } {
  const status = toServiceStatus(e);
  return { code: status.code ?? grpc.status.INTERNAL, message: status.details ?? "" };
}

/** The status grpc-js sends for an error (toServiceStatus always sets code and details). */
function statusOf(e: unknown): Parameters<grpc.ServerInterceptingCallInterface["sendStatus"]>[0] {
  return toServiceStatus(e) as Parameters<grpc.ServerInterceptingCallInterface["sendStatus"]>[0];
}

/**
 * Answers a call with the error's status and then resets its stream
 * (RST_STREAM NO_ERROR, RFC 9113 §8.1): the client has its answer and stops
 * sending the rest of its body, which the host would otherwise have to read
 * and discard, up to 16 MiB per call.
 */
function refuse(call: grpc.ServerInterceptingCallInterface, e: unknown): void {
  call.sendStatus(statusOf(e));
  const stream = http2StreamOf(call);
  if (stream && !stream.closed && !stream.destroyed) stream.close(http2.NGHTTP2_NO_ERROR);
}

interface Watcher {
  plugin: string;
  backlog: number;
  stream: grpc.ServerWritableStream<unknown, WatchPeersResponse>;
}

export class HostServiceServer {
  private readonly server: grpc.Server;
  private readonly watchers = new Set<Watcher>();
  /** Open Calls streams: ended when the host service closes, as WatchPeers streams are. */
  private readonly callStreams = new Set<grpc.ServerDuplexStream<CallsRequest, CallsResponse>>();
  private readonly calls = new Map<string, PluginCalls>();
  private readonly warnings: AggregatedWarnings;

  constructor(private readonly options: HostServiceOptions) {
    this.warnings = new AggregatedWarnings(options.logger, options.warnIntervalMs ?? 10_000);
    this.server = createServer(undefined, {
      interceptors: [(method, call) => this.intercept(method, call)],
      // Each open HTTP/2 stream costs the host some 16 KiB: 10 000 opened at
      // once on one connection took 165 MB. Past this many, a client's new
      // streams wait for a free one (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
      "grpc.max_concurrent_streams": MAX_CONCURRENT_STREAMS_PER_CONNECTION,
      // What a client may send on a stream before the host reads it: a call
      // refused from its headers cannot push more than this at the host.
      streamWindowBytes: STREAM_WINDOW_BYTES,
    });
    const caller = (metadata: grpc.Metadata, capability: Capability, method: string): Caller => {
      const token = bearerToken(metadata);
      const found = token === undefined ? undefined : options.callerOf(token);
      if (!found) {
        throw new PlugwireError(
          "unauthenticated",
          `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`,
        );
      }
      if (!found.capabilities.has(capability)) {
        throw new PlugwireError(
          "permission_denied",
          `plugin '${found.name}' called ${method} without the '${capability}' capability; grant it in the plugin's capabilities in the host config`,
          { plugin: found.name },
        );
      }
      return found;
    };
    this.checkCaller = caller;
    const ops = hostOps(options.ports);
    this.ops = ops;
    addService(
      this.server,
      HostService,
      {
        async lookupX25519(request, call) {
          return ops.lookupX25519(caller(call.metadata, "peers", "LookupX25519"), request);
        },
        async lookupName(request, call) {
          return ops.lookupName(caller(call.metadata, "peers", "LookupName"), request);
        },
        watchPeers: async (_request, call) => {
          const from = caller(call.metadata, "peers", "WatchPeers");
          const watcher: Watcher = {
            plugin: from.name,
            backlog: this.limitsOf(from.name).maxWatchPeersBacklog,
            stream: call as unknown as grpc.ServerWritableStream<unknown, WatchPeersResponse>,
          };
          const ended = new Promise<void>((resolve) => {
            call.once("cancelled", resolve);
            call.once("close", resolve);
            call.once("error", resolve);
            call.once("finish", resolve);
          });
          this.watchers.add(watcher);
          // Response headers tell the plugin it is subscribed: every event
          // published from now on reaches it.
          call.sendMetadata(new grpc.Metadata());
          await ended;
          this.watchers.delete(watcher);
        },
        async sendDirect(request, call) {
          return ops.sendDirect(caller(call.metadata, "control", "SendDirect"), request);
        },
        async sendRouted(request, call) {
          return ops.sendRouted(caller(call.metadata, "control", "SendRouted"), request);
        },
        async getSigningSeed(request, call) {
          return ops.getSigningSeed(caller(call.metadata, "identity", "GetSigningSeed"), request);
        },
        calls: (call) => this.serveCalls(call),
      },
      {
        // Token, capability and limits are checked by intercept() from the
        // headers, before the body is read; the handlers check again.
        authorize: () => undefined,
      },
    );
  }

  private readonly checkCaller: (metadata: grpc.Metadata, capability: Capability, method: string) => Caller;
  private readonly ops: HostOps;

  /** Limits by the object limitsOf() returned (a plugin's config): read once per config, not per call. */
  private readonly limitsCache = new WeakMap<object, HostCallLimits>();

  private limitsOf(plugin: string): HostCallLimits {
    const given = this.options.limitsOf?.(plugin);
    if (given === undefined) return HOST_CALL_LIMIT_DEFAULTS;
    let limits = this.limitsCache.get(given);
    if (limits === undefined) {
      // Only the five limits: limitsOf may hand over a whole plugin config.
      limits = { ...HOST_CALL_LIMIT_DEFAULTS };
      for (const key of Object.keys(HOST_CALL_LIMIT_DEFAULTS) as Array<keyof HostCallLimits>) {
        const value = given[key];
        if (value !== undefined) limits[key] = value;
      }
      this.limitsCache.set(given, limits);
    }
    return limits;
  }

  private callsOf(plugin: string): PluginCalls {
    let calls = this.calls.get(plugin);
    if (!calls) this.calls.set(plugin, (calls = { buckets: new Map(), watchStreams: 0, requestBytes: 0, streamCalls: 0 }));
    return calls;
  }

  private refused(plugin: string, reason: string, fields: object, msg: string): void {
    this.options.metrics?.hostCallsRefused.inc({ plugin, reason });
    this.warnings.report(`${plugin}\u0000${reason}`, { plugin, reason, ...fields }, msg);
  }

  /**
   * Checks a call from its headers, before grpc-js reads its body: the
   * token, the capability, the rate limit and the WatchPeers stream limit.
   * Returns the release of what the call holds, to run when it ends.
   */
  private admit(metadata: grpc.Metadata, method: string, call: grpc.ServerInterceptingCallInterface): () => void {
    const spec = METHODS[method]!;
    const from = this.checkCaller(metadata, spec.capability, method);
    const plugin = from.name;
    const limits = this.limitsOf(plugin);
    const calls = this.callsOf(plugin);
    this.takeRate(plugin, method, limits, calls);
    const releases: Array<() => void> = [];
    if (method === "WatchPeers") {
      if (calls.watchStreams >= limits.maxWatchPeersStreams) {
        const text = `plugin '${plugin}' has ${calls.watchStreams} WatchPeers streams open, the most it may (host option maxWatchPeersStreams)`;
        this.refused(plugin, "watch_streams", { limit: "maxWatchPeersStreams", max: limits.maxWatchPeersStreams }, `${text}; refusing more`);
        throw new PlugwireError("queue_full", `${text}; WatchPeers was refused: cancel a stream you no longer read, or raise maxWatchPeersStreams in the plugin's host config`, { plugin });
      }
      calls.watchStreams++;
      releases.push(() => calls.watchStreams--);
    }
    // Bytes of request bodies in transfer: counted as grpc-js reads them and
    // given back when the call ends, so a plugin cannot make the host buffer
    // many large bodies at once.
    const stream = http2StreamOf(call);
    if (stream) {
      let held = 0;
      let counting = true;
      const onData = (chunk: Buffer): void => {
        if (!counting) return;
        held += chunk.length;
        calls.requestBytes += chunk.length;
        if (calls.requestBytes > limits.maxHostCallBytes) {
          counting = false;
          calls.requestBytes -= held;
          held = 0;
          const text = `plugin '${plugin}' had more than ${limits.maxHostCallBytes} bytes of HostService requests in transfer at once (host option maxHostCallBytes)`;
          this.refused(plugin, "request_bytes", { limit: "maxHostCallBytes", max: limits.maxHostCallBytes }, `${text}; refusing the excess with RESOURCE_EXHAUSTED`);
          refuse(
            call,
            new PlugwireError("queue_full", `${text}; ${method} was refused: send fewer large calls at once, or raise maxHostCallBytes in the plugin's host config`, { plugin }),
          );
        }
      };
      stream.on("data", onData);
      releases.push(() => {
        counting = false;
        stream.off("data", onData);
        calls.requestBytes -= held;
        held = 0;
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const release of releases) release();
    };
  }

  /** Counts a call against its rate limit; throws queue_full (RESOURCE_EXHAUSTED) when over it. */
  private takeRate(plugin: string, method: string, limits: HostCallLimits, calls: PluginCalls): void {
    const spec = METHODS[method]!;
    const rate = limits[spec.limit];
    if (rate <= 0) return;
    let bucket = calls.buckets.get(spec.limit);
    if (!bucket) calls.buckets.set(spec.limit, (bucket = new Bucket(rate)));
    if (!bucket.take(rate)) {
      const text = `plugin '${plugin}' exceeded its limit of ${rate} ${CLASS_TEXT[spec.limit]} calls per second (host option ${spec.limit})`;
      this.refused(plugin, "rate_limit", { limit: spec.limit, rate }, `${text}; refusing the excess with RESOURCE_EXHAUSTED`);
      throw new PlugwireError("queue_full", `${text}; ${method} was refused: retry later, or raise ${spec.limit} in the plugin's host config`, { plugin });
    }
  }

  /** The caller behind a Calls stream's token, checked when it opens and again for every call on it. */
  private callerOfToken(token: string | undefined, method: string): Caller {
    const found = token === undefined ? undefined : this.options.callerOf(token);
    if (!found) {
      throw new PlugwireError(
        "unauthenticated",
        `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`,
      );
    }
    return found;
  }

  /**
   * Serves one Calls stream: every request is one unary call, admitted
   * exactly as the unary RPC would be (token, capability, rate limit,
   * request bytes), run, and answered with its id; a failed call answers
   * with its status as a CallError and the stream goes on. A token that is
   * no longer valid (the launch ended) ends the stream with UNAUTHENTICATED.
   */
  private serveCalls(call: grpc.ServerDuplexStream<CallsRequest, CallsResponse>): void {
    const token = bearerToken(call.metadata);
    this.callStreams.add(call);
    const forget = (): void => {
      this.callStreams.delete(call);
    };
    call.once("close", forget);
    call.once("cancelled", forget);
    call.once("finish", forget);
    let inProgress = 0;
    let ended = false;
    let paused = false;
    const finish = (): void => {
      if (ended && inProgress === 0) call.end();
    };
    const answer = (response: CallsResponse | MessageInitShape<typeof CallsResponseSchema>): void => {
      if (!call.cancelled && !call.destroyed && call.writable) call.write(response as CallsResponse);
    };
    call.on("data", (request: CallsRequest) => {
      const id = request.id;
      const which = request.call.case;
      let from: Caller;
      try {
        from = this.callerOfToken(token, which === undefined ? "Calls" : CALL_METHODS[which]);
      } catch (e) {
        // The launch behind the token ended: its calls are refused from now on.
        call.emit("error", toServiceStatus(e));
        return;
      }
      if (which === undefined) {
        answer({ id, result: { case: "error", value: callError(new PlugwireError("invalid_argument", `Calls request ${id} names no call this host knows; update the host, or use the unary RPC`)) } });
        return;
      }
      const method = CALL_METHODS[which];
      const plugin = from.name;
      let release = (): void => undefined;
      let pending: Promise<CallsResponse["result"]["value"] & object>;
      try {
        const spec = METHODS[method]!;
        if (!from.capabilities.has(spec.capability)) {
          throw new PlugwireError(
            "permission_denied",
            `plugin '${plugin}' called ${method} without the '${spec.capability}' capability; grant it in the plugin's capabilities in the host config`,
            { plugin },
          );
        }
        const limits = this.limitsOf(plugin);
        const calls = this.callsOf(plugin);
        this.takeRate(plugin, method, limits, calls);
        const bytes = callRequestBytes(request.call);
        if (bytes > 0) {
          if (calls.requestBytes + bytes > limits.maxHostCallBytes) {
            const text = `plugin '${plugin}' had more than ${limits.maxHostCallBytes} bytes of HostService requests in transfer at once (host option maxHostCallBytes)`;
            this.refused(plugin, "request_bytes", { limit: "maxHostCallBytes", max: limits.maxHostCallBytes }, `${text}; refusing the excess with RESOURCE_EXHAUSTED`);
            throw new PlugwireError("queue_full", `${text}; ${method} was refused: send fewer large calls at once, or raise maxHostCallBytes in the plugin's host config`, { plugin });
          }
          calls.requestBytes += bytes;
          release = () => {
            calls.requestBytes -= bytes;
          };
        }
        pending = this.runOp(from, request.call);
        calls.streamCalls++;
      } catch (e) {
        release();
        answer({ id, result: { case: "error", value: callError(e) } });
        return;
      }
      inProgress++;
      if (inProgress >= MAX_CALLS_IN_PROGRESS_PER_STREAM && !paused) {
        paused = true;
        call.pause();
      }
      pending
        .then(
          (value) => answer({ $typeName: "plugwire.v1.CallsResponse", id, result: { case: which, value } } as CallsResponse),
          (e: unknown) => answer({ id, result: { case: "error", value: callError(e) } }),
        )
        .finally(() => {
          release();
          inProgress--;
          if (paused && inProgress < MAX_CALLS_IN_PROGRESS_PER_STREAM) {
            paused = false;
            call.resume();
          }
          finish();
        });
    });
    call.on("end", () => {
      ended = true;
      finish();
    });
    call.on("error", () => undefined);
  }

  private runOp(from: Caller, c: CallsRequest["call"]): Promise<CallsResponse["result"]["value"] & object> {
    const ops = this.ops;
    switch (c.case) {
      case "lookupX25519":
        return ops.lookupX25519(from, c.value);
      case "lookupName":
        return ops.lookupName(from, c.value);
      case "sendDirect":
        return ops.sendDirect(from, c.value);
      case "sendRouted":
        return ops.sendRouted(from, c.value);
      case "getSigningSeed":
        return ops.getSigningSeed(from, c.value);
      default:
        return Promise.reject(new PlugwireError("invalid_argument", "a Calls request names no call"));
    }
  }

  /** The server interceptor: admit() on the headers, the release when the call ends. */
  private intercept(method: grpc.ServerMethodDefinition<unknown, unknown>, call: grpc.ServerInterceptingCallInterface): grpc.ServerInterceptingCall {
    const name = method.path.startsWith(SERVICE_PREFIX) ? method.path.slice(SERVICE_PREFIX.length) : "";
    let release: () => void = () => undefined;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            if (name === "Calls") {
              // The token now; each call on the stream is admitted as it arrives.
              try {
                this.callerOfToken(bearerToken(metadata), "Calls");
              } catch (e) {
                refuse(call, e);
                return;
              }
            } else if (METHODS[name] !== undefined) {
              try {
                release = this.admit(metadata, name, call);
              } catch (e) {
                // Refused before the body is read.
                refuse(call, e);
                return;
              }
            }
            nextMetadata(metadata);
          },
          onCancel: () => release(),
        });
      },
    });
  }

  async listen(): Promise<void> {
    await listenUnix(this.server, this.options.socketPath);
    this.limitConnections();
  }

  /** Bounds unauthenticated connections and connections per launch token (connection-guard.ts); again after every new bind. */
  private limitConnections(): void {
    const ok = limitConnections(this.server, (token) => this.options.callerOf(token) !== undefined, {
      onUnauthenticatedDropped: (reason) =>
        this.warnings.report(
          `unauthenticated-${reason}`,
          { reason, max: MAX_UNAUTHENTICATED_CONNECTIONS, idleMs: UNAUTHENTICATED_IDLE_MS },
          reason === "idle"
            ? `closed a connection to the host's HostService that made no call with a plugin's token within ${UNAUTHENTICATED_IDLE_MS} ms`
            : `closed the oldest of more than ${MAX_UNAUTHENTICATED_CONNECTIONS} connections to the host's HostService that made no call with a plugin's token; something local is opening connections it does not use`,
        ),
      onTooManyForToken: (token) => {
        const plugin = this.options.callerOf(token)?.name ?? "?";
        this.warnings.report(
          `too-many-connections-${plugin}`,
          { plugin, max: MAX_CONNECTIONS_PER_TOKEN },
          `plugin '${plugin}' opened more than ${MAX_CONNECTIONS_PER_TOKEN} connections to HostService; the newest was closed. One connection is enough (docs/protocol.md §9)`,
        );
      },
    });
    if (!ok) this.options.logger?.warn({}, "cannot bound the connections to HostService (grpc-js internals changed); only the token checks apply");
  }

  /**
   * Serves host.sock again if something removed it, or its whole directory
   * (a temp-dir cleaner under a long-running host): the socket file goes,
   * connections made before keep working, and every new one fails. Re-creates
   * the directory (0700) and binds a new listener on the same path. Resolves
   * true when it had to.
   */
  async ensureListening(): Promise<boolean> {
    const path = this.options.socketPath;
    try {
      if (lstatSync(path).isSocket()) return false;
    } catch {
      // gone: serve it again below
    }
    this.server.unbind(`unix://${path}`);
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    chmodSync(dirname(path), 0o700);
    rmSync(path, { force: true });
    await listenUnix(this.server, path);
    this.limitConnections();
    return true;
  }

  get address(): string {
    return `unix://${this.options.socketPath}`;
  }

  /** Also serves HostService on TCP (host option remoteHostService, launch/attach.ts); resolves with the port. */
  listenRemote(address: TcpAddress, credentials: grpc.ServerCredentials): Promise<number> {
    return listenTcp(this.server, address, credentials).then((port) => {
      this.limitConnections();
      return port;
    });
  }

  /**
   * Sends an event to every WatchPeers stream open now. A stream whose
   * plugin left `maxWatchPeersBacklog` events unread gets no more: it is
   * ended with RESOURCE_EXHAUSTED (after the events it already holds), so a
   * stream nobody reads holds a bounded number of events.
   */
  publish(event: PeerEvent): number {
    const message = toWireEvent(event);
    let sent = 0;
    for (const watcher of this.watchers) {
      const { stream, plugin } = watcher;
      if (stream.writableLength >= watcher.backlog) {
        this.watchers.delete(watcher);
        const text = `plugin '${plugin}' fell behind on WatchPeers: ${stream.writableLength} peer events were waiting unread (host option maxWatchPeersBacklog ${watcher.backlog})`;
        this.refused(plugin, "watch_backlog", { limit: "maxWatchPeersBacklog", max: watcher.backlog }, `${text}; ended the stream`);
        stream.emit(
          "error",
          toServiceStatus(new PlugwireError("queue_full", `${text}; the host ended the stream: reopen WatchPeers and re-sync with LookupX25519/LookupName, and read the stream promptly`, { plugin })),
        );
        continue;
      }
      stream.write(message);
      sent++;
    }
    return sent;
  }

  /** Open WatchPeers streams by plugin, request bytes in transfer, and calls run on Calls streams: for status and tests. */
  debugState(): { watchers: Record<string, number>; requestBytes: Record<string, number>; streamCalls: Record<string, number> } {
    const watchers: Record<string, number> = {};
    const requestBytes: Record<string, number> = {};
    const streamCalls: Record<string, number> = {};
    for (const [plugin, calls] of this.calls) {
      watchers[plugin] = calls.watchStreams;
      requestBytes[plugin] = calls.requestBytes;
      streamCalls[plugin] = calls.streamCalls;
    }
    return { watchers, requestBytes, streamCalls };
  }

  async close(): Promise<void> {
    this.warnings.close();
    for (const watcher of this.watchers) watcher.stream.end();
    this.watchers.clear();
    for (const stream of this.callStreams) stream.end();
    this.callStreams.clear();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  forceClose(): void {
    this.warnings.close();
    this.server.forceShutdown();
  }
}

export type { NodeId };
