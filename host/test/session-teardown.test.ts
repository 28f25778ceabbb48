/**
 * deferSessionTeardown (proto/src/grpc.ts, issue 12) runs a server session's
 * close() and destroy() on the next turn of the event loop, so for that turn
 * a closing session still says `closed: false`. grpc-js's tryShutdown() then
 * hands its callback to session.close(), and a close that was already
 * pending dropped it: the server, and so the host's HostService, never
 * finished shutting down after a peer's GOAWAY in the same turn.
 * Real unix sockets, a real grpc-js server bound by listenUnix.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import type { Http2Session } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { EventEmitter } from "node:events";
import { createServer, listenUnix } from "@plugwire/proto";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const SETTINGS = 4;
const GOAWAY = 7;

function frame(type: number, flags: number, streamId: number, payload = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** Resolves with `what`, or rejects after `ms` saying what never happened. */
function within<T>(what: Promise<T>, ms: number, failure: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    what,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(failure)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The peer's GOAWAY: NO_ERROR makes node:http2 close the session, an error code destroy it (both deferred). */
const GOAWAY_CODES = { "GOAWAY(NO_ERROR)": 0, "GOAWAY(PROTOCOL_ERROR)": 1 } as const;
type Variant = keyof typeof GOAWAY_CODES;

async function shutdownRightAfterPeer(variant: Variant): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "pwt-teardown-"));
  const socketPath = join(dir, "s.sock");
  const server = createServer();
  let client: Socket | undefined;
  try {
    await listenUnix(server, socketPath);
    const http2Servers = (server as unknown as { http2Servers?: Map<EventEmitter, unknown> }).http2Servers;
    assert.ok(http2Servers instanceof Map, "grpc-js keeps its http2 servers in http2Servers (the field listenUnix hooks)");
    const accepted = new Promise<Http2Session>((resolve) => {
      for (const h of http2Servers.keys()) h.once("session", resolve);
    });
    client = netConnect(socketPath);
    client.on("error", () => undefined);
    // A peer that hangs up once the server has ended its side (a server waits for its connections to close).
    client.on("data", () => undefined);
    client.on("end", () => client?.end());
    client.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0)]));
    const session = await within(accepted, 10_000, "the server never accepted the connection");
    // The teardown node:http2 starts for the peer is deferred; tryShutdown runs in the same turn, after it.
    const shutDown = new Promise<void>((resolve) => {
      const now = (): void => queueMicrotask(() => server.tryShutdown(() => resolve()));
      session.once("goaway", now);
      const payload = Buffer.alloc(8); // last stream 0, then the error code
      payload.writeUInt32BE(GOAWAY_CODES[variant], 4);
      client!.write(frame(GOAWAY, 0, 0, payload));
    });
    await within(shutDown, 10_000, `tryShutdown() never called back after the peer's ${variant} (a deferred close dropped grpc-js's close callback)`);
    assert.ok(session.destroyed, "the session is gone once the server has shut down");
  } finally {
    client?.destroy();
    server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("deferred session teardown keeps close callbacks", { timeout: 60_000 }, () => {
  for (const variant of Object.keys(GOAWAY_CODES) as Variant[]) {
    test(`a server shut down in the same turn as a peer's ${variant} finishes shutting down`, async () => {
      // Several times: each one is a fresh server, connection and session.
      for (let i = 0; i < 5; i++) await shutdownRightAfterPeer(variant);
    });
  }
});
