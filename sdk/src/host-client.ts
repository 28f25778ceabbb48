import {
  Capability as WireCapability,
  HostService,
  PeerSource as WirePeerSource,
  PlugwireError,
  connect,
  fromStatus,
  type CallsRequest,
  type CallsResponse,
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

type HostClient = ReturnType<typeof connect<typeof HostService.method>>["client"];
type CallCase = NonNullable<CallsRequest["call"]["case"]>;
type CallValue<C extends CallCase> = Extract<CallsRequest["call"], { case: C }>["value"];
type CallAnswer<C extends CallCase> = Extract<CallsResponse["result"], { case: C }>["value"];

/** gRPC UNIMPLEMENTED: the host does not serve Calls (an older host). */
const UNIMPLEMENTED = 12;

/**
 * Host calls multiplexed on one HostService.Calls stream per launch, with
 * correlation ids (docs/protocol.md §9.1): a few µs per call instead of a
 * unary grpc-js call each. The stream opens with the first call. A host that
 * does not offer Calls answers UNIMPLEMENTED before running any call: those
 * calls and every later one go unary. A stream that breaks otherwise fails
 * the calls in progress on it (as a unary call on a broken connection
 * would); the next call opens a new one.
 */
class CallMux {
  private stream: ReturnType<HostClient["calls"]> | undefined;
  /** Calls in progress on the stream, by id. */
  private readonly pending = new Map<number, { answer: (r: CallsResponse["result"]) => void; fallBack: () => void; fail: (e: unknown) => void }>();
  private nextId = 1;
  private unsupported = process.env.PLUGWIRE_SDK_UNARY_HOST_CALLS === "1";
  private closed = false;

  constructor(
    private readonly host: HostClient,
    private readonly plugin: string,
  ) {}

  call<C extends CallCase, T>(which: C, value: CallValue<C>, unary: () => Promise<T>, pick: (answer: CallAnswer<C>) => T): Promise<T> {
    if (this.unsupported || this.closed) return unary();
    const stream = this.open();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, {
        answer: (result) => {
          if (result.case === "error") reject(fromStatus(result.value.code, result.value.message, this.plugin));
          else if (result.case !== which) reject(new PlugwireError("internal", `the host answered a ${which} call with ${result.case ?? "nothing"} on its Calls stream`, { plugin: this.plugin }));
          else resolve(pick(result.value as CallAnswer<C>));
        },
        fallBack: () => unary().then(resolve, reject),
        fail: reject,
      });
      // A complete message (every nested value carries its $typeName): encoded without a reflective create().
      stream.write({ $typeName: "plugwire.v1.CallsRequest", id: BigInt(id), call: { case: which, value } as CallsRequest["call"] });
    });
  }

  private open(): ReturnType<HostClient["calls"]> {
    if (this.stream) return this.stream;
    const stream = this.host.calls();
    this.stream = stream;
    stream.on("data", (response: CallsResponse) => {
      const id = Number(response.id);
      const entry = this.pending.get(id);
      if (!entry) return;
      this.pending.delete(id);
      entry.answer(response.result);
    });
    const broken = (e: unknown): void => {
      if (this.stream === stream) this.stream = undefined;
      const calls = [...this.pending];
      this.pending.clear();
      const code = (e as { code?: unknown } | undefined)?.code;
      if (code === UNIMPLEMENTED) {
        // No call ran: the host refused the method itself.
        this.unsupported = true;
        for (const [, entry] of calls) entry.fallBack();
        return;
      }
      const error =
        e === undefined
          ? new PlugwireError("plugin_unavailable", `the host ended the Calls stream of plugin '${this.plugin}' with calls in progress; retry them`, { plugin: this.plugin })
          : PlugwireError.from(e, "internal", this.plugin);
      for (const [, entry] of calls) entry.fail(error);
    };
    stream.on("error", broken);
    stream.on("end", () => broken(undefined));
    return stream;
  }

  close(): void {
    this.closed = true;
    this.stream?.cancel();
    this.stream = undefined;
  }
}

/** Typed access to the host's HostService for one plugin launch. */
export function hostPorts(address: string, token: string, pluginName: string, remote?: Pick<ClientOptions, "tokenOf" | "credentials" | "channelOptions">) {
  const conn = connect(HostService, address, { token, plugin: pluginName, ...remote });
  const host = conn.client;
  const mux = new CallMux(host, pluginName);
  const peers: Peers = {
    lookupX25519(peer) {
      return mux.call("lookupX25519", { $typeName: "plugwire.v1.LookupX25519Request", nodeId: peer }, async () => (await host.lookupX25519({ nodeId: peer })).x25519Pub, (r) => r.x25519Pub);
    },
    lookupName(peer) {
      return mux.call("lookupName", { $typeName: "plugwire.v1.LookupNameRequest", nodeId: peer }, async () => (await host.lookupName({ nodeId: peer })).name, (r) => r.name);
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
      await mux.call(
        "sendDirect",
        { $typeName: "plugwire.v1.SendDirectRequest", send: { $typeName: "plugwire.v1.SendDirect", peer, frame } },
        async () => {
          await host.sendDirect({ send: { peer, frame } });
        },
        () => undefined,
      );
    },
    sendRouted(dst, frame) {
      return mux.call("sendRouted", { $typeName: "plugwire.v1.SendRoutedRequest", dst, frame }, async () => (await host.sendRouted({ dst, frame })).routed, (r) => r.routed);
    },
  };
  const identity: Identity = {
    signingSeed() {
      return mux.call("getSigningSeed", { $typeName: "plugwire.v1.GetSigningSeedRequest" }, async () => (await host.getSigningSeed({})).seed, (r) => r.seed);
    },
  };
  return {
    peers,
    control,
    identity,
    /** A SendRouted that names the payload and call index, for deduplication on replay. */
    sendRoutedFrom(dst: Uint8Array, frame: Uint8Array, seq: number, index: number): Promise<boolean> {
      const origin = { $typeName: "plugwire.v1.EffectOrigin", seq: BigInt(seq), index } as const;
      return mux.call(
        "sendRouted",
        { $typeName: "plugwire.v1.SendRoutedRequest", dst, frame, origin },
        () => host.sendRouted({ dst, frame, origin: { seq: BigInt(seq), index } }).then((r) => r.routed),
        (r) => r.routed,
      );
    },
    close: () => {
      mux.close();
      conn.close();
    },
  };
}
