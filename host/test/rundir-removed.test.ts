/**
 * The host's socket dir removed under a running host (a temp-dir cleaner):
 * the host re-creates it and serves host.sock again, so a plugin relaunched
 * afterwards starts and reaches HostService; plugins already connected keep
 * working. Real processes and sockets.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { describe, it } from "node:test";
import type { HostEvents } from "../src/index.js";
import { example, nodePlugin, peer, testHost, waitFor } from "./helpers.js";

type StateEvent = HostEvents["plugin:state"][0];

/** PLUGWIRE_SOCKET_DIR of a running process. */
function socketDirOf(pid: number): string {
  const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  const entry = env.find((e) => e.startsWith("PLUGWIRE_SOCKET_DIR="));
  assert.ok(entry, "the plugin has PLUGWIRE_SOCKET_DIR");
  return entry.slice("PLUGWIRE_SOCKET_DIR=".length);
}

describe("the host's socket dir removed while it runs", () => {
  it("is re-created: a relaunched plugin starts and its WatchPeers reaches the host; a connected plugin keeps working", { timeout: 60_000 }, async () => {
    const t = testHost([nodePlugin("presence", example("presence"), { capabilities: ["peers"], warmStandby: false }), nodePlugin("counter", example("counter"))]);
    try {
      await t.host.start();
      const presence = t.host.status().find((s) => s.name === "presence")!;
      const runDir = socketDirOf(presence.pid!);
      rmSync(runDir, { recursive: true, force: true });
      assert.equal(existsSync(runDir), false);

      const ready = waitFor<StateEvent>(t.host, "plugin:state", (e) => e.plugin === "presence" && e.state === "ready", 30_000);
      process.kill(presence.pid!, "SIGKILL");
      await ready;
      assert.ok(existsSync(`${runDir}/host.sock`), "host.sock is served again");

      // The relaunched presence watches peers through host.sock: an event reaches its stream.
      const event = { type: "seen" as const, nodeId: peer(7), x25519Pub: new Uint8Array(32).fill(7), name: "peer-7", source: "direct" as const };
      const deadline = Date.now() + 20_000;
      let streams = 0;
      for (let i = 0; i < 2_000 && Date.now() < deadline; i++) {
        streams = t.host.publishPeerEvent(event);
        if (streams > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(streams > 0, "the relaunched presence opened WatchPeers on the re-created host.sock");
      await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
    } finally {
      await t.close();
    }
  });
});
