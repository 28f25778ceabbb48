/**
 * The operator admin API (plugwire.admin.v1.AdminService) over the Connect
 * protocol: on a unix socket in a private dir next to the host's run dir (not
 * in the socket dir plugins are given), and optionally on a TCP port (loopback,
 * or any address with TLS, optionally mutual). Every request needs the admin
 * bearer token; bodies are capped before and after decompression. curl with
 * JSON works as well as the typed client. It drives a Host through its public
 * API only; the host does not know it exists (the CLI, or an application,
 * composes the two).
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { isIP } from "node:net";
import { dirname, join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { codeToHttpStatus, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import { MAX_MESSAGE_BYTES, PlugwireError, admin } from "@plugwire/proto";
import type { PayloadEffect } from "../delivery/channel.js";
import type { Host } from "../host.js";
import { ERROR_CODE_HEADER, toConnectError } from "./errors.js";
import { ADMIN_TOKEN_ENV, bearerMatches, newAdminToken, type AdminToken } from "./token.js";
import { checkSocketPath } from "../launch/rundir.js";
import type { PluginStatus } from "../supervisor/runner.js";
import { DashboardAssets } from "./dashboard.js";
import { HostObserver } from "./observe.js";

function info(s: PluginStatus): admin.PluginInfo {
  return {
    $typeName: "plugwire.admin.v1.PluginInfo",
    name: s.name,
    state: s.state,
    pid: s.pid ?? 0,
    restarts: s.restarts,
    queued: s.queued,
    inFlight: s.inFlight,
    lastAckedSeq: BigInt(s.lastAcked),
    lastExit: s.lastExit ?? "",
    lastError: s.lastError ?? "",
    payloadKinds: [...s.kinds],
    stateful: s.stateful,
    deadLetters: s.deadLetters,
    shadowedKinds: s.shadowedKinds.map((k) => ({ $typeName: "plugwire.admin.v1.ShadowedKind", kind: k.kind, owner: k.owner })),
    standbyState: s.standby.state,
    standbyPid: s.standby.pid ?? 0,
    remote: s.remote ? { $typeName: "plugwire.admin.v1.RemoteInfo", address: s.remote.address, connection: s.remote.connection } : undefined,
  };
}

async function guarded<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw toConnectError(e);
  }
}

/** WatchStatus's interval bounds and default, in ms. */
const WATCH_INTERVAL_MS = { min: 250, max: 10_000, default: 1_000 };
/** After an event worth showing at once, how long WatchStatus waits for more before its update. */
const WATCH_DEBOUNCE_MS = 50;

/** One WatchStatus update: every plugin's status, rates, restarts and last snapshot, and the log lines after `afterLogSeq`. */
export function statusUpdate(host: Host, observer: HostObserver, afterLogSeq: number): admin.WatchStatusResponse {
  const now = Date.now();
  return create(admin.WatchStatusResponseSchema, {
    timeMs: BigInt(now),
    dispatchRate: observer.totalDispatchRate,
    plugins: host.status().map((s) => {
      const snap = observer.snapshotOf(s.name);
      const rates = observer.ratesOf(s.name);
      return {
        info: info(s),
        readySinceMs: BigInt(s.readySince ?? 0),
        replayPayloads: s.replay ?? 0,
        replayBytes: BigInt(s.replayBytes ?? 0),
        lastSnapshot: snap && { atMs: BigInt(snap.atMs), sizeBytes: BigInt(snap.sizeBytes), appliedSeq: BigInt(snap.appliedSeq), restored: snap.restored },
        restarts: observer.restartsOf(s.name, now).map((r) => ({ atMs: BigInt(r.atMs), reason: r.reason })),
        dispatchRate: rates.dispatchRate,
        ackLatencyMs: rates.ackLatencyMs,
      };
    }),
    logs: observer.logsAfter(afterLogSeq).map((l) => ({ seq: BigInt(l.seq), timeMs: BigInt(l.timeMs), plugin: l.plugin, level: l.level, msg: l.msg })),
  });
}

