/**
 * Attach mode (docs/remote-plugins.md, docs/protocol.md §18): the plugin is
 * run by someone else (Kubernetes, systemd, a supervisor script) and serves
 * on TCP with mutual TLS; the host dials it instead of spawning it.
 *
 * `attachPlugin` is the launcher the runner uses in place of `launchPlugin`.
 * It returns a "process" whose exit is the loss of the connection, so the
 * runner's crash rules (redelivery, replay, dead letters, backoff and
 * quarantine) apply unchanged: a lost connection is a crash, and a "kill"
 * (hung plugin, broken stream, the shutdown ladder) closes the connection.
 *
 * TLS material is read from its files on every attach, so a rotated
 * certificate is used from the next (re)connection on without a restart.
 */
import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { isIP } from "node:net";
import { checkServerIdentity } from "node:tls";
import * as grpc from "@grpc/grpc-js";
import {
  DEFAULT_TLS_RELOAD_MS,
  PROTOCOL_VERSION,
  PluginService,
  PlugwireError,
  connect,
  health,
  isLoopbackHost,
  parseTcpAddress,
  remoteServerCredentials,
  tcpTarget,
  type TcpAddress,
} from "@plugwire/proto";
import type { Logger } from "pino";
import type { Handshake } from "../handshake/parse.js";
import type { DialedPlugin } from "../transport/dial.js";
import type { ExitInfo } from "./spawn.js";

/** `attach:` of a plugin entry, as the application or the YAML file gives it. */
export interface AttachConfig {
  /** Where the plugin serves: `tcp://HOST:PORT` (`tcp://[::1]:7443` for IPv6). */
  address: string;
  /**
   * PEM files: `ca` verifies the plugin's server certificate; `cert` and
   * `key` are the host's client certificate, which the plugin checks
   * against its PLUGWIRE_TLS_CLIENT_CA. Required unless `plaintext` is set.
   */
  tls?: { ca: string; cert: string; key: string };
  /** The name the plugin's certificate must carry (SAN); default the address's host. */
  serverName?: string;
  /** Dial without TLS: refused unless the address is loopback (tests and local debugging only). */
  plaintext?: boolean;
}

export interface ResolvedAttachConfig {
  address: string;
  tcp: TcpAddress;
  tls: { ca: string; cert: string; key: string } | undefined;
  serverName: string;
}

function invalid(name: string, message: string): PlugwireError {
  return new PlugwireError("invalid_config", `plugin '${name}': ${message}`, { plugin: name });
}

/** Validates `attach:`; a plaintext non-loopback address is refused here, before anything dials. */
export function resolveAttachConfig(name: string, input: unknown): ResolvedAttachConfig {
  if (input === null || typeof input !== "object" || Array.isArray(input)) {
    throw invalid(name, "attach must be an object: { address: tcp://HOST:PORT, tls: { ca, cert, key }, serverName }");
  }
  const a = input as Record<string, unknown>;
  for (const key of Object.keys(a)) {
    if (!["address", "tls", "serverName", "plaintext"].includes(key)) throw invalid(name, `attach.${key} is not an attach option (use address, tls, serverName, plaintext)`);
  }
  if (typeof a.address !== "string") throw invalid(name, "attach.address is required: tcp://HOST:PORT where the plugin serves");
  const tcp = parseTcpAddress(a.address);
  if (typeof tcp === "string") throw invalid(name, `attach.address ${tcp}`);
  if (a.serverName !== undefined && (typeof a.serverName !== "string" || a.serverName.length === 0)) {
    throw invalid(name, "attach.serverName must be a non-empty string: the DNS name or IP the plugin's certificate carries");
  }
  if (a.plaintext !== undefined && typeof a.plaintext !== "boolean") throw invalid(name, "attach.plaintext must be true or false");
  let tls: ResolvedAttachConfig["tls"];
  if (a.tls !== undefined) {
    const t = a.tls as Record<string, unknown>;
    if (t === null || typeof t !== "object" || Array.isArray(t)) throw invalid(name, "attach.tls must be an object { ca, cert, key } of PEM file paths");
    for (const key of ["ca", "cert", "key"]) {
      if (typeof t[key] !== "string" || (t[key] as string).length === 0) {
        throw invalid(name, `attach.tls.${key} must be a PEM file path (ca: verifies the plugin; cert and key: the host's client certificate)`);
      }
    }
    for (const key of Object.keys(t)) if (!["ca", "cert", "key"].includes(key)) throw invalid(name, `attach.tls.${key} is not a TLS option (use ca, cert, key)`);
    tls = { ca: t.ca as string, cert: t.cert as string, key: t.key as string };
    if (a.plaintext === true) throw invalid(name, "attach sets both tls and plaintext: true; remove one");
  } else if (a.plaintext !== true) {
    throw invalid(
      name,
      `attach to ${a.address} needs tls: { ca, cert, key } (mutual TLS); plaintext is only for a loopback address, with plaintext: true`,
    );
  } else if (!isLoopbackHost(tcp.host)) {
    throw invalid(
      name,
      `refusing to attach to ${a.address} in plaintext: ${tcp.host} is not a loopback address, and anyone on the path could read and forge its payloads. ` +
        `Give attach a tls: { ca, cert, key } (docs/remote-plugins.md); plaintext: true is allowed only for 127.0.0.1, ::1 or localhost`,
    );
  }
  return { address: a.address, tcp, tls, serverName: (a.serverName as string | undefined) ?? tcp.host };
}

