#!/usr/bin/env node
// presence: watches the host's peer directory, remembers the names it has
// seen, and answers `presence.who` payloads by looking the sender up.
import { definePlugin, nodeIdToHex, serve, type PluginContext } from "@plugwire/sdk";

const names = new Map<string, string>();

async function watchPeers(ctx: PluginContext): Promise<void> {
  for await (const event of ctx.peers.watch({ signal: ctx.signal })) {
    const peer = nodeIdToHex(event.nodeId);
    if (event.type === "seen") {
      names.set(peer, event.name);
      ctx.log.info("peer seen", { peer: peer.slice(0, 12), name: event.name, source: event.source });
    } else {
      names.delete(peer);
      ctx.log.info("peer forgotten", { peer: peer.slice(0, 12) });
    }
  }
}

export const presence = definePlugin({
  name: "presence",
  payloadKinds: ["presence.who"],
  start(ctx) {
    watchPeers(ctx).catch((e: unknown) => ctx.log.error("peer watch ended", { error: String(e) }));
  },
  async handlePayload(payload, ctx) {
    const [name, key] = await Promise.all([ctx.peers.lookupName(payload.src), ctx.peers.lookupX25519(payload.src)]);
    ctx.log.info("who", {
      peer: nodeIdToHex(payload.src).slice(0, 12),
      name: name ?? "(unknown)",
      x25519: key ? Buffer.from(key).toString("hex").slice(0, 12) : "(unknown)",
      watched: names.size,
    });
  },
  onPeerForgotten(peer) {
    names.delete(nodeIdToHex(peer));
  },
});

void serve(presence);