/** Resolves after `ms`, or sooner once the observer reports a change (then after a short debounce); rejects when `signal` aborts. */
async function nextTick(observer: HostObserver, ms: number, signal: AbortSignal): Promise<void> {
  const changed = new AbortController();
  const onChange = (): void => changed.abort();
  observer.once("change", onChange);
  try {
    await sleep(ms, undefined, { signal: AbortSignal.any([signal, changed.signal]) }).catch(() => undefined);
    signal.throwIfAborted();
    if (changed.signal.aborted) await sleep(WATCH_DEBOUNCE_MS, undefined, { signal });
  } finally {
    observer.off("change", onChange);
  }
}

export function adminRoutes(host: Host, observer?: HostObserver) {
  const statusOf = (name: string): admin.PluginInfo => info(host.status().find((s) => s.name === name)!);
  const operator = (name: string, what: string): void => observer?.log(name, "info", `${what} (admin API)`);
  return (router: ConnectRouter): void => {
    router.service(admin.AdminService, {
      listPlugins: async () => ({ plugins: host.status().map(info) }),
      restartPlugin: (req) => guarded(async () => {
        operator(req.name, "restart requested");
        await host.restart(req.name);
        observer?.noteRestart(req.name, "operator restart (admin API)");
        return { plugin: statusOf(req.name) };
      }),
      stopPlugin: (req) => guarded(async () => {
        operator(req.name, "stop requested");
        await host.stopPlugin(req.name);
        return { plugin: statusOf(req.name) };
      }),
      watchStatus: async function* (req, ctx) {
        if (!observer) throw new ConnectError("this admin server keeps no status history (it was made without a HostObserver)", Code.Unimplemented);
        const interval = Math.min(WATCH_INTERVAL_MS.max, Math.max(WATCH_INTERVAL_MS.min, req.intervalMs || WATCH_INTERVAL_MS.default));
        let after = 0;
        while (!ctx.signal.aborted) {
          const update = statusUpdate(host, observer, after);
          after = Number(update.logs.at(-1)?.seq ?? BigInt(after));
          yield update;
          try {
            await nextTick(observer, interval, ctx.signal);
          } catch {
            return;
          }
        }
      },
      snapshotNow: (req) => guarded(async () => {
        if (req.name) {
          const record = await host.snapshot(req.name).then(
            (r) => ({ ok: true, record: r, error: "" }),
            (e: unknown) => ({ ok: false, record: undefined, error: PlugwireError.from(e).message }),
          );
          return {
            results: [
              {
                plugin: req.name,
                ok: record.ok,
                appliedSeq: BigInt(record.record?.appliedSeq ?? 0),
                sizeBytes: BigInt(record.record?.bytes.byteLength ?? 0),
                error: record.error,
              },
            ],
          };
        }
        const all = await host.snapshotAll();
        return {
          results: [
            ...all.ok.map((o) => ({ plugin: o.plugin, ok: true, appliedSeq: BigInt(o.value.appliedSeq), sizeBytes: BigInt(o.value.bytes.byteLength) })),
            ...all.failed.map((f) => ({ plugin: f.plugin, ok: false, error: f.error.message })),
          ],
        };
      }),
      listDeadLetters: (req) => guarded(async () => ({
        deadLetters: host.listDeadLetters(req.name).map((d) => ({
          seq: BigInt(d.seq),
          kind: d.kind,
          src: d.src,
          sizeBytes: BigInt(d.sizeBytes),
          parkedAtMs: BigInt(d.parkedAt.getTime()),
          reason: d.reason,
        })),
      })),
      replayDeadLetter: (req) => guarded(async () => {
        operator(req.name, `replay of dead letter seq ${req.seq} requested`);
        await host.replayDeadLetter(req.name, Number(req.seq));
        return {};
      }),
      dispatch: (req) => guarded(() => dispatch(host, req)),
      upgrade: (req) => guarded(async () => {
        const result = await host.upgrade(req.name, { command: req.command || undefined, args: req.replaceArgs ? req.args : undefined });
        return { plugin: statusOf(req.name), fromPid: result.fromPid, toPid: result.toPid, pauseMs: result.pauseMs, appliedSeq: BigInt(result.appliedSeq) };
      }),
    });
  };
}

