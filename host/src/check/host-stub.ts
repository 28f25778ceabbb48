/**
 * The kit's HostService. The host's own HostServiceServer does the work, over
 * recording ports; in front of it sits a thin relay that sees every call the
 * plugin makes, with or without a token, so the kit can tell whether the
 * plugin authenticates its host calls. (HostServiceServer refuses a call that
 * carries no token before any hook of ours runs.)
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import {
  HostService,
  PlugwireError,
  addService,
  bearerToken,
  connect,
  createServer,
  listenUnix,
} from "@plugwire/proto";
import type { Capability } from "../config.js";
import { MemoryPeerDirectory, type HostPorts } from "../ports.js";
import { HostServiceServer, type Caller } from "../services/host-service.js";
import { grpcCodeOf } from "./util.js";

/** A peer the kit's directory knows; the other test peer is unknown. */
export const KNOWN_PEER = new Uint8Array(32).fill(0x01);
export const UNKNOWN_PEER = new Uint8Array(32).fill(0x02);
const KNOWN_PEER_X25519 = new Uint8Array(32).fill(0x09);
/** Not a secret: the identity the kit lends plugins that ask for it. */
const TEST_SEED = new Uint8Array(32).fill(0x5e);

export type TokenState = "valid" | "wrong" | "missing";

/** One call that reached the kit's HostService. */
export interface HostCall {
  method: string;
  token: TokenState;
}

/** Everything the plugin asked the kit's ports to do. */
export interface RecordedSend {
  kind: "direct" | "routed";
  peer: Uint8Array;
  frame: Uint8Array;
}

function relayTo(address: string, token: string) {
  return connect(HostService, address, { token });
}
type Relay = ReturnType<typeof relayTo>;

const ALL_CAPABILITIES: ReadonlySet<Capability> = new Set<Capability>(["peers", "control", "identity"]);

export class HostStub {
  readonly calls: HostCall[] = [];
  readonly sent: RecordedSend[] = [];
  private readonly inner: HostServiceServer;
  private readonly front = createServer();
  private readonly callers = new Map<string, Caller>();
  private readonly relays = new Map<string, Relay>();
  private readonly innerAddress: string;

  constructor(private readonly runDir: string) {
    const directory = new MemoryPeerDirectory();
    directory.apply({ type: "seen", nodeId: KNOWN_PEER, x25519Pub: KNOWN_PEER_X25519, name: "alice", source: "direct" });
    const ports: HostPorts = {
      peers: directory,
      control: {
        sendDirect: (peer, frame) => {
          this.sent.push({ kind: "direct", peer, frame });
        },
        sendRouted: (dst, frame) => {
          this.sent.push({ kind: "routed", peer: dst, frame });
          return true;
        },
      },
      identity: { signingSeed: () => TEST_SEED },
    };
    const innerSocket = join(runDir, "host-inner.sock");
    this.innerAddress = `unix://${innerSocket}`;
    this.inner = new HostServiceServer({ ports, socketPath: innerSocket, callerOf: (token) => this.callers.get(token) });
    this.addRelay();
  }

  /** The address plugins are given in PLUGWIRE_HOST_ADDRESS. */
  get address(): string {
    return `unix://${join(this.runDir, "host.sock")}`;
  }

  async listen(): Promise<void> {
    await this.inner.listen();
    await listenUnix(this.front, join(this.runDir, "host.sock"));
  }

  /** Lets a launch's token in, with every capability. */
  register(token: string, name: string): void {
    const answers = new Map<string, Promise<boolean>>();
    this.callers.set(token, {
      name,
      capabilities: ALL_CAPABILITIES,
      sendRoutedOnce: (seq, index, send) => {
        const key = `${seq}/${index}`;
        if (!answers.has(key)) answers.set(key, send());
        return answers.get(key)!;
      },
    });
    this.relays.set(token, relayTo(this.innerAddress, token));
  }

  async close(): Promise<void> {
    for (const relay of this.relays.values()) relay.close();
    this.front.forceShutdown();
    this.inner.forceClose();
  }

  private relayFor(metadata: grpc.Metadata): Relay["client"] {
    return this.relays.get(bearerToken(metadata)!)!.client;
  }

  private addRelay(): void {
    const authorize = (metadata: grpc.Metadata, method: string): void => {
      const token = bearerToken(metadata);
      const state: TokenState =
        metadata.get("authorization").length === 0 ? "missing" : token !== undefined && this.callers.has(token) ? "valid" : "wrong";
      this.calls.push({ method, token: state });
      if (state !== "valid") {
        throw new PlugwireError(
          "unauthenticated",
          `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`,
        );
      }
    };
    addService(
      this.front,
      HostService,
      {
        lookupX25519: (request, call) => this.relayFor(call.metadata).lookupX25519(request),
        lookupName: (request, call) => this.relayFor(call.metadata).lookupName(request),
        sendDirect: (request, call) => this.relayFor(call.metadata).sendDirect(request),
        sendRouted: (request, call) => this.relayFor(call.metadata).sendRouted(request),
        getSigningSeed: (request, call) => this.relayFor(call.metadata).getSigningSeed(request),
        watchPeers: async (request, call) => {
          const upstream = this.relayFor(call.metadata).watchPeers(request);
          // The host's response headers tell a plugin it is subscribed.
          upstream.once("metadata", (metadata) => call.sendMetadata(metadata));
          call.once("cancelled", () => upstream.cancel());
          try {
            for await (const event of upstream) call.write(event);
          } catch (e) {
            if (grpcCodeOf(e) !== grpc.status.CANCELLED) throw PlugwireError.from(e);
          }
        },
      },
      { authorize },
    );
  }
}