export interface AttachOptions {
  /** The token the runner registered for this launch; sent as the bearer token (the plugin relies on TLS, docs/protocol.md §18). */
  token: string;
  /** How long dialing and the TLS handshake may take. */
  connectTimeoutMs: number;
  logger: Logger;
  signal?: AbortSignal;
}

/** What `plugwire status` shows of a remote plugin's connection. */
export type ConnectionState = "connecting" | "connected" | "lost" | "closed";

/** An attached plugin: the runner's view of a "process" that is a connection. */
export interface AttachedProcess {
  /** No process of the host's: 0. */
  readonly pid: number;
  readonly handshake: Handshake;
  readonly exited: Promise<ExitInfo>;
  readonly hasExited: boolean;
  readonly address: string;
  readonly conn: DialedPlugin;
  connectionState(): ConnectionState;
  stderrTail(): string[];
  /** Closes the connection (any signal): the host cannot signal a process it does not own. */
  signalGroup(signal: NodeJS.Signals, afterExit?: boolean): void;
  limitExceeded(exit: ExitInfo): string | undefined;
}

function readPem(name: string, what: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new PlugwireError(
      "invalid_config",
      `plugin '${name}': cannot read attach.tls.${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}; it must be a PEM file the host can read`,
      { plugin: name, cause: e },
    );
  }
}

/** Explains a TLS or connect failure of the pre-flight, in words an operator can act on. */
function explainDialError(name: string, attach: ResolvedAttachConfig, e: Error & { code?: string }): PlugwireError {
  const text = `${e.code ? `${e.code}: ` : ""}${e.message}`;
  const where = `plugin '${name}' at ${attach.address}`;
  const tlsCode = e.code ?? "";
  if (/CERT_HAS_EXPIRED|CERT_NOT_YET_VALID/.test(tlsCode)) {
    return new PlugwireError("unauthenticated", `${where}: its server certificate is not valid now (${text}); renew the plugin's certificate`, { plugin: name, cause: e });
  }
  if (/UNABLE_TO_VERIFY|SELF_SIGNED|UNABLE_TO_GET_ISSUER|CERT_SIGNATURE_FAILURE|ERR_TLS_CERT_ALTNAME_INVALID|CERT_UNTRUSTED/.test(tlsCode)) {
    return new PlugwireError(
      "unauthenticated",
      `${where}: its server certificate was refused (${text}); attach.tls.ca must be the CA that signed it, and it must name ${attach.serverName} (attach.serverName)`,
      { plugin: name, cause: e },
    );
  }
  if (/alert|certificate required|unknown ca|bad certificate|certificate expired/i.test(e.message)) {
    return new PlugwireError(
      "unauthenticated",
      `${where} refused the host's client certificate (${text}); the plugin's PLUGWIRE_TLS_CLIENT_CA must be the CA that signed attach.tls.cert, and that certificate must be valid now`,
      { plugin: name, cause: e },
    );
  }
  if (/wrong version number|packet length too long|http request|unknown protocol|ERR_SSL_/i.test(text) || tlsCode === "ERR_HTTP2_ERROR") {
    return new PlugwireError(
      "unauthenticated",
      `${where} does not speak TLS (${text}); a plugin in attach mode must serve mutual TLS (PLUGWIRE_TLS_CERT, PLUGWIRE_TLS_KEY, PLUGWIRE_TLS_CLIENT_CA)`,
      { plugin: name, cause: e },
    );
  }
  return new PlugwireError("plugin_unavailable", `${where} could not be reached (${text}); check that it runs and that the address is right`, {
    plugin: name,
    cause: e,
  });
}

/**
 * Opens one HTTP/2 session over TLS (or plaintext) and waits for the server's
 * SETTINGS: only then has the plugin accepted the host's client certificate
 * (TLS 1.3 reports a refused client certificate after the handshake).
 * gRPC's own connection errors say little; this one names what is wrong.
 */