/** PEM files of the TCP port's TLS: its certificate and key, and a CA that client certificates must chain to (mTLS). */
export interface AdminTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** When set, a client must present a certificate signed by this CA (mutual TLS). */
  ca?: string | Buffer;
}

/** Where the admin API listens, who may call it, and how much it reads. */
export interface AdminServerOptions {
  /**
   * Unix socket path; default `admin.sock` in a private dir (`pw-admin-XXXXXX`,
   * mode 0700) made next to the host's run dir, never in the socket dir the
   * plugins are given (PLUGWIRE_SOCKET_DIR).
   */
  socketPath?: string;
  /** Also listen on TCP at this port (0 picks a free one). */
  tcpPort?: number;
  /**
   * Address of the TCP port; default 127.0.0.1. Anything but a loopback
   * address is refused unless `tls` is set.
   */
  tcpHost?: string;
  /** Serve the TCP port over TLS (and require client certificates when `tls.ca` is set). */
  tls?: AdminTlsOptions;
  /**
   * The bearer token every request must carry (`authorization: Bearer <token>`),
   * on the socket and the TCP port alike. Default: a random one made now
   * (`server.token`); `plugwire run` passes the data dir's, see
   * loadOrCreateAdminToken.
   */
  token?: AdminToken | string;
  /** Largest request body of any method but Dispatch, in bytes, before and after decompression; default 1 MiB. */
  maxBodyBytes?: number;
  /** Largest Dispatch request body, in bytes, before and after decompression; default 16 MiB (the largest payload a Deliver message carries). */
  maxDispatchBodyBytes?: number;
  /**
   * Serve the web dashboard (docs/dashboard.md) at `/` of the same server;
   * default true. The page and its script carry no secret: the page asks for
   * the token (or takes a one-time login code, see `AdminServer.dashboardLoginCode`).
   */
  dashboard?: boolean;
  /**
   * What WatchStatus reports beyond the host's status (recent restarts, log
   * lines, rates, snapshots). Default: one made now; attach your own before
   * `host.start()` to see the first launches' snapshot restores too.
   */
  observer?: HostObserver;
}

/** File name of the admin socket in its private dir. */
export const ADMIN_SOCKET_NAME = "admin.sock";
/** Prefix of the private dir the admin socket is made in by default. */
export const ADMIN_DIR_PREFIX = "pw-admin-";
export const DEFAULT_ADMIN_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_ADMIN_MAX_DISPATCH_BODY_BYTES = MAX_MESSAGE_BYTES;
/** The URL path of Dispatch, the one method with a larger body limit. */
const DISPATCH_PATH = `/${admin.AdminService.typeName}/${admin.AdminService.method.dispatch.name}`;

/** True for 127.0.0.0/8, ::1 (also as ::ffff:127.x) and "localhost". */
export function isLoopbackAddress(address: string): boolean {
  const a = address.replace(/^\[|\]$/g, "").toLowerCase();
  if (a === "localhost") return true;
  if (isIP(a) === 4) return a.startsWith("127.");
  if (isIP(a) === 6) return a === "::1" || a === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(a);
  return false;
}

/** Refuses a TCP address other than loopback without TLS (invalid_config, naming the flags to use). */
export function checkAdminBind(tcpHost: string, tcpPort: number | undefined, tls: AdminTlsOptions | undefined): void {
  if (tcpPort === undefined || tls !== undefined || isLoopbackAddress(tcpHost)) return;
  throw new PlugwireError(
    "invalid_config",
    `refusing to serve the admin API on ${tcpHost} without TLS: anyone on the network could read the token and every request. ` +
      `Pass --admin-tls-cert FILE and --admin-tls-key FILE (and --admin-tls-ca FILE to require client certificates), or bind a loopback address (--admin-host 127.0.0.1)`,
  );
}

function byteLimit(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new PlugwireError("invalid_argument", `admin ${name} must be a whole number of bytes, at least 1, not ${value}`);
  return value;
}

