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
 *
 * A connection node:http2 gave up on (it sent GOAWAY for a protocol error,
 * such as DATA on an idle stream) stops being read and tells nobody: it never
 * sees its peer close, and stays "open" for good. Were it the host's, every
 * later connection, the host's own reconnection included, would be refused
 * forever. listenUnix destroys such a connection within
 * DONE_SESSION_CHECK_MS (closeWhenNghttp2IsDone in @plugwire/proto). As a
 * second line, for a connection that is dead in a way nghttp2 does not show,
 * a call with the token on another connection while the host's is
 * open makes the guard ping the host's connection: no PING ACK within
 * HOST_PING_TIMEOUT_MS (or a ping that cannot be sent) and that connection is
 * destroyed, so the next call with the token is served. The refused call itself
 * is still refused: the caller retries.
 *
 * Connections that are not the host's are bounded: each is destroyed after
 * NON_HOST_IDLE_MS without traffic (a connection node:http2 gave up on has
 * none) or REFUSED_GRACE_MS after the guard refused it, and at most
 * MAX_NON_HOST_SESSIONS are kept (the oldest goes first), so a hostile peer
 * cannot pile up sockets and fds in the plugin. Every session's close and
 * destroy are deferred out of nghttp2's receive processing
 * (deferSessionTeardown in @plugwire/proto).
 */
import type { Http2Session, IncomingHttpHeaders } from "node:http2";
import { timingSafeEqual } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { AUTH_METADATA_KEY, deferSessionTeardown } from "@plugwire/proto";

/** Header the connection guard sets on a call it refuses; a client's own value is removed. */
export const REFUSED_HEADER = "plugwire-refused";

/** How long the host's connection has to answer the guard's PING before it is taken for dead. */
export const HOST_PING_TIMEOUT_MS = 2000;

/** How long a connection that is not the host's may sit idle (nothing read or written) before it is destroyed. */
export const NON_HOST_IDLE_MS = 5000;

/** How long a connection the guard refused (GOAWAY sent) has to finish its answered calls before it is destroyed. */
export const REFUSED_GRACE_MS = 2000;

/** At most this many connections that are not the host's are kept; past it, the oldest is destroyed. */
export const MAX_NON_HOST_SESSIONS = 64;

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
  let probing: Http2Session | undefined;
  /** Pings the host's connection; one that does not answer is destroyed. */
  const probe = (session: Http2Session): void => {
    if (probing === session) return;
    probing = session;
    let settled = false;
    const settle = (dead: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (probing === session) probing = undefined;
      if (dead && !session.destroyed) session.destroy();
    };
    const timer = setTimeout(() => settle(true), HOST_PING_TIMEOUT_MS);
    timer.unref();
    try {
      if (!session.ping((err) => settle(err !== null && err !== undefined))) settle(true);
    } catch {
      settle(true);
    }
  };
  /** Connections that are not (yet) the host's, oldest first: each has an idle limit, and there are at most MAX_NON_HOST_SESSIONS. */
  const others = new Set<Http2Session>();
  const track = (session: Http2Session): void => {
    others.add(session);
    session.once("close", () => others.delete(session));
    // A connection node:http2 gave up on (GOAWAY for a protocol error) is never read again and
    // never sees its peer close: without a limit a peer could pile up such sockets.
    session.setTimeout(NON_HOST_IDLE_MS, () => {
      if (session !== host) session.destroy();
    });
    if (others.size > MAX_NON_HOST_SESSIONS) {
      const oldest = others.values().next().value as Http2Session;
      others.delete(oldest);
      oldest.destroy();
    }
  };
  const guard = (session: Http2Session): void => {
    deferSessionTeardown(session);
    track(session);
    session.prependListener("stream", (_stream: unknown, headers: IncomingHttpHeaders) => {
      delete headers[REFUSED_HEADER];
      if (session === host) return;
      const hostOpen = host !== undefined && !host.closed && !host.destroyed;
      const valid = carriesToken(headers, expected);
      if (!hostOpen && valid) {
        host = session;
        others.delete(session);
        session.setTimeout(0);
        return;
      }
      // No host connection yet: a call without the token is refused by the
      // token check alone, and the connection may still become the host's.
      if (!hostOpen) return;
      headers[REFUSED_HEADER] = valid ? "second-connection" : "unauthenticated-connection";
      if (valid && host) probe(host);
      // Answer the refused call, then the connection is over: GOAWAY now, and
      // destroyed after a short grace even if its peer keeps streams open.
      if (!session.closed && !session.destroyed) {
        session.close();
        setTimeout(() => session.destroy(), REFUSED_GRACE_MS).unref();
      }
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
