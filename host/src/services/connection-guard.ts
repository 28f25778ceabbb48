/**
 * Bounds the connections to the host's HostService sockets (host.sock, and
 * the TCP listener of remoteHostService). Every plugin may connect, and a
 * hostile one could open thousands of connections and hold them: each costs
 * the host a file descriptor and memory, and a full accept backlog keeps the
 * other plugins out (found by a red-team run: 3,000 idle connections made a
 * neighbour's connect fail with EAGAIN).
 *
 * A connection counts as a plugin's once a call on it carries a registered
 * launch token. Until then it is unauthenticated: it is destroyed after
 * UNAUTHENTICATED_IDLE_MS without traffic, and at most
 * MAX_UNAUTHENTICATED_CONNECTIONS are kept (the oldest goes first). A launch
 * token may hold at most MAX_CONNECTIONS_PER_TOKEN connections; a call that
 * would make one more is answered on a connection that is then closed.
 *
 * grpc-js 1.14 has no per-connection hook: its HTTP/2 servers are reached
 * through a private field, guarded (without it nothing is bounded, and only
 * the token checks apply).
 */
import type { Http2Session, IncomingHttpHeaders } from "node:http2";
import type * as grpc from "@grpc/grpc-js";
import { AUTH_METADATA_KEY } from "@plugwire/proto";

/** How long a connection that has made no call with a launch token may sit idle. */
export const UNAUTHENTICATED_IDLE_MS = 5_000;
/** At most this many unauthenticated connections are kept; past it, the oldest is destroyed. */
export const MAX_UNAUTHENTICATED_CONNECTIONS = 64;
/** At most this many connections per launch token (a plugin needs one; its SDK may open a few). */
export const MAX_CONNECTIONS_PER_TOKEN = 16;
/** How long a connection closed for being over its token's bound has to finish the call it made. */
const OVER_LIMIT_GRACE_MS = 2_000;

export interface ConnectionLimitEvents {
  /** An unauthenticated connection was destroyed (idle, or the oldest past the bound). */
  onUnauthenticatedDropped?: (reason: "idle" | "too-many") => void;
  /** A plugin's token opened more than MAX_CONNECTIONS_PER_TOKEN connections; the newest was closed. */
  onTooManyForToken?: (token: string) => void;
}

function tokenOf(headers: IncomingHttpHeaders): string | undefined {
  const value = headers[AUTH_METADATA_KEY];
  if (typeof value !== "string" || !value.startsWith("Bearer ")) return undefined;
  return value.slice("Bearer ".length);
}

const GUARDED = new WeakSet<object>();

/**
 * Installs the bounds on every HTTP/2 server of `server` not guarded yet
 * (call again after a new bind). `isToken` says whether a bearer token is a
 * registered launch token. Returns false when the sessions cannot be reached.
 */
export function limitConnections(server: grpc.Server, isToken: (token: string) => boolean, events: ConnectionLimitEvents = {}): boolean {
  const internals = server as unknown as { http2Servers?: Map<import("node:events").EventEmitter, unknown> };
  if (!(internals.http2Servers instanceof Map)) return false;
  const state = stateOf(server);
  for (const http2Server of internals.http2Servers.keys()) {
    if (GUARDED.has(http2Server)) continue;
    GUARDED.add(http2Server);
    http2Server.on("session", (session: Http2Session) => guard(session, state, isToken, events));
  }
  return true;
}

interface GuardState {
  unauthenticated: Set<Http2Session>;
  byToken: Map<string, Set<Http2Session>>;
}

const STATES = new WeakMap<object, GuardState>();
function stateOf(server: object): GuardState {
  let s = STATES.get(server);
  if (!s) {
    s = { unauthenticated: new Set(), byToken: new Map() };
    STATES.set(server, s);
  }
  return s;
}

function guard(session: Http2Session, state: GuardState, isToken: (token: string) => boolean, events: ConnectionLimitEvents): void {
  let owner: string | undefined;
  state.unauthenticated.add(session);
  session.setTimeout(UNAUTHENTICATED_IDLE_MS, () => {
    if (owner !== undefined || session.destroyed) return;
    events.onUnauthenticatedDropped?.("idle");
    session.destroy();
  });
  session.once("close", () => {
    state.unauthenticated.delete(session);
    if (owner !== undefined) {
      const set = state.byToken.get(owner);
      set?.delete(session);
      if (set?.size === 0) state.byToken.delete(owner);
    }
  });
  if (state.unauthenticated.size > MAX_UNAUTHENTICATED_CONNECTIONS) {
    const oldest = state.unauthenticated.values().next().value as Http2Session;
    state.unauthenticated.delete(oldest);
    events.onUnauthenticatedDropped?.("too-many");
    // Out of the 'session' event: the new session's setup finishes first.
    setImmediate(() => {
      if (!oldest.destroyed) oldest.destroy();
    });
  }
  session.on("stream", (_stream: unknown, headers: IncomingHttpHeaders) => {
    if (owner !== undefined) return;
    const token = tokenOf(headers);
    if (token === undefined || !isToken(token)) return;
    owner = token;
    state.unauthenticated.delete(session);
    session.setTimeout(0);
    let set = state.byToken.get(token);
    if (!set) {
      set = new Set();
      state.byToken.set(token, set);
    }
    set.add(session);
    if (set.size > MAX_CONNECTIONS_PER_TOKEN) {
      events.onTooManyForToken?.(token);
      // This call is answered; the connection takes no more.
      if (!session.closed && !session.destroyed) {
        session.close();
        setTimeout(() => {
          if (!session.destroyed) session.destroy();
        }, OVER_LIMIT_GRACE_MS).unref();
      }
    }
  });
}