/**
 * Serves the admin API for a started host: on a unix socket (by default
 * `admin.sock` in a private 0700 dir next to the host's run dir) and, when
 * asked, on a TCP port (loopback unless TLS is set). Every request needs the
 * bearer token. Close it before `host.stop()`.
 */
export async function serveAdmin(host: Host, options: AdminServerOptions = {}): Promise<AdminServer> {
  const maxBodyBytes = byteLimit(options.maxBodyBytes, DEFAULT_ADMIN_MAX_BODY_BYTES, "maxBodyBytes");
  const maxDispatchBodyBytes = byteLimit(options.maxDispatchBodyBytes, DEFAULT_ADMIN_MAX_DISPATCH_BODY_BYTES, "maxDispatchBodyBytes");
  const tcpHost = options.tcpHost ?? "127.0.0.1";
  checkAdminBind(tcpHost, options.tcpPort, options.tls);
  const token: AdminToken = typeof options.token === "string" ? { value: options.token } : (options.token ?? { value: newAdminToken() });
  let socketPath = options.socketPath;
  let ownDir: string | undefined;
  if (socketPath === undefined) {
    const runDir = host.runDirectory;
    if (runDir === undefined) {
      throw new PlugwireError("invalid_argument", "serveAdmin(host) needs a started host (its admin socket dir is made next to the host's run dir); call host.start() first, or pass socketPath");
    }
    // A sibling of the run dir, not inside it: plugins are given the run dir.
    ownDir = mkdtempSync(join(dirname(runDir), ADMIN_DIR_PREFIX));
    chmodSync(ownDir, 0o700);
    socketPath = join(ownDir, ADMIN_SOCKET_NAME);
  }
  try {
    checkSocketPath(socketPath, "plugwire admin API");
    const server = new AdminServer(host, socketPath, token, { maxBodyBytes, maxDispatchBodyBytes }, ownDir, {
      dashboard: options.dashboard ?? true,
      observer: options.observer,
    });
    await server.listen(options.tcpPort, tcpHost, options.tls);
    return server;
  } catch (e) {
    if (ownDir !== undefined) rmSync(ownDir, { recursive: true, force: true });
    throw e;
  }
}

/** Which kind a Dispatch request means: its kind, or its plugin's only kind. */
function dispatchKind(host: Host, req: admin.DispatchRequest): string {
  const plugins = host.status();
  const plugin = req.plugin ? plugins.find((p) => p.name === req.plugin) : undefined;
  if (req.plugin && !plugin) {
    throw new PlugwireError("invalid_argument", `no plugin named '${req.plugin}'; plugins: ${plugins.map((p) => p.name).join(", ")}`);
  }
  if (!req.kind) {
    if (!plugin) throw new PlugwireError("invalid_argument", "Dispatch needs a payload kind, or a plugin that claims exactly one kind");
    if (plugin.kinds.length !== 1) {
      const claims = plugin.kinds.length === 0 ? `claims no payload kinds (it is ${plugin.state})` : `claims ${plugin.kinds.length} payload kinds (${plugin.kinds.join(", ")})`;
      throw new PlugwireError("invalid_argument", `plugin '${plugin.name}' ${claims}; name the kind to send with --kind KIND`, { plugin: plugin.name });
    }
    return plugin.kinds[0]!;
  }
  const owner = host.ownerOf(req.kind);
  if (plugin && owner !== undefined && owner !== plugin.name) {
    throw new PlugwireError("invalid_argument", `payload kind '${req.kind}' is routed to plugin '${owner}', not '${plugin.name}' (the first plugin listed that claims a kind wins it)`, {
      plugin: plugin.name,
    });
  }
  return req.kind;
}

