#!/usr/bin/env node
// counter: a stateful plugin. It counts `counter.hit` payloads per peer, wipes
// a peer's count when the peer is forgotten, and snapshots its counts so a
// restart (or a crash) resumes exactly where it was.
import { RestoreFailedError, definePlugin, nodeIdToHex, serve } from "@plugwire/sdk";

const counts = new Map<string, number>();

export const counter = definePlugin({
  name: "counter",
  payloadKinds: ["counter.hit"],
  handlePayload(payload) {
    const peer = nodeIdToHex(payload.src);
    counts.set(peer, (counts.get(peer) ?? 0) + 1);
  },
  onPeerForgotten(peer, ctx) {
    const key = nodeIdToHex(peer);
    if (counts.delete(key)) ctx.log.info("wiped a forgotten peer's count", { peer: key });
  },
  stateful: {
    id: "example.counter",
    versions: [1],
    snapshot() {
      return { version: 1, bytes: new TextEncoder().encode(JSON.stringify(Object.fromEntries(counts))) };
    },
    restore({ bytes }) {
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
});

void serve(counter);
