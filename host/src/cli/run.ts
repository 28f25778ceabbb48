/** `plugwire run --config FILE`: a host with in-memory peers and a logging control sender. */
import { readPem } from "./pem.js";
import { rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { pino, type Logger } from "pino";
import { adminPointerPath } from "./admin-commands.js";
import { PlugwireError } from "@plugwire/proto";
import { checkAdminBind, serveAdmin, type AdminServer, type AdminTlsOptions } from "../admin/server.js";
import { loadOrCreateAdminToken } from "../admin/token.js";
import { HostObserver } from "../admin/observe.js";
import { createHost, type Host } from "../host.js";
import { MemoryPeerDirectory, hex, type HostPorts } from "../ports.js";
import { loadConfigFile } from "./config-file.js";

/** The CLI's embedded ports: an in-memory directory and a sender that logs. */
export function embeddedPorts(logger: Logger, directory = new MemoryPeerDirectory()): HostPorts & { peers: MemoryPeerDirectory } {
  return {
    peers: directory,
    control: {
      sendDirect(peer, frame) {
        logger.info({ peer: hex(peer).slice(0, 16), bytes: frame.byteLength }, "send_direct");
      },
      sendRouted(dst, frame) {
        const routed = directory.lookupName(dst) !== undefined;
        logger.info({ dst: hex(dst).slice(0, 16), bytes: frame.byteLength, routed }, "send_routed");
        return routed;
      },
    },
    identity: {
      signingSeed: () => new Uint8Array(32),
    },
  };
}

export interface RunOptions {
  configPath: string;
  logLevel: string;
  /** Serve Prometheus metrics on 127.0.0.1:PORT/metrics. */
  metricsPort?: number;
  /** Also serve the admin API on TCP at this port. */
  adminPort?: number;
  /** Address of that port; default 127.0.0.1 (anything else needs TLS). */
  adminHost?: string;
  /** PEM files of the TCP port's TLS; a CA makes client certificates required (mTLS). */
  adminTlsCert?: string;
  adminTlsKey?: string;
  adminTlsCa?: string;
  /** Largest admin request body (but Dispatch), bytes. */
  adminMaxBodyBytes?: number;
  /** Largest Dispatch request body, bytes. */
  adminMaxDispatchBodyBytes?: number;
  /** false: do not serve the web dashboard on the admin port (--no-dashboard); default: the config's `dashboard`, else true. */
  dashboard?: boolean;
}

/** The TLS of the admin TCP port from the run flags, or undefined. */
function adminTls(options: RunOptions): AdminTlsOptions | undefined {
  const cert = readPem(options.adminTlsCert, "--admin-tls-cert");
  const key = readPem(options.adminTlsKey, "--admin-tls-key");
  const ca = readPem(options.adminTlsCa, "--admin-tls-ca");
  if (cert === undefined && key === undefined) {
    if (ca !== undefined) throw new PlugwireError("invalid_argument", "--admin-tls-ca needs --admin-tls-cert FILE and --admin-tls-key FILE: the port serves TLS with them and requires client certificates signed by the CA");
    return undefined;
  }
  if (cert === undefined || key === undefined) throw new PlugwireError("invalid_argument", "TLS for the admin port needs both --admin-tls-cert FILE and --admin-tls-key FILE");
  if (options.adminPort === undefined) throw new PlugwireError("invalid_argument", "--admin-tls-cert and --admin-tls-key are for the admin TCP port: add --admin-port PORT");
  return { cert, key, ca };
}

/**
 * Logs the dashboard's one-time URL (docs/dashboard.md): its fragment holds a
 * login code the page trades for the admin token once, within 10 minutes.
 * The token itself is never printed.
 */
function logDashboardUrl(logger: Logger, admin: AdminServer, adminHost: string, tls: boolean): void {
  const port = admin.tcpPort;
  if (port === undefined || !admin.servesDashboard) return;
  const host = adminHost.includes(":") ? `[${adminHost}]` : adminHost;
  const url = `${tls ? "https" : "http"}://${host}:${port}/`;
  logger.info({ url, loginUrl: `${url}#code=${admin.dashboardLoginCode()}` }, "dashboard: open loginUrl once (its code works one time, for 10 minutes), or open url and paste the admin token");
}

/** Runs until SIGINT or SIGTERM, then stops every plugin. */
export async function run(options: RunOptions): Promise<Host> {
  const config = loadConfigFile(options.configPath);
  const tls = adminTls(options);
  checkAdminBind(options.adminHost ?? "127.0.0.1", options.adminPort, tls);
  // Made on the first run, reused after: plugwire commands read it from the data dir.
  const token = loadOrCreateAdminToken(config.dataDir);
  const logger = pino({ name: "plugwire", level: options.logLevel });
  const ports = embeddedPorts(logger);
  for (const p of config.peers) {
    ports.peers.apply({
      type: "seen",
      nodeId: Buffer.from(p.nodeId, "hex"),
      name: p.name,
      x25519Pub: Buffer.from(p.x25519, "hex"),
      source: "direct",
    });
  }
  const host = createHost({
    plugins: config.plugins,
    ports,
    dataDir: config.dataDir,
    logger,
    snapshotIntervalMs: config.snapshotIntervalMs,
    maxSnapshotBytes: config.maxSnapshotBytes,
    stopTimeoutMs: config.stopTimeoutMs,
    runDirParent: config.runDirParent,
    maxConcurrentLaunches: config.maxConcurrentLaunches,
    strictKinds: config.strictKinds,
    remoteHostService: config.remoteHostService,
  });
  // Attached before start, so the dashboard sees the first launches' snapshot restores.
  const observer = new HostObserver(host);
  // A SIGINT or SIGTERM while the plugins start stops the host the usual way
  // (launches under way are aborted, nothing is left behind) and exits 0.
  let stoppedWhileStarting: string | undefined;
  const stopWhileStarting = (signal: string): void => {
    if (stoppedWhileStarting) return;
    stoppedWhileStarting = signal;
    logger.info({ signal }, "stopping plugwire host (it was still starting)");
    void host.stop();
  };
  const onStartInt = (): void => stopWhileStarting("SIGINT");
  const onStartTerm = (): void => stopWhileStarting("SIGTERM");
  process.on("SIGINT", onStartInt);
  process.on("SIGTERM", onStartTerm);
  try {
    await host.start();
  } catch (e) {
    if (stoppedWhileStarting) {
      await host.stop();
      logger.info({ signal: stoppedWhileStarting }, "plugwire host stopped before it was ready");
      process.exit(0);
    }
    throw e;
  } finally {
    process.off("SIGINT", onStartInt);
    process.off("SIGTERM", onStartTerm);
  }
  if (stoppedWhileStarting) {
    await host.stop();
    logger.info({ signal: stoppedWhileStarting }, "plugwire host stopped before it was ready");
    process.exit(0);
  }
  let admin: AdminServer;
  try {
    // The admin API's socket is admin.sock in a private dir next to the
    // host's run dir (not in the socket dir plugins are given).
    admin = await serveAdmin(host, {
      tcpPort: options.adminPort,
      tcpHost: options.adminHost,
      tls,
      token,
      maxBodyBytes: options.adminMaxBodyBytes,
      maxDispatchBodyBytes: options.adminMaxDispatchBodyBytes,
      dashboard: options.dashboard ?? config.dashboard ?? true,
      observer,
    });
  } catch (e) {
    await host.stop();
    throw e;
  }
  const pointer = adminPointerPath(config.dataDir);
  writeFileSync(pointer, `${admin.socketPath}\n`, { mode: 0o600 });
  logger.info({ admin: admin.socketPath, adminPort: admin.tcpPort, adminTls: tls !== undefined, adminToken: token.path }, "admin API listening; try 'plugwire status'");
  logDashboardUrl(logger, admin, options.adminHost ?? "127.0.0.1", tls !== undefined);
  let metrics: Server | undefined;
  if (options.metricsPort !== undefined) {
    metrics = createServer((req, res) => {
      if (req.url !== "/metrics") {
        res.writeHead(404).end("try /metrics\n");
        return;
      }
      host.metrics.registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": host.metrics.registry.contentType }).end(text),
        (e: unknown) => res.writeHead(500).end(String(e)),
      );
    });
    await new Promise<void>((resolve) => metrics!.listen(options.metricsPort, "127.0.0.1", resolve));
    logger.info({ url: `http://127.0.0.1:${(metrics.address() as { port: number }).port}/metrics` }, "metrics listening");
  }
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping plugwire host");
    metrics?.close();
    rmSync(pointer, { force: true });
    // The admin API goes first: it drives the host.
    admin
      .close()
      .then(() => host.stop())
      .then(
        () => process.exit(0),
        (e: unknown) => {
          logger.error({ err: String(e) }, "stop failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  return host;
}