/** Dispatches a payload and reports its outcome and the effects its handler produced. */
async function dispatch(host: Host, req: admin.DispatchRequest): Promise<Omit<admin.DispatchResponse, "$typeName">> {
  const kind = dispatchKind(host, req);
  const effects: PayloadEffect[] = [];
  const started = performance.now();
  let error = "";
  try {
    await host.dispatch(req.src, kind, req.body, { onEffect: (effect) => effects.push(effect) });
  } catch (e) {
    const err = PlugwireError.from(e);
    if (err.code !== "handler_failed") throw err;
    error = err.message;
  }
  const durationMs = BigInt(Math.round(performance.now() - started));
  return {
    plugin: host.ownerOf(kind) ?? req.plugin,
    kind,
    outcome: error ? admin.DispatchOutcome.HANDLER_ERROR : admin.DispatchOutcome.ACKED,
    error,
    effects: await Promise.all(effects.map(effectInfo)),
    durationMs,
  };
}

async function effectInfo(effect: PayloadEffect): Promise<admin.PayloadEffect> {
  if (effect.type === "sendDirect") {
    return create(admin.PayloadEffectSchema, {
      effect: { case: "sendDirect", value: { peer: effect.peer, frame: effect.frame, performed: effect.performed, droppedReason: effect.droppedReason ?? "" } },
    });
  }
  // The handler awaited its call before acking, as a rule; a send still
  // pending after a second is reported as such rather than waited for.
  let timer: NodeJS.Timeout | undefined;
  const answer = await Promise.race([
    effect.routed.then(
      (routed) => ({ routed, error: "" }),
      (e: unknown) => ({ routed: false, error: e instanceof Error ? e.message : String(e) }),
    ),
    new Promise<{ routed: boolean; error: string }>((resolve) => {
      timer = setTimeout(resolve, 1_000, { routed: false, error: "no answer from the control port within 1 s" });
    }),
  ]);
  clearTimeout(timer);
  return create(admin.PayloadEffectSchema, { effect: { case: "sendRouted", value: { dst: effect.dst, frame: effect.frame, ...answer } } });
}

/** Body bytes an unauthenticated request may send and still get its error read back (more: the connection is closed). */
const UNAUTHENTICATED_DRAIN_BYTES = 64 * 1024;
/** Past a body's limit, what the host still reads and throws away so the client sees the answer; then it closes the connection. */
const DISCARD_AFTER_REFUSAL_BYTES = 64 * 1024 * 1024;

/** Writes a Connect-protocol error (JSON). */
function refuse(res: ServerResponse, code: Code, message: string, plugwireCode: string, close = false): void {
  const body = errorToJsonBytes(new ConnectError(message, code), undefined);
  res.writeHead(codeToHttpStatus(code), {
    "content-type": "application/json",
    "content-length": body.byteLength,
    [ERROR_CODE_HEADER]: plugwireCode,
    ...(close ? { connection: "close" } : {}),
  });
  res.end(body);
}

/** What readBody got: the body when it fits, else how much was seen. */
interface BodyRead {
  /** The body's chunks; empty when it was over the limit. */
  chunks: Buffer[];
  bytes: number;
  over: boolean;
  /** The body was read to its end (else the connection must close after the answer). */
  complete: boolean;
}

/**
 * Reads a request body, keeping at most `keepBytes` (past that it is dropped
 * as it arrives) and reading at most `readBytes` in all. The whole body is
 * read before any answer, so that a client still sending (and one that asked
 * to close the connection) is not reset before it reads the answer; past
 * `readBytes`, or on a declared length over it, it stops at once.
 */
function readBody(req: IncomingMessage, keepBytes: number, readBytes: number, then: (read: BodyRead) => void): void {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > readBytes) {
    then({ chunks: [], bytes: declared, over: true, complete: false });
    return;
  }
  let chunks: Buffer[] = [];
  let bytes = 0;
  let done = false;
  const finish = (complete: boolean): void => {
    if (done) return;
    done = true;
    req.off("data", onData);
    req.off("end", onEnd);
    req.off("close", onClose);
    if (!complete) req.pause();
    then({ chunks, bytes, over: bytes > keepBytes, complete });
  };
  const onData = (chunk: Buffer): void => {
    bytes += chunk.byteLength;
    if (bytes <= keepBytes) chunks.push(chunk);
    else chunks = [];
    if (bytes > readBytes) finish(false);
  };
  const onEnd = (): void => finish(true);
  const onClose = (): void => finish(false);
  req.on("data", onData);
  req.once("end", onEnd);
  req.once("close", onClose);
  req.once("error", () => finish(false));
}

