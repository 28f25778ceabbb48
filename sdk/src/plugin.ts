import { describeProblems } from "@plugwire/proto";
import type { Logger } from "./log.js";
import type { Capability, NodeId, Payload, PeerEvent, Snapshot } from "./types.js";

/** Read access to the host's peer directory (capability `peers`). */
export interface Peers {
  /** The peer's X25519 public key, or undefined when the host does not know it. */
  lookupX25519(peer: NodeId): Promise<Uint8Array | undefined>;
  /** The peer's latest friendly name, or undefined when unknown. */
  lookupName(peer: NodeId): Promise<string | undefined>;
  /**
   * Every peer event published from now on, until the signal aborts or the
   * loop breaks. The subscription starts when iteration starts; `onSubscribed`
   * runs once the host has registered it, after which no event is missed.
   */
  watch(options?: { signal?: AbortSignal; onSubscribed?: () => void }): AsyncIterable<PeerEvent>;
}

/** Sending control frames (capability `control`). */
export interface Control {
  /** Best-effort send to a directly connected peer. */
  sendDirect(peer: NodeId, frame: Uint8Array): Promise<void>;
  /** Send through the routing table; true when a route existed. */
  sendRouted(dst: NodeId, frame: Uint8Array): Promise<boolean>;
}

/** The local identity secret (capability `identity`). */
export interface Identity {
  /** The raw 32-byte Ed25519 signing seed. */
  signingSeed(): Promise<Uint8Array>;
}

/** What a plugin is handed at start and in every hook. */
export interface PluginContext {
  readonly name: string;
  readonly instanceId: string;
  /** A directory private to this plugin for its own files. */
  readonly dataDir: string;
  /** The plugin's `config` from the host configuration. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly capabilities: ReadonlySet<Capability>;
  /** Aborts when the plugin is asked to shut down; tie long-running work to it. */
  readonly signal: AbortSignal;
  readonly peers: Peers;
  readonly control: Control;
  readonly identity: Identity;
  readonly log: Logger;
}

/**
 * The context of one `handlePayload` call. Its `control.sendDirect` does not
 * send at once: the send travels with the payload's ack and the host performs
 * it exactly once, even if the payload is replayed after a crash.
 */
export interface HandlerContext extends PluginContext {
  readonly seq: number;
}

/** The optional stateful surface: snapshot and restore of the plugin's state. */
export interface StatefulHooks {
  /** Stable id the host keys stored snapshots by. */
  id: string;
  /** Snapshot format versions `restore` understands; the first is written by `snapshot`. */
  versions: readonly number[];
  /** Produce the current state. Runs between payloads, never during one. */
  snapshot(): Snapshot | Promise<Snapshot>;
  /**
   * Replace the state with a snapshot. Throw RestoreFailedError for bad bytes.
   * Versions not listed in `versions` are refused with UnsupportedVersionError
   * before this is called.
   */
  restore(snapshot: Snapshot): void | Promise<void>;
}

/** A plugin: the out-of-process form of a daemon plugin, optionally stateful. */
export interface PluginDefinition {
  /** Stable name, used in logs and errors. */
  name: string;
  /** Payload kinds this plugin claims. */
  payloadKinds: readonly string[];
  /** Called once after the host hands over the context, before any payload. */
  start?(ctx: PluginContext): void | Promise<void>;
  /** Handle one payload. Payloads arrive one at a time, in seq order. */
  handlePayload(payload: Payload, ctx: HandlerContext): void | Promise<void>;
  /**
   * The daemon forgot this peer; drop any per-peer state. Runs in seq order
   * among the payloads, and is replayed after a restore like them, so state
   * restored from an older snapshot forgets the peer again. Its `ctx` is a
   * handler context: sends made here travel with its ack.
   */
  onPeerForgotten?(peer: NodeId, ctx: HandlerContext): void | Promise<void>;
  /** Best-effort cleanup before the plugin exits. */
  shutdown?(ctx: PluginContext): void | Promise<void>;
  /** Present when the plugin keeps state the host should snapshot. */
  stateful?: StatefulHooks;
}

/**
 * Checks a plugin definition and returns it, typed. A definition the host
 * would refuse at Describe (docs/protocol.md §13: the name, at most 1024
 * payload kinds of 1-128 printable ASCII characters without spaces and no
 * duplicates, a stateful id and 1-64 snapshot versions) throws here, so its
 * author sees the problem before any host runs it.
 */
export function definePlugin(definition: PluginDefinition): PluginDefinition {
  const name = String(definition.name);
  if (!Array.isArray(definition.payloadKinds) || definition.payloadKinds.some((k) => typeof k !== "string")) {
    throw new Error(`plugin '${name}': payloadKinds must be a list of strings`);
  }
  const problems = describeProblems({
    name,
    payloadKinds: definition.payloadKinds,
    stateful: definition.stateful && { id: String(definition.stateful.id), snapshotVersions: definition.stateful.versions },
  });
  if (problems.length > 0) {
    // Kept from before: the plain name error reads as it always has.
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(name) && problems.length === 1) throw new Error(`plugin name '${name}' must be 1-64 characters of [A-Za-z0-9._-]`);
    throw new Error(`plugin '${name}' would be refused by the host: ${problems.join("; ")} (docs/protocol.md §13)`);
  }
  return definition;
}
