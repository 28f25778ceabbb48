/** `plugwire run --config FILE`: a host with in-memory peers and a logging control sender. */
import { rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { pino, type Logger } from "pino";
import { adminPointerPath } from "./admin-commands.js";
import { serveAdmin, type AdminServer } from "../admin/server.js";
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
  /** Also serve the admin API on 127.0.0.1:PORT. */
  adminPort?: number;
}

/** Runs until SIGINT or SIGTERM, then stops every plugin. */
export async function run(options: RunOptions): Promise<Host> {
  const config = loadConfigFile(options.configPath);
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
  });
  await host.start();
  let admin: AdminServer;
  try {
    // The admin API's socket is admin.sock in the host's run dir.
    admin = await serveAdmin(host, { tcpPort: options.adminPort });
  } catch (e) {
    await host.stop();
    throw e;
  }
  const pointer = adminPointerPath(config.dataDir);
  writeFileSync(pointer, `${admin.socketPath}\n`, { mode: 0o600 });
  logger.info({ admin: admin.socketPath, adminPort: admin.tcpPort }, "admin API listening; try 'plugwire status'");
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
    // The admin API goes first: host.stop() removes the run dir its socket is in.
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