function sizeText(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : bytes % 1024 === 0 ? `${bytes / 1024} KiB` : `${bytes} bytes`;
}

/** A running admin server (unix socket, plus TCP when asked). */
export class AdminServer {
  private readonly servers: Server[] = [];
  private readonly limits: { maxBodyBytes: number; maxDispatchBodyBytes: number };
  /** Feeds WatchStatus. */
  readonly observer: HostObserver;
  private readonly ownObserver: boolean;
  /** The dashboard's page and script, and its one-time login codes; undefined when the dashboard is off. */
  private readonly dashboard: DashboardAssets | undefined;

  constructor(
    private readonly host: Host,
    /** The unix socket it listens on. */
    readonly socketPath: string,
    private readonly adminToken: AdminToken = { value: newAdminToken() },
    limits: Partial<{ maxBodyBytes: number; maxDispatchBodyBytes: number }> = {},
    /** The private dir made for the socket, removed on close. */
    private readonly ownDir?: string,
    view: { dashboard?: boolean; observer?: HostObserver } = {},
  ) {
    this.ownObserver = view.observer === undefined;
    this.observer = view.observer ?? new HostObserver(host);
    this.dashboard = view.dashboard === false ? undefined : new DashboardAssets();
    this.limits = {
      maxBodyBytes: limits.maxBodyBytes ?? DEFAULT_ADMIN_MAX_BODY_BYTES,
      maxDispatchBodyBytes: limits.maxDispatchBodyBytes ?? DEFAULT_ADMIN_MAX_DISPATCH_BODY_BYTES,
    };
  }

  /** The bearer token requests must carry. */
  get token(): string {
    return this.adminToken.value;
  }

  /** True when the dashboard is served at `/`. */
  get servesDashboard(): boolean {
    return this.dashboard !== undefined;
  }

  /**
   * A one-time login code for the dashboard: the page at `/#code=CODE`
   * trades it for the token once, within `ttlMs` (default 10 minutes).
   * Undefined when the dashboard is off.
   */
  dashboardLoginCode(ttlMs?: number): string | undefined {
    return this.dashboard?.newLoginCode(ttlMs);
  }

