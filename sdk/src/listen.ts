/**
 * Attach mode of `serve` (docs/protocol.md §18): with PLUGWIRE_LISTEN set the
 * plugin is run by a process manager, not by a host, and serves on TCP with
 * mutual TLS. No cookie, no handshake line, no token: a caller is the host
 * when its client certificate chains to PLUGWIRE_TLS_CLIENT_CA.
 */
import * as grpc from "@grpc/grpc-js";
import {
  DEFAULT_TLS_RELOAD_MS,
  REMOTE_ENV,
  isLoopbackHost,
  parseTcpAddress,
  remoteServerCredentials,
  type TcpAddress,
} from "@plugwire/proto";

export interface RemoteListen {
  address: TcpAddress;
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
    return { address, healthAddress, security: "plaintext (loopback only)", credentials: grpc.ServerCredentials.createInsecure() };
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
  return {
    address,
    healthAddress,
    security: `mutual TLS (client certificates must chain to ${clientCa}; files re-read every ${reloadMs} ms)`,
    credentials: remoteServerCredentials({ cert: cert!, key: key!, clientCa: clientCa!, reloadMs }),
  };
}
