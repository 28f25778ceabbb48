/**
 * One connection per plugin server: the host's (docs/protocol.md §6).
 *
 * The first connection that makes a call with the launch's token becomes the
 * host's. While it is open, every call on any other connection is refused
 * with UNAUTHENTICATED, even one with the right token, and that connection
 * is closed (GOAWAY once the refused calls are answered). Before the host's
 * connection exists, a call without the token is refused by the token check
 * alone and its connection stays open. When the host's
 * connection closes (the host dials again after a broken connection), the
 * next connection that authenticates becomes the host's.
 *
 * Node has no SO_PEERCRED, so the connection is told apart by the token it
 * carries first, not by the peer's pid. grpc-js 1.14 has no per-connection
 * hook either: its HTTP/2 servers are reached through a private field
 * (guarded: without it, every connection is served and only the token is
 * checked), and a listener put in front of grpc-js's own marks a refused call
 * in its headers, which the SDK's authorize step then refuses.
 */
import type { Http2Session, IncomingHttpHeaders } from "node:http2";
import { timingSafeEqual } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { AUTH_METADATA_KEY } from "@plugwire/proto";

/** Header the connection guard sets on a call it refuses; a client's own value is removed. */
export const REFUSED_HEADER = "plugwire-refused";

/** Why the guard refused a call (the value of REFUSED_HEADER). */
export type RefusedReason = "second-connection" | "unauthenticated-connection";

function carriesToken(headers: IncomingHttpHeaders, expected: Buffer): boolean {
  const value = headers[AUTH_METADATA_KEY];
  if (typeof value !== "string" || !value.startsWith("Bearer ")) return false;
  const presented = Buffer.from(value.slice("Bearer ".length));
  return presented.length === expected.length && timingSafeEqual(presented, expected);
}

/**
 * Installs the guard on a bound grpc-js server. Returns false when the
 * server's HTTP/2 sessions cannot be reached (a grpc-js without the private
 * fields): then only the token protects the plugin.
 */
export function acceptOnlyHostConnection(server: grpc.Server, token: string): boolean {
  const internals = server as unknown as {
    http2Servers?: Map<import("node:events").EventEmitter, unknown>;
    sessions?: Map<Http2Session, unknown>;
  };
  if (!(internals.http2Servers instanceof Map) || internals.http2Servers.size === 0) return false;
  const expected = Buffer.from(`${token}`);
  let host: Http2Session | undefined;
  const guard = (session: Http2Session): void => {
    session.prependListener("stream", (_stream: unknown, headers: IncomingHttpHeaders) => {
      delete headers[REFUSED_HEADER];
      if (session === host) return;
      const hostOpen = host !== undefined && !host.closed && !host.destroyed;
      const valid = carriesToken(headers, expected);
      if (!hostOpen && valid) {
        host = session;
        return;
      }
      // No host connection yet: a call without the token is refused by the
      // token check alone, and the connection may still become the host's.
      if (!hostOpen) return;
      headers[REFUSED_HEADER] = valid ? "second-connection" : "unauthenticated-connection";
      // Answer the refused call, then the connection is over.
      if (!session.closed && !session.destroyed) session.close();
    });
  };
  for (const http2Server of internals.http2Servers.keys()) http2Server.on("session", guard);
  // Connections accepted before the guard was installed (between bind and now).
  if (internals.sessions instanceof Map) for (const session of internals.sessions.keys()) guard(session);
  return true;
}

/** The reason the guard refused this call, if it did. */
export function refusedReason(metadata: grpc.Metadata): RefusedReason | undefined {
  const value = metadata.get(REFUSED_HEADER)[0];
  return value === "second-connection" || value === "unauthenticated-connection" ? value : undefined;
}