  /** The request handler: token first (nothing is read without it), then the method's body limit. */
  private handler(): (req: IncomingMessage, res: ServerResponse) => void {
    const methods = admin.AdminService.methods.map((m) => m.name);
    const unknownMethod = (req: { method?: string; url?: string }, res: ServerResponse): void => {
      refuse(
        res,
        Code.Unimplemented,
        `the admin API has no method ${req.method ?? "?"} ${(req.url ?? "").slice(0, 200)}; it serves POST /${admin.AdminService.typeName}/METHOD with METHOD one of ${methods.join(", ")}`,
        "invalid_argument",
      );
    };
    // gzip and br are accepted, but Connect decompresses with zlib's
    // maxOutputLength = readMaxBytes: a bomb fails once its output passes the
    // limit, without being inflated in full. Only the Connect protocol is
    // served (the server is HTTP/1.1; the CLI and curl speak Connect).
    const adapter = (readMaxBytes: number) =>
      connectNodeAdapter({
        routes: adminRoutes(this.host, this.observer),
        readMaxBytes,
        acceptCompression: [compressionGzip, compressionBrotli],
        grpc: false,
        grpcWeb: false,
        fallback: (req, res) => unknownMethod(req, res as ServerResponse),
      });
    const small = adapter(this.limits.maxBodyBytes);
    const large = adapter(this.limits.maxDispatchBodyBytes);
    const tokenHint = this.adminToken.path
      ? `It is in ${this.adminToken.path} (readable by its owner only): plugwire commands read it from the data dir of the config they are given (-c FILE), or pass --admin-token-file FILE or set ${ADMIN_TOKEN_ENV}.`
      : "Ask the application that serves this admin API for its token.";
    const handle = (req: IncomingMessage, res: ServerResponse): void => {
      const socket = req.socket;
      // A body not read to its end: the connection closes after the answer.
      const answer = (read: BodyRead, code: Code, message: string, plugwireCode: string): void => {
        if (!read.complete) res.once("finish", () => socket.destroySoon());
        refuse(res, code, message, plugwireCode, !read.complete);
      };
      // The dashboard's static files and its one-time login: no token needed, none given out but for a valid code.
      if (this.dashboard?.handle(req, res, this.adminToken.value)) return;
      const given = req.headers.authorization;
      if (!bearerMatches(given, this.adminToken.value)) {
        // Nothing of the body is kept; a small one is read so the client gets the answer.
        readBody(req, 0, UNAUTHENTICATED_DRAIN_BYTES, (read) =>
          answer(
            read,
            Code.Unauthenticated,
            `${given === undefined ? "the admin API needs its token" : "the admin API refused the token given"}: send 'authorization: Bearer <token>'. ${tokenHint}`,
            "unauthenticated",
          ),
        );
        return;
      }
      const path = (req.url ?? "").split("?")[0]!;
      const isDispatch = path === DISPATCH_PATH;
      const limit = isDispatch ? this.limits.maxDispatchBodyBytes : this.limits.maxBodyBytes;
      const declared = req.headers["content-length"] !== undefined;
      readBody(req, limit, limit + DISCARD_AFTER_REFUSAL_BYTES, (read) => {
        if (read.over) {
          answer(
            read,
            Code.ResourceExhausted,
            `admin request ${path.slice(0, 200)} has ${declared ? `a ${read.bytes}-byte body` : "a body"}, over the ${sizeText(limit)} limit; it was not used` +
              (isDispatch ? " (a payload must fit one Deliver message)" : " (raise the limit with --admin-max-body-bytes if you must)"),
            "payload_too_large",
          );
          return;
        }
        // Connect reads the body it was given (and inflates it, bounded by the same limit).
        const { chunks } = read;
        Object.defineProperty(req, Symbol.asyncIterator, {
          configurable: true,
          value: async function* () {
            yield* chunks;
          },
        });
        void (isDispatch ? large : small)(req, res);
      });
    };
    return (req, res) => {
      try {
        handle(req, res);
      } catch (e) {
        // Never let one request take the host down.
        this.host.logger.error({ err: String(e), url: (req.url ?? "").slice(0, 200) }, "admin request failed");
        if (!res.headersSent) refuse(res, Code.Internal, "the admin API failed on this request; see the host's log", "internal", true);
        else req.socket?.destroy();
      }
    };
  }

  async listen(tcpPort?: number, tcpHost = "127.0.0.1", tls?: AdminTlsOptions): Promise<void> {
    const handler = this.handler();
    const listen = (server: Server, target: () => void): Promise<void> =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.once("listening", () => {
          server.off("error", reject);
          resolve();
        });
        target();
      });
    const unix = createServer(handler);
    try {
      await listen(unix, () => unix.listen(this.socketPath));
    } catch (e) {
      await this.close(); // (stops the observer it made)
      throw e;
    }
    this.servers.push(unix);
    if (tcpPort !== undefined) {
      const tcp = tls
        ? createHttpsServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.ca !== undefined, rejectUnauthorized: tls.ca !== undefined, minVersion: "TLSv1.2" }, handler)
        : createServer(handler);
      try {
        await listen(tcp, () => tcp.listen(tcpPort, tcpHost));
      } catch (e) {
        await this.close();
        throw e;
      }
      this.servers.push(tcp);
    }
  }

  /** The TCP port actually bound, if any (useful with port 0). */
  get tcpPort(): number | undefined {
    const address = this.servers[1]?.address();
    return address && typeof address === "object" ? address.port : undefined;
  }

  async close(): Promise<void> {
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.servers.length = 0;
    if (this.ownObserver) this.observer.close();
    if (this.ownDir !== undefined) rmSync(this.ownDir, { recursive: true, force: true });
  }
}
