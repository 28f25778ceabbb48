/**
 * HostService: the application's ports served to plugins over the host's
 * unix socket. The caller is identified by its auth token and checked for the
 * capability each call needs.
 */
import { create } from "@bufbuild/protobuf";
import { constants as http2 } from "node:http2";
import * as grpc from "@grpc/grpc-js";
import {
  HostService,
  PeerSource as WirePeerSource,
  PlugwireError,
  WatchPeersResponseSchema,
  addService,
  bearerToken,
  createServer,
  http2StreamOf,
  listenTcp,
  listenUnix,
  toServiceStatus,
  type WatchPeersResponse,
  type TcpAddress,
} from "@plugwire/proto";
import { PLUGIN_DEFAULTS, type Capability } from "../config.js";
import type { HostMetrics } from "../metrics.js";
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
    const { ports } = options;
    addService(
      this.server,
      HostService,
      {
        async lookupX25519(request, call) {
          caller(call.metadata, "peers", "LookupX25519");
          return { x25519Pub: await ports.peers.lookupX25519(request.nodeId) };
        },
        async lookupName(request, call) {
          caller(call.metadata, "peers", "LookupName");
          return { name: await ports.peers.lookupName(request.nodeId) };
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
          caller(call.metadata, "control", "SendDirect");
          if (!request.send) throw new PlugwireError("invalid_argument", "SendDirect needs a 'send' field");
          await ports.control.sendDirect(request.send.peer, request.send.frame);
          return {};
        },
        async sendRouted(request, call) {
          const from = caller(call.metadata, "control", "SendRouted");
          const send = async (): Promise<boolean> => ports.control.sendRouted(request.dst, request.frame);
          // Only an origin in flight to the caller is remembered (the Caller
          // checks); a forged one is sent without being kept.
          const routed = request.origin
            ? await from.sendRoutedOnce(Number(request.origin.seq), request.origin.index, send, { dst: request.dst, frame: request.frame })
            : await send();
          return { routed };
        },
        async getSigningSeed(_request, call) {
          caller(call.metadata, "identity", "GetSigningSeed");
          return { seed: await ports.identity.signingSeed() };
        },
      },
      {
        // Token, capability and limits are checked by intercept() from the
        // headers, before the body is read; the handlers check again.
        authorize: () => undefined,
      },
    );
  }

  private readonly checkCaller: (metadata: grpc.Metadata, capability: Capability, method: string) => Caller;

  private limitsOf(plugin: string): HostCallLimits {
    return { ...HOST_CALL_LIMIT_DEFAULTS, ...this.options.limitsOf?.(plugin) };
  }

  private callsOf(plugin: string): PluginCalls {
    let calls = this.calls.get(plugin);
    if (!calls) this.calls.set(plugin, (calls = { buckets: new Map(), watchStreams: 0, requestBytes: 0 }));
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
    const rate = limits[spec.limit];
    if (rate > 0) {
      let bucket = calls.buckets.get(spec.limit);
      if (!bucket) calls.buckets.set(spec.limit, (bucket = new Bucket(rate)));
      if (!bucket.take(rate)) {
        const text = `plugin '${plugin}' exceeded its limit of ${rate} ${CLASS_TEXT[spec.limit]} calls per second (host option ${spec.limit})`;
        this.refused(plugin, "rate_limit", { limit: spec.limit, rate }, `${text}; refusing the excess with RESOURCE_EXHAUSTED`);
        throw new PlugwireError("queue_full", `${text}; ${method} was refused: retry later, or raise ${spec.limit} in the plugin's host config`, { plugin });
      }
    }
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

  /** The server interceptor: admit() on the headers, the release when the call ends. */
  private intercept(method: grpc.ServerMethodDefinition<unknown, unknown>, call: grpc.ServerInterceptingCallInterface): grpc.ServerInterceptingCall {
    const name = method.path.startsWith(SERVICE_PREFIX) ? method.path.slice(SERVICE_PREFIX.length) : "";
    let release: () => void = () => undefined;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            if (METHODS[name] !== undefined) {
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
  }

  get address(): string {
    return `unix://${this.options.socketPath}`;
  }

  /** Also serves HostService on TCP (host option remoteHostService, launch/attach.ts); resolves with the port. */
  listenRemote(address: TcpAddress, credentials: grpc.ServerCredentials): Promise<number> {
    return listenTcp(this.server, address, credentials);
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

  /** Open WatchPeers streams by plugin, and request bytes in transfer: for status and tests. */
  debugState(): { watchers: Record<string, number>; requestBytes: Record<string, number> } {
    const watchers: Record<string, number> = {};
    const requestBytes: Record<string, number> = {};
    for (const [plugin, calls] of this.calls) {
      watchers[plugin] = calls.watchStreams;
      requestBytes[plugin] = calls.requestBytes;
    }
    return { watchers, requestBytes };
  }

  async close(): Promise<void> {
    this.warnings.close();
    for (const watcher of this.watchers) watcher.stream.end();
    this.watchers.clear();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  forceClose(): void {
    this.warnings.close();
    this.server.forceShutdown();
  }
}

export type { NodeId };
