/**
 * The ports an application lends its plugins, the out-of-process form of the
 * daemon's PeerDirectory, ControlSender and IdentitySecrets. Each method may
 * answer synchronously or with a promise.
 */

/** A peer's stable node id, as raw bytes. */
export type NodeId = Uint8Array;

/** Read access to the application's keystore of known peers. */
export interface PeerDirectoryPort {
  /** The peer's X25519 public key, or undefined when unknown. */
  lookupX25519(peer: NodeId): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  /** The peer's latest friendly name, or undefined when unknown. */
  lookupName(peer: NodeId): string | undefined | Promise<string | undefined>;
}

/** Sends control frames toward peers. */
export interface ControlPort {
  /** Best-effort send to a directly connected peer. */
  sendDirect(peer: NodeId, frame: Uint8Array): void | Promise<void>;
  /** Send through the routing table; true when a route existed. */
  sendRouted(dst: NodeId, frame: Uint8Array): boolean | Promise<boolean>;
}

/** The local identity secret. */
export interface IdentityPort {
  /** The raw 32-byte Ed25519 signing seed. */
  signingSeed(): Uint8Array | Promise<Uint8Array>;
}

export interface HostPorts {
  peers: PeerDirectoryPort;
  control: ControlPort;
  identity: IdentityPort;
}

/** How the application learned a peer's identity. */
export type PeerSource = "direct" | "routed";

/** A change in the peer directory, published with `host.publishPeerEvent`. */
export type PeerEvent =
  | { type: "seen"; nodeId: NodeId; x25519Pub: Uint8Array; name: string; source: PeerSource }
  | { type: "forgotten"; nodeId: NodeId };

/** Hex text of a node id. */
export function hex(id: NodeId): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");
}

/**
 * An in-memory peer directory: the CLI's embedded default and a handy test
 * double. `apply` keeps it in step with published events.
 */
export class MemoryPeerDirectory implements PeerDirectoryPort {
  private readonly peers = new Map<string, { x25519Pub: Uint8Array; name: string }>();

  lookupX25519(peer: NodeId): Uint8Array | undefined {
    return this.peers.get(hex(peer))?.x25519Pub;
  }

  lookupName(peer: NodeId): string | undefined {
    return this.peers.get(hex(peer))?.name;
  }

  apply(event: PeerEvent): void {
    if (event.type === "seen") this.peers.set(hex(event.nodeId), { x25519Pub: event.x25519Pub, name: event.name });
    else this.peers.delete(hex(event.nodeId));
  }

  get size(): number {
    return this.peers.size;
  }
}
