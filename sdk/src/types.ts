/** A node id: the peer's stable cryptographic identifier, as raw bytes. */
export type NodeId = Uint8Array;

/** How the daemon learned a peer's identity. */
export type PeerSource = "direct" | "routed" | "unspecified";

/** A change in the host's peer directory. */
export type PeerEvent =
  | { type: "seen"; nodeId: NodeId; x25519Pub: Uint8Array; name: string; source: PeerSource }
  | { type: "forgotten"; nodeId: NodeId };

/** What a plugin may call on the host. */
export type Capability = "peers" | "control" | "identity";

/** One inbound payload, as handed to `handlePayload`. */
export interface Payload {
  /** Per-plugin sequence number, increasing, starting at 1. */
  readonly seq: number;
  /** Node id of the peer the payload came from. */
  readonly src: NodeId;
  readonly kind: string;
  readonly body: Uint8Array;
  /** True when an earlier launch of the plugin may already have seen it. */
  readonly redelivered: boolean;
}

/** A versioned opaque snapshot of a plugin's state. */
export interface Snapshot {
  /** Format version of `bytes`. */
  version: number;
  bytes: Uint8Array;
}

/** Hex text of a node id, handy as a map key. */
export function nodeIdToHex(id: NodeId): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

/** The node id whose hex text is `hex`. */
export function nodeIdFromHex(hex: string): NodeId {
  return new Uint8Array(Buffer.from(hex, "hex"));
}
