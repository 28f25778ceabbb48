/**
 * HostService: the application's ports served to plugins over the host's
 * unix socket. The caller is identified by its auth token and checked for the
 * capability each call needs.
 */
import { create } from "@bufbuild/protobuf";
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

export class HostServiceServer {
  private readonly server = createServer();
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
