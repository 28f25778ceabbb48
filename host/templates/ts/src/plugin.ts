#!/usr/bin/env node
// {{name}}: a plugwire plugin. It answers every {{name}}.ping payload with
// "pong:" + body, sent back to the sender; the send rides on the payload's
// ack, so it happens exactly once.
{{#stateful}}
// It also counts {{name}}.hit payloads per peer, wipes a peer's count when the
// host forgets the peer, and keeps the counts across restarts and crashes
// with a snapshot/restore pair.
{{/stateful}}
{{#stateful}}
import { RestoreFailedError, definePlugin, nodeIdToHex, serve } from "@plugwire/sdk";
{{/stateful}}
{{^stateful}}
import { definePlugin, nodeIdToHex, serve } from "@plugwire/sdk";
{{/stateful}}

const PONG = new TextEncoder().encode("pong:");
{{#stateful}}
/** Hits by peer (hex node id). The SDK runs one handler at a time: no lock needed. */
const counts = new Map<string, number>();
{{/stateful}}

export const plugin = definePlugin({
  name: "{{name}}",
  payloadKinds: [{{#stateful}}"{{name}}.hit", {{/stateful}}"{{name}}.ping"],
  start(ctx) {
    ctx.log.info("{{name}} started");
  },
  async handlePayload(payload, ctx) {
{{#stateful}}
    if (payload.kind === "{{name}}.hit") {
      const peer = nodeIdToHex(payload.src);
      counts.set(peer, (counts.get(peer) ?? 0) + 1);
      return;
    }
{{/stateful}}
    const frame = new Uint8Array(PONG.length + payload.body.length);
    frame.set(PONG);
    frame.set(payload.body, PONG.length);
    await ctx.control.sendDirect(payload.src, frame);
  },
  onPeerForgotten(peer, ctx) {
{{#stateful}}
    if (counts.delete(nodeIdToHex(peer))) ctx.log.info("wiped a forgotten peer's count", { peer: nodeIdToHex(peer) });
{{/stateful}}
{{^stateful}}
    // Drop whatever this plugin keeps about the peer.
    ctx.log.info("peer forgotten", { peer: nodeIdToHex(peer) });
{{/stateful}}
  },
  shutdown(ctx) {
    ctx.log.info("{{name}} stopping");
  },
{{#stateful}}
  stateful: {
    id: "{{name}}.counts",
    versions: [1],
    snapshot() {
      return { version: 1, bytes: new TextEncoder().encode(JSON.stringify(Object.fromEntries(counts))) };
    },
    restore({ bytes }) {
      // The host refuses versions not in `versions` before this runs.
      let parsed: unknown;
      try {
        parsed = JSON.parse(new TextDecoder().decode(bytes));
      } catch (e) {
        throw new RestoreFailedError(`snapshot is not JSON: ${(e as Error).message}`);
      }
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new RestoreFailedError("snapshot is not a JSON object of counts");
      }
      const restored = new Map<string, number>();
      for (const [peer, n] of Object.entries(parsed)) {
        if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw new RestoreFailedError(`count for ${peer} is not a whole number`);
        restored.set(peer, n);
      }
      // Replace the state only once every entry checked out.
      counts.clear();
      for (const [peer, n] of restored) counts.set(peer, n);
    },
  },
{{/stateful}}
});

void serve(plugin);
