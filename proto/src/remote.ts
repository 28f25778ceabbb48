/**
 * Attach mode (docs/protocol.md §18, docs/remote-plugins.md): a plugin that a
 * process manager (Kubernetes, systemd, ...) runs serves on TCP with mutual
 * TLS, and the host dials it. The environment a plugin reads in that mode,
 * address parsing and the loopback rule live here, shared by the SDK and the
 * host.
 */
import { isIP } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { dropSessionsNghttp2IsDoneWith, widenConnectionWindows } from "./grpc.js";

/** Environment of a plugin serving in attach mode; none of it is set by a host. */
export const REMOTE_ENV = {
  /** `tcp://HOST:PORT`: serve on TCP instead of a unix socket; no cookie, no handshake line, no token. */
  listen: "PLUGWIRE_LISTEN",
  /** PEM file: the plugin's server certificate (chain). */
  tlsCert: "PLUGWIRE_TLS_CERT",
  /** PEM file: the private key of PLUGWIRE_TLS_CERT. */
  tlsKey: "PLUGWIRE_TLS_KEY",
  /** PEM file: the CA (bundle) that signs the host's client certificate; any other client is refused. */
  tlsClientCa: "PLUGWIRE_TLS_CLIENT_CA",
  /** How often the three files are re-read, in ms (default 10000); a changed pair serves new connections. */
  tlsReloadMs: "PLUGWIRE_TLS_RELOAD_MS",
  /**
   * `tcp://HOST:PORT`: also serve grpc.health.v1 (and nothing else) there in
   * plaintext, for probes that cannot present a client certificate, such as
   * the kubelet's gRPC probes. It tells only whether the plugin serves.
   */
  healthListen: "PLUGWIRE_HEALTH_LISTEN",
  /**
   * Optional `tcp://HOST:PORT` of the host's HostService over mutual TLS
   * (host option remoteHostService). Same name as the spawned plugin's
   * variable; in attach mode only tcp:// is accepted.
   */
  hostAddress: "PLUGWIRE_HOST_ADDRESS",
  /** The name the host's HostService certificate carries; default the host of PLUGWIRE_HOST_ADDRESS. */
  hostServerName: "PLUGWIRE_HOST_SERVER_NAME",
  /** `1`: serve plaintext without TLS. Refused unless the listen address is loopback. */
  allowPlaintext: "PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK",
} as const;

export const DEFAULT_TLS_RELOAD_MS = 10_000;

export interface TcpAddress {
  host: string;
  port: number;
}

/**
 * Parses `tcp://HOST:PORT` (IPv6 in brackets: `tcp://[::1]:7000`); returns a
 * problem text instead when it is not one.
 */
export function parseTcpAddress(value: string): TcpAddress | string {
  const m = /^tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(value);
  if (!m) return `${JSON.stringify(value)} is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)`;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return `port ${port} of ${JSON.stringify(value)} is not between 1 and 65535`;
  const host = m[1]!.startsWith("[") ? m[1]!.slice(1, -1) : m[1]!;
  return { host, port };
}

/** True for 127.0.0.0/8, ::1 and `localhost`: the only addresses plaintext is ever allowed on. */
export function isLoopbackHost(host: string): boolean {
  if (host === "localhost" || host === "::1") return true;
  return isIP(host) === 4 && host.startsWith("127.");
}

/** The gRPC target of a TCP address. */
export function tcpTarget(address: TcpAddress): string {
  return isIP(address.host) === 6 ? `ipv6:[${address.host}]:${address.port}` : `dns:${address.host}:${address.port}`;
}

export interface RemoteListenTls {
  cert: string;
  key: string;
  clientCa: string;
  reloadMs: number;
}

/**
 * Server credentials of attach mode: the plugin's certificate and key, and
 * client certificates required and checked against `clientCa`. The files are
 * re-read every `reloadMs`, so a rotated pair (a cert-manager renewal, a new
 * Secret) serves the next connections without a restart.
 */
export function remoteServerCredentials(tls: RemoteListenTls): grpc.ServerCredentials {
  // One provider for the pair and the CA: grpc-js 1.14's
  // createCertificateProviderServerCredentials passes its (ca, identity)
  // arguments on in the other order, so one provider given as both is right
  // whichever order a grpc-js version uses.
  const files = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: tls.cert,
    privateKeyFile: tls.key,
    caCertificateFile: tls.clientCa,
    refreshIntervalMs: tls.reloadMs,
  });
  return grpc.experimental.createCertificateProviderServerCredentials(files, files, true);
}

/** How long listenTcp waits for the certificate files' first read before it gives up. */
export const TLS_FIRST_LOAD_TIMEOUT_MS = 10_000;

/**
 * Resolves once `credentials` has a TLS context to serve with. A certificate
 * provider reads its files asynchronously after the server binds, and until
 * then grpc-js drops every incoming connection (the client sees ECONNRESET),
 * so a listener is not ready before this. Insecure credentials resolve at once.
 */
export async function tlsContextLoaded(credentials: grpc.ServerCredentials, timeoutMs = TLS_FIRST_LOAD_TIMEOUT_MS): Promise<void> {
  if (!credentials._isSecure()) return;
  const deadline = performance.now() + timeoutMs;
  // Bounded poll: grpc-js exposes no public "loaded" event; the context turns
  // non-null within a file read (about a millisecond).
  for (let delay = 1; credentials._getSecureContextOptions() === null; delay = Math.min(delay * 2, 50)) {
    if (performance.now() > deadline) {
      throw new Error(`the TLS certificate, key or CA files were not loaded within ${timeoutMs} ms; check that they exist, are readable PEM files and that the key matches the certificate`);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/**
 * Binds `server` on a TCP address; resolves with the bound port (0 picks one)
 * once the server accepts connections, TLS context included.
 */
export function listenTcp(server: grpc.Server, address: TcpAddress, credentials: grpc.ServerCredentials): Promise<number> {
  const host = isIP(address.host) === 6 ? `[${address.host}]` : address.host;
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(`${host}:${address.port}`, credentials, (err, port) => {
      if (err) {
        reject(err);
        return;
      }
      widenConnectionWindows(server);
      dropSessionsNghttp2IsDoneWith(server);
      resolve(port);
    });
  }).then(async (port) => {
    await tlsContextLoaded(credentials);
    return port;
  });
}
