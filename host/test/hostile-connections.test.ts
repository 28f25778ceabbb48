/**
 * H-HOST-CONN: a local process floods host.sock with connections it never
 * uses (red team: 3,000 idle connections filled the accept backlog, and a
 * neighbour plugin's connect failed with EAGAIN). The host keeps at most
 * MAX_UNAUTHENTICATED_CONNECTIONS of them (oldest first) and closes each
 * after UNAUTHENTICATED_IDLE_MS; a plugin launched meanwhile reaches
 * HostService. Real processes and sockets; every wait is bounded.
 */
import assert from "node:assert/strict";
import { createConnection, type Socket } from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { HostEvents } from "../src/index.js";
import { MAX_UNAUTHENTICATED_CONNECTIONS } from "../src/services/connection-guard.js";
import { example, nodePlugin, peer, testHost, waitFor } from "./helpers.js";

type StateEvent = HostEvents["plugin:state"][0];
const FLOOD = 300;

function socketDirOf(pid: number): string {
  const entry = readFileSync(`/proc/${pid}/environ`, "utf8")
    .split("\0")
    .find((e) => e.startsWith("PLUGWIRE_SOCKET_DIR="));
  assert.ok(entry);
  return entry.slice("PLUGWIRE_SOCKET_DIR=".length);
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 100_000; i++) {
    if (check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("connections to host.sock", () => {
  it(`H-HOST-CONN: ${FLOOD} idle connections are bounded to ${MAX_UNAUTHENTICATED_CONNECTIONS} and closed when idle; a plugin launched meanwhile reaches HostService`, { timeout: 90_000 }, async () => {
    const t = testHost([nodePlugin("presence", example("presence"), { capabilities: ["peers"], warmStandby: false }), nodePlugin("counter", example("counter"))]);
    const sockets: Socket[] = [];
    let closed = 0;
    try {
      await t.host.start();
      const presence = t.host.status().find((s) => s.name === "presence")!;
      const hostSock = join(socketDirOf(presence.pid!), "host.sock");
      for (let i = 0; i < FLOOD; i++) {
        const socket = createConnection(hostSock);
        socket.on("error", () => undefined);
        socket.once("close", () => closed++);
        // Reads what the host sends (its SETTINGS), so the host's close reaches this end as EOF.
        socket.resume();
        await new Promise<void>((resolve) => socket.once("connect", resolve).once("close", () => resolve()));
        // Some send a little garbage that is no HTTP/2 preface; most send nothing.
        if (i % 10 === 0) socket.write("GET / HTTP/1.0\r\n");
        sockets.push(socket);
      }
      await until(`the host closed all but ${MAX_UNAUTHENTICATED_CONNECTIONS} of the ${FLOOD}`, () => FLOOD - closed <= MAX_UNAUTHENTICATED_CONNECTIONS, 20_000);

      const ready = waitFor<StateEvent>(t.host, "plugin:state", (e) => e.plugin === "presence" && e.state === "ready", 30_000);
      process.kill(presence.pid!, "SIGKILL");
      await ready;
      const event = { type: "seen" as const, nodeId: peer(7), x25519Pub: new Uint8Array(32).fill(7), name: "peer-7", source: "direct" as const };
      let streams = 0;
      await until("the relaunched presence's WatchPeers reaches the host", () => (streams = t.host.publishPeerEvent(event)) > 0, 20_000);
      assert.ok(streams > 0);
      await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));

      await until("every idle connection closed", () => closed === FLOOD, 30_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await t.close();
    }
  });
});
