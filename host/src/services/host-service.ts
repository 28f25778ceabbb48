/**
 * HostService: the application's ports served to plugins over the host's
 * unix socket. The caller is identified by its auth token and checked for the
 * capability each call needs.
 */
import { create, type DescMessage } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  HostService,
  PeerSource as WirePeerSource,
  PlugwireError,
  WatchPeersResponseSchema,
  addService,
  bearerToken,
  createServer,
  listenUnix,
  type WatchPeersResponse,
} from "@plugwire/proto";
import type { Capability } from "../config.js";
import type { HostPorts, NodeId, PeerEvent } from "../ports.js";

/** The plugin behind a token, as the host service needs to know it. */
export interface Caller {
  name: string;
  capabilities: ReadonlySet<Capability>;
  /** Answers a SendRouted made from a payload handler, deduplicated by (seq, index); `call` is what it sends. */
  sendRoutedOnce(seq: number, index: number, send: () => Promise<boolean>, call: { dst: Uint8Array; frame: Uint8Array }): Promise<boolean>;
}

export interface HostServiceOptions {
  ports: HostPorts;
  socketPath: string;
  /** Resolves a token to the calling plugin, or undefined for an unknown token. */
  callerOf(token: string): Caller | undefined;
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

/**
 * Most protobuf fields a HostService request may hold, nested ones included;
 * real requests hold at most five. grpc-js decodes a request before its token
 * is checked, and a 16 MiB request of millions of tiny fields kept protobuf-es
 * busy for seconds and took gigabytes: four of them, sent without a token,
 * killed the host out of memory (found by the fuzzer, fuzz/). The count runs
 * on the raw bytes before decoding and stops at the limit, so a request costs
 * a few hundred steps whatever its size; a large `frame` is one field.
 */
const MAX_REQUEST_FIELDS = 256;

/** Throws unless `bytes` is protobuf with at most `budget.left` fields (those of nested messages of `schema` included). */
function checkFieldCount(schema: DescMessage, bytes: Uint8Array, budget: { left: number }): void {
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
    if (--budget.left < 0) throw new Error(`a HostService request holds at most ${MAX_REQUEST_FIELDS} fields`);
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
      if (nested) checkFieldCount(nested, bytes.subarray(pos, end), budget);
      pos = end;
    } else if (wireType !== 3 && wireType !== 4) throw new Error(`invalid wire type ${wireType}`);
    if (pos > bytes.length) throw new Error("fixed-size field runs past the end");
  }
}

/** A server whose HostService requests are checked by checkFieldCount before grpc-js decodes them. */
function createGuardedServer(): grpc.Server {
  const server = createServer();
  const inputs = new Map(HostService.methods.map((m) => [m.localName, m.input]));
  const addService = server.addService.bind(server);
  server.addService = (definition, implementation) => {
    const guarded: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    for (const [name, method] of Object.entries(definition as grpc.ServiceDefinition)) {
      const schema = inputs.get(name);
      guarded[name] = !schema
        ? method
        : {
            ...method,
            requestDeserialize: (bytes: Buffer) => {
              checkFieldCount(schema, bytes, { left: MAX_REQUEST_FIELDS });
              return method.requestDeserialize(bytes);
            },
          };
    }
    addService(guarded, implementation);
  };
  return server;
}

export class HostServiceServer {
  private readonly server = createGuardedServer();
  private readonly watchers = new Set<grpc.ServerWritableStream<unknown, WatchPeersResponse>>();

  constructor(private readonly options: HostServiceOptions) {
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
          caller(call.metadata, "peers", "WatchPeers");
          const stream = call as unknown as grpc.ServerWritableStream<unknown, WatchPeersResponse>;
          this.watchers.add(stream);
          // Response headers tell the plugin it is subscribed: every event
          // published from now on reaches it.
          call.sendMetadata(new grpc.Metadata());
          await new Promise<void>((resolve) => {
            call.once("cancelled", resolve);
            call.once("close", resolve);
            call.once("error", resolve);
          });
          this.watchers.delete(stream);
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
        // Token and capability checks happen per method above, where the
        // capability is known.
        authorize: () => undefined,
      },
    );
  }

  async listen(): Promise<void> {
    await listenUnix(this.server, this.options.socketPath);
  }

  get address(): string {
    return `unix://${this.options.socketPath}`;
  }

  /** Sends an event to every WatchPeers stream open now. */
  publish(event: PeerEvent): number {
    const message = toWireEvent(event);
    for (const watcher of this.watchers) watcher.write(message);
    return this.watchers.size;
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) watcher.end();
    this.watchers.clear();
    await new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
  }

  forceClose(): void {
    this.server.forceShutdown();
  }
}

export type { NodeId };