function preflight(name: string, attach: ResolvedAttachConfig, pem: { ca: Buffer; cert: Buffer; key: Buffer } | undefined, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const host = attach.tcp.host.includes(":") ? `[${attach.tcp.host}]` : attach.tcp.host;
    const url = `${pem ? "https" : "http"}://${host}:${attach.tcp.port}`;
    // SNI carries DNS names only; the certificate is checked against serverName either way.
    const sni = isIP(attach.serverName) === 0 ? { servername: attach.serverName } : {};
    const session = http2.connect(
      url,
      pem
        ? { ca: pem.ca, cert: pem.cert, key: pem.key, ...sni, ALPNProtocols: ["h2"], checkServerIdentity: (_host, cert) => checkServerIdentity(attach.serverName, cert) }
        : {},
    );
    let settled = false;
    // The TLS handshake completed (the plugin's certificate was accepted): a
    // reset before its SETTINGS is the plugin refusing the host's certificate.
    let tlsUp = false;
    session.once("connect", () => (tlsUp = true));
    const clientRefused = (why: string): PlugwireError =>
      new PlugwireError(
        "unauthenticated",
        `plugin '${name}' at ${attach.address} refused the host's client certificate (${why} right after the TLS handshake); ` +
          `the plugin's PLUGWIRE_TLS_CLIENT_CA must be the CA that signed attach.tls.cert, and that certificate must be valid now`,
        { plugin: name },
      );
    const done = (error?: PlugwireError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      session.removeAllListeners();
      session.on("error", () => undefined);
      session.destroy();
      if (error) reject(error);
      else resolve();
    };
    const onAbort = (): void => done(new PlugwireError("plugin_unavailable", `plugin '${name}' was stopped while the host was attaching to ${attach.address}`, { plugin: name }));
    signal?.addEventListener("abort", onAbort, { once: true });
    const timer = setTimeout(
      () => done(new PlugwireError("plugin_unavailable", `plugin '${name}' at ${attach.address} did not complete a connection within ${timeoutMs} ms; check the address, the network and that the plugin runs`, { plugin: name })),
      timeoutMs,
    );
    session.once("remoteSettings", () => {
      // Under TLS 1.3 a client certificate the server refuses is reported just
      // after its SETTINGS may have been read: one PING round trip settles it.
      if (!session.ping((err) => (err ? done(explainDialError(name, attach, err)) : done()))) done();
    });
    session.once("error", (e: Error & { code?: string }) =>
      done(pem && tlsUp && /ECONNRESET|EPIPE|ERR_HTTP2/.test(e.code ?? "") ? clientRefused(e.code!) : explainDialError(name, attach, e)),
    );
    session.once("close", () => done(pem && tlsUp ? clientRefused("the connection was closed") : new PlugwireError("unauthenticated", `plugin '${name}' at ${attach.address} closed the connection during the TLS or HTTP/2 handshake; with mutual TLS this usually means it refused the host's client certificate, or it does not speak ${pem ? "TLS" : "plaintext"}`, { plugin: name })));
  });
}

/**
 * Dials an attached plugin: reads the TLS files, checks the connection and
 * the certificates end to end, then opens the gRPC channel the runner uses
 * for Describe, Start, Restore, Deliver and health checks.
 */
