/**
 * The kit's HostService: what a host serves a plugin on
 * PLUGWIRE_HOST_ADDRESS, over fixed test data. Every call that reaches it is
 * recorded with the state of its token, before the token is checked, so the
 * kit can tell whether the plugin authenticates its host calls; a call
 * without a valid token is refused with UNAUTHENTICATED, as a host refuses
 * it. Every launch is granted every capability.
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { HostService, PlugwireError, addService, bearerToken, createServer, listenUnix } from "@plugwire/proto";

/** A peer the kit's directory knows; the other test peer is unknown. */
export const KNOWN_PEER = new Uint8Array(32).fill(0x01);
export const UNKNOWN_PEER = new Uint8Array(32).fill(0x02);
const KNOWN_PEER_NAME = "alice";
const KNOWN_PEER_X25519 = new Uint8Array(32).fill(0x09);
/** Not a secret: the identity the kit lends plugins that ask for it. */
const TEST_SEED = new Uint8Array(32).fill(0x5e);
/** The name of the kit's socket in its run dir. */
export const HOST_SOCKET_NAME = "host.sock";

export type TokenState = "valid" | "wrong" | "missing";

/** One call that reached the kit's HostService. */
export interface HostCall {
  method: string;
  token: TokenState;
}

/** A send the plugin asked the kit's control port for. */
export interface RecordedSend {
  kind: "direct" | "routed";
  peer: Uint8Array;
  frame: Uint8Array;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

export class HostStub {
  readonly calls: HostCall[] = [];
  readonly sent: RecordedSend[] = [];
  private readonly server = createServer();
  private readonly tokens = new Set<string>();
  /** First answers of SendRouted calls made from handlers, by token, seq and index. */
  private readonly routed = new Map<string, boolean>();
  private readonly watchers = new Set<grpc.ServerWritableStream<unknown, unknown>>();

  constructor(private readonly runDir: string) {
    this.addService();
  }

  /** The address plugins are given in PLUGWIRE_HOST_ADDRESS. */
  get address(): string {
    return `unix://${join(this.runDir, HOST_SOCKET_NAME)}`;
  }

  async listen(): Promise<void> {
    await listenUnix(this.server, join(this.runDir, HOST_SOCKET_NAME));
  }

  /** Lets a launch's token in. */
  register(token: string): void {
    this.tokens.add(token);
  }

  async close(): Promise<void> {
    for (const watcher of this.watchers) watcher.end();
    this.watchers.clear();
    this.server.forceShutdown();
  }

  private addService(): void {
    const authorize = (metadata: grpc.Metadata, method: string): void => {
      // Calls is refused as UNIMPLEMENTED (below), as by a host without it: not a call the kit counts.
      if (method === "Calls") return;
      const token = bearerToken(metadata);
      const state: TokenState =
        metadata.get("authorization").length === 0 ? "missing" : token !== undefined && this.tokens.has(token) ? "valid" : "wrong";
      this.calls.push({ method, token: state });
      if (state !== "valid") {
        throw new PlugwireError(
          "unauthenticated",
          `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`,
        );
      }
    };
    const known = (nodeId: Uint8Array): boolean => sameBytes(nodeId, KNOWN_PEER);
    addService(
      this.server,
      HostService,
      {
        // "Not known" is an absent field, not an error (docs/protocol.md §9).
        lookupX25519: async (request) => ({ x25519Pub: known(request.nodeId) ? KNOWN_PEER_X25519 : undefined }),
        lookupName: async (request) => ({ name: known(request.nodeId) ? KNOWN_PEER_NAME : undefined }),
        sendDirect: async (request) => {
          if (!request.send) throw new PlugwireError("invalid_argument", "SendDirect needs a 'send' field");
          this.sent.push({ kind: "direct", peer: request.send.peer, frame: request.send.frame });
          return {};
        },
        sendRouted: async (request, call) => {
          // A replayed handler's call is answered with its first answer and not sent again.
          const key = request.origin ? `${bearerToken(call.metadata)}/${request.origin.seq}/${request.origin.index}` : undefined;
          const first = key === undefined ? undefined : this.routed.get(key);
          if (first !== undefined) return { routed: first };
          this.sent.push({ kind: "routed", peer: request.dst, frame: request.frame });
          if (key !== undefined) this.routed.set(key, true);
          return { routed: true };
        },
        getSigningSeed: async () => ({ seed: TEST_SEED }),
        // The kit checks the unary calls (docs/protocol.md §9); it does not
        // offer the multiplexed Calls stream, so SDKs fall back to them.
        calls: (call) => {
          call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "the conformance kit's host serves the unary HostService calls only" });
        },
        watchPeers: async (_request, call) => {
          const stream = call as unknown as grpc.ServerWritableStream<unknown, unknown>;
          this.watchers.add(stream);
          // Response headers tell the plugin it is subscribed. The kit publishes no events.
          call.sendMetadata(new grpc.Metadata());
          await new Promise<void>((resolve) => {
            call.once("cancelled", resolve);
            call.once("close", resolve);
            call.once("error", resolve);
          });
          this.watchers.delete(stream);
        },
      },
      { authorize },
    );
  }
}
