/**
 * Attach mode of `serve` (docs/protocol.md §18): with PLUGWIRE_LISTEN set the
 * plugin is run by a process manager, not by a host, and serves on TCP with
 * mutual TLS. No cookie, no handshake line, no token: a caller is the host
 * when its client certificate chains to PLUGWIRE_TLS_CLIENT_CA.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import {
  DEFAULT_TLS_RELOAD_MS,
  REMOTE_ENV,
  isLoopbackHost,
  parseTcpAddress,
  tcpTarget,
  remoteServerCredentials,
  type TcpAddress,
} from "@plugwire/proto";

/** How an attached plugin reaches the host's HostService (PLUGWIRE_HOST_ADDRESS), if it was given one. */
export interface RemoteHostService {
  target: string;
  credentials: grpc.ChannelCredentials;
  channelOptions: grpc.ChannelOptions;
}

export interface RemoteListen {
  address: TcpAddress;
  host?: RemoteHostService;
  /** PLUGWIRE_HEALTH_LISTEN: a plaintext listener serving grpc.health.v1 only, for probes that cannot present a client certificate (kubelet). */
  healthAddress?: TcpAddress;
  /** What the startup log line says about the transport. */
  security: string;
  credentials: grpc.ServerCredentials;
}

/**
 * Reads the attach-mode environment; undefined when PLUGWIRE_LISTEN is unset
 * (the plugin was spawned by a host). Returns a problem text for an
 * environment that cannot work, which `serve` prints before exiting 1.
 */
export function remoteListenFromEnv(pluginName: string, env: NodeJS.ProcessEnv = process.env): RemoteListen | string | undefined {
  const listen = env[REMOTE_ENV.listen];
  if (listen === undefined || listen === "") return undefined;
  const who = `plugwire plugin '${pluginName}'`;
  const address = parseTcpAddress(listen);
  if (typeof address === "string") return `${who}: ${REMOTE_ENV.listen}=${address}`;
  const healthText = env[REMOTE_ENV.healthListen];
  let healthAddress: TcpAddress | undefined;
  if (healthText) {
    const parsed = parseTcpAddress(healthText);
    if (typeof parsed === "string") return `${who}: ${REMOTE_ENV.healthListen}=${parsed}`;
    healthAddress = parsed;
  }
  const cert = env[REMOTE_ENV.tlsCert];
  const key = env[REMOTE_ENV.tlsKey];
  const clientCa = env[REMOTE_ENV.tlsClientCa];
  const anyTls = Boolean(cert || key || clientCa);
  if (!anyTls) {
    if (env[REMOTE_ENV.allowPlaintext] !== "1") {
      return (
        `${who}: ${REMOTE_ENV.listen}=${listen} needs TLS material: set ${REMOTE_ENV.tlsCert}, ${REMOTE_ENV.tlsKey} and ${REMOTE_ENV.tlsClientCa} ` +
        `(the CA that signs the host's client certificate). Plaintext is only for loopback tests, with ${REMOTE_ENV.allowPlaintext}=1 (docs/protocol.md §18).`
      );
    }
    if (!isLoopbackHost(address.host)) {
      return (
        `${who}: refusing to serve plaintext on ${listen}: ${REMOTE_ENV.allowPlaintext} allows plaintext only on a loopback address (127.0.0.1, ::1, localhost). ` +
        `Anyone who can reach ${address.host} could drive this plugin; set ${REMOTE_ENV.tlsCert}, ${REMOTE_ENV.tlsKey} and ${REMOTE_ENV.tlsClientCa} instead.`
      );
    }
    const host = remoteHostService(who, env, undefined);
    if (typeof host === "string") return host;
    return { address, healthAddress, host, security: "plaintext (loopback only)", credentials: grpc.ServerCredentials.createInsecure() };
  }
  const missing = [
    [REMOTE_ENV.tlsCert, cert],
    [REMOTE_ENV.tlsKey, key],
    [REMOTE_ENV.tlsClientCa, clientCa],
  ]
    .filter(([, v]) => !v)
    .map(([k]) => k);
  if (missing.length > 0) {
    return `${who}: attach mode with TLS needs ${REMOTE_ENV.tlsCert}, ${REMOTE_ENV.tlsKey} and ${REMOTE_ENV.tlsClientCa}; ${missing.join(" and ")} ${missing.length > 1 ? "are" : "is"} unset`;
  }
  const reloadText = env[REMOTE_ENV.tlsReloadMs];
  const reloadMs = reloadText === undefined || reloadText === "" ? DEFAULT_TLS_RELOAD_MS : Number(reloadText);
  if (!Number.isInteger(reloadMs) || reloadMs < 1) return `${who}: ${REMOTE_ENV.tlsReloadMs}=${JSON.stringify(reloadText)} must be a whole number of milliseconds, at least 1`;
  const host = remoteHostService(who, env, { cert: cert!, key: key!, ca: clientCa! });
  if (typeof host === "string") return host;
  return {
    address,
    healthAddress,
    host,
    security: `mutual TLS (client certificates must chain to ${clientCa}; files re-read every ${reloadMs} ms)`,
    credentials: remoteServerCredentials({ cert: cert!, key: key!, clientCa: clientCa!, reloadMs }),
  };
}

/**
 * PLUGWIRE_HOST_ADDRESS in attach mode: the host's HostService over TCP. With
 * TLS, the plugin presents its own certificate (it needs the clientAuth
 * usage too) and trusts PLUGWIRE_TLS_CLIENT_CA for the host's server
 * certificate; the calls carry the bearer token the host sent with Start.
 */
function remoteHostService(who: string, env: NodeJS.ProcessEnv, tls: { cert: string; key: string; ca: string } | undefined): RemoteHostService | string | undefined {
  const value = env[REMOTE_ENV.hostAddress];
  if (!value) return undefined;
  const address = parseTcpAddress(value);
  if (typeof address === "string") return `${who}: ${REMOTE_ENV.hostAddress}=${address} (in attach mode the host's HostService is reached over TCP)`;
  if (!tls) {
    if (!isLoopbackHost(address.host)) return `${who}: refusing to call the host's HostService at ${value} in plaintext: not a loopback address; set the TLS variables`;
    return { target: tcpTarget(address), credentials: grpc.credentials.createInsecure(), channelOptions: {} };
  }
  let pem: { ca: Buffer; cert: Buffer; key: Buffer };
  try {
    pem = { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  } catch (e) {
    return `${who}: cannot read the TLS files for the host's HostService: ${e instanceof Error ? e.message : String(e)}`;
  }
  const serverName = env[REMOTE_ENV.hostServerName] || address.host;
  return {
    target: tcpTarget(address),
    credentials: grpc.credentials.createSsl(pem.ca, pem.key, pem.cert),
    channelOptions: { "grpc.ssl_target_name_override": serverName, "grpc.default_authority": serverName },
  };
}