export async function attachPlugin(name: string, attach: ResolvedAttachConfig, options: AttachOptions): Promise<AttachedProcess> {
  if (options.signal?.aborted) throw new PlugwireError("plugin_unavailable", `plugin '${name}' was stopped before the host attached to it`, { plugin: name });
  const pem = attach.tls
    ? { ca: readPem(name, "ca", attach.tls.ca), cert: readPem(name, "cert", attach.tls.cert), key: readPem(name, "key", attach.tls.key) }
    : undefined;
  await preflight(name, attach, pem, options.connectTimeoutMs, options.signal);

  const target = tcpTarget(attach.tcp);
  const credentials = pem ? grpc.credentials.createSsl(pem.ca, pem.key, pem.cert) : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    ...(pem ? { "grpc.ssl_target_name_override": attach.serverName, "grpc.default_authority": attach.serverName } : {}),
    // A connection lost to a link failure is a crash: no silent reconnect under the runner.
    "grpc.enable_retries": 0,
    "grpc.initial_reconnect_backoff_ms": 60_000,
  };
  const plugin = connect(PluginService, target, { token: options.token, plugin: name, credentials, channelOptions });
  const healthConn = connect(health.Health, target, { token: options.token, plugin: name, shareWith: plugin });
  const conn: DialedPlugin = {
    plugin: plugin.client,
    health: healthConn.client,
    close(): void {
      plugin.close();
      healthConn.close();
    },
  };

  let state: ConnectionState = "connecting";
  let resolveExit!: (exit: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((resolve) => (resolveExit = resolve));
  let hasExited = false;
  const end = (exit: ExitInfo, next: ConnectionState): void => {
    if (hasExited) return;
    hasExited = true;
    state = next;
    conn.close();
    resolveExit(exit);
  };
  // The channel's connection: once READY, any other state is a lost connection.
  const channel = plugin.channel.getChannel();
  let wasReady = false;
  const watch = (current: grpc.connectivityState): void => {
    if (hasExited) return;
    channel.watchConnectivityState(current, Infinity, () => {
      if (hasExited) return;
      const now = channel.getConnectivityState(false);
      if (now === grpc.connectivityState.READY) {
        wasReady = true;
        state = "connected";
      } else if (wasReady || now === grpc.connectivityState.TRANSIENT_FAILURE || now === grpc.connectivityState.SHUTDOWN) {
        end({ code: null, signal: null, lost: `lost its connection to ${attach.address} (${grpc.connectivityState[now]})` }, "lost");
        options.logger.warn({ address: attach.address, state: grpc.connectivityState[now] }, "connection to the remote plugin lost");
        return;
      }
      watch(now);
    });
  };
  watch(channel.getConnectivityState(true));

  return {
    pid: 0,
    handshake: { protocolVersion: PROTOCOL_VERSION, network: "tcp", address: attach.address, transport: "grpc" },
    exited,
    get hasExited() {
      return hasExited;
    },
    address: attach.address,
    conn,
    connectionState: () => state,
    stderrTail: () => [],
    signalGroup(signal, afterExit) {
      if (afterExit) return;
      end({ code: null, signal, lost: `was disconnected by the host from ${attach.address} (${signal === "SIGKILL" ? "kill" : signal})` }, "closed");
    },
    limitExceeded: () => undefined,
  };
}

/**
 * Host option `remoteHostService`: HostService served on TCP with mutual TLS
 * as well as on the host's unix socket, for attached plugins (their
 * PLUGWIRE_HOST_ADDRESS). A caller must present a client certificate that
 * chains to `tls.ca`, and its calls still carry the per-launch token the host
 * sent it with Start, which says which plugin calls (docs/protocol.md §18).
 */
export interface RemoteHostServiceOptions {
  /** `tcp://HOST:PORT` to listen on. */
  listen: string;
  /** PEM files: the host's server certificate and key, and the CA that signs the plugins' client certificates. */
  tls?: { ca: string; cert: string; key: string };
  /** Serve it without TLS: only on a loopback address. */
  plaintext?: boolean;
}

/** Validates `remoteHostService` and makes its server credentials (the files are re-read every 10 s). */
export function resolveRemoteHostService(input: unknown): { address: TcpAddress; credentials: grpc.ServerCredentials; listen: string } {
  const fail = (what: string): never => {
    throw new PlugwireError("invalid_config", `host option remoteHostService ${what}`);
  };
  if (input === null || typeof input !== "object" || Array.isArray(input)) fail("must be an object { listen: tcp://HOST:PORT, tls: { ca, cert, key } }");
  const o = input as Record<string, unknown>;
  if (typeof o.listen !== "string") fail("needs listen: tcp://HOST:PORT");
  const address = parseTcpAddress(o.listen as string);
  if (typeof address === "string") fail(`listen ${address}`);
  const tcp = address as TcpAddress;
  const tls = o.tls as Record<string, unknown> | undefined;
  if (tls === undefined) {
    if (o.plaintext !== true) fail("needs tls: { ca, cert, key }; plaintext: true is allowed only on a loopback address");
    if (!isLoopbackHost(tcp.host)) fail(`refuses plaintext on ${o.listen as string}: ${tcp.host} is not a loopback address; give it tls: { ca, cert, key }`);
    return { address: tcp, credentials: grpc.ServerCredentials.createInsecure(), listen: o.listen as string };
  }
  for (const key of ["ca", "cert", "key"]) if (typeof tls[key] !== "string" || (tls[key] as string).length === 0) fail(`tls.${key} must be a PEM file path`);
  for (const key of ["ca", "cert", "key"]) {
    try {
      readFileSync(tls[key] as string);
    } catch (e) {
      fail(`tls.${key} ${tls[key] as string} cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return {
    address: tcp,
    credentials: remoteServerCredentials({ cert: tls.cert as string, key: tls.key as string, clientCa: tls.ca as string, reloadMs: DEFAULT_TLS_RELOAD_MS }),
    listen: o.listen as string,
  };
}
