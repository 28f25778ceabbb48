import {
  Capability as WireCapability,
  HostService,
  PeerSource as WirePeerSource,
  connect,
  type ClientOptions,
  type PeerEvent as WirePeerEvent,
} from "@plugwire/proto";
import type { Control, Identity, Peers } from "./plugin.js";
import type { Capability, PeerEvent, PeerSource } from "./types.js";

const SOURCE: Record<WirePeerSource, PeerSource> = {
  [WirePeerSource.UNSPECIFIED]: "unspecified",
  [WirePeerSource.DIRECT]: "direct",
  [WirePeerSource.ROUTED]: "routed",
};

export const CAPABILITY_NAMES: Record<WireCapability, Capability | undefined> = {
  [WireCapability.UNSPECIFIED]: undefined,
  [WireCapability.PEERS]: "peers",
  [WireCapability.CONTROL]: "control",
  [WireCapability.IDENTITY]: "identity",
};

export function fromWirePeerEvent(e: WirePeerEvent): PeerEvent | undefined {
  switch (e.event.case) {
    case "seen":
      return {
        type: "seen",
        nodeId: e.event.value.nodeId,
        x25519Pub: e.event.value.x25519Pub,
        name: e.event.value.name,
        source: SOURCE[e.event.value.source] ?? "unspecified",
      };
    case "forgotten":
      return { type: "forgotten", nodeId: e.event.value.nodeId };
    default:
      return undefined;
  }
}

/** Typed access to the host's HostService for one plugin launch. */
export function hostPorts(address: string, token: string, pluginName: string, remote?: Pick<ClientOptions, "tokenOf" | "credentials" | "channelOptions">) {
  const conn = connect(HostService, address, { token, plugin: pluginName, ...remote });
  const host = conn.client;
  const peers: Peers = {
    async lookupX25519(peer) {
      return (await host.lookupX25519({ nodeId: peer })).x25519Pub;
    },
    async lookupName(peer) {
      return (await host.lookupName({ nodeId: peer })).name;
    },
    watch(options = {}) {
      return {
        async *[Symbol.asyncIterator]() {
          const stream = host.watchPeers({});
          if (options.onSubscribed) stream.once("metadata", options.onSubscribed);
          const onAbort = (): void => stream.cancel();
          options.signal?.addEventListener("abort", onAbort, { once: true });
          try {
            for await (const message of stream) {
              const event = message.event && fromWirePeerEvent(message.event);
              if (event) yield event;
            }
          } catch (e) {
            if (!options.signal?.aborted) throw e;
          } finally {
            options.signal?.removeEventListener("abort", onAbort);
            stream.cancel();
          }
        },
      };
    },
  };
  const control: Control = {
    async sendDirect(peer, frame) {
      await host.sendDirect({ send: { peer, frame } });
    },
    async sendRouted(dst, frame) {
      return (await host.sendRouted({ dst, frame })).routed;
    },
  };
  const identity: Identity = {
    async signingSeed() {
      return (await host.getSigningSeed({})).seed;
    },
  };
  return {
    peers,
    control,
    identity,
    /** A SendRouted that names the payload and call index, for deduplication on replay. */
    sendRoutedFrom(dst: Uint8Array, frame: Uint8Array, seq: number, index: number): Promise<boolean> {
      return host
        .sendRouted({ dst, frame, origin: { seq: BigInt(seq), index } })
        .then((r) => r.routed);
    },
    close: () => conn.close(),
  };
}
