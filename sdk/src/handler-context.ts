/**
 * The context of one handlePayload call. One small object per payload: the
 * plugin-wide fields are read through from the plugin context, and its
 * `control` is itself, so sendDirect records an effect that travels with the
 * payload's ack instead of calling the host.
 */
import { create } from "@bufbuild/protobuf";
import { EffectSchema, type Effect } from "@plugwire/proto";
import type { Logger } from "./log.js";
import type { Control, HandlerContext, Identity, Peers, PluginContext } from "./plugin.js";
import type { Capability, NodeId } from "./types.js";

export type RoutedSender = (dst: NodeId, frame: Uint8Array, seq: number, index: number) => Promise<boolean>;

export class PayloadContext implements HandlerContext, Control {
  /** Effects recorded by this handler, in order; undefined when none. */
  effects: Effect[] | undefined;
  private routedIndex = 0;

  constructor(
    private readonly base: PluginContext,
    readonly seq: number,
    private readonly sendRoutedFrom: RoutedSender,
    private readonly requireCapability: (c: Capability) => void,
  ) {}

  get name(): string {
    return this.base.name;
  }
  get instanceId(): string {
    return this.base.instanceId;
  }
  get dataDir(): string {
    return this.base.dataDir;
  }
  get config(): Readonly<Record<string, unknown>> {
    return this.base.config;
  }
  get capabilities(): ReadonlySet<Capability> {
    return this.base.capabilities;
  }
  get signal(): AbortSignal {
    return this.base.signal;
  }
  get peers(): Peers {
    return this.base.peers;
  }
  get identity(): Identity {
    return this.base.identity;
  }
  get log(): Logger {
    return this.base.log;
  }
  get control(): Control {
    return this;
  }

  async sendDirect(peer: NodeId, frame: Uint8Array): Promise<void> {
    this.requireCapability("control");
    (this.effects ??= []).push(create(EffectSchema, { effect: { case: "sendDirect", value: { peer, frame } } }));
  }

  sendRouted(dst: NodeId, frame: Uint8Array): Promise<boolean> {
    return this.sendRoutedFrom(dst, frame, this.seq, this.routedIndex++);
  }
}
