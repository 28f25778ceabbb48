/**
 * The operator admin API (plugwire.admin.v1.AdminService) over the Connect
 * protocol: on a unix socket in the host's run dir, and optionally on a
 * loopback TCP port. curl with JSON works as well as the typed client.
 * It drives a Host through its public API only; the host does not know it
 * exists (the CLI, or an application, composes the two).
 */
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { PlugwireError, admin } from "@plugwire/proto";
import type { PayloadEffect } from "../delivery/channel.js";
import type { Host } from "../host.js";
import { toConnectError } from "./errors.js";
import { checkSocketPath } from "../launch/rundir.js";
import type { PluginStatus } from "../supervisor/runner.js";

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
  };
}

async function guarded<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (e) {
    throw toConnectError(e);
  }
}

export function adminRoutes(host: Host) {
  const statusOf = (name: string): admin.PluginInfo => info(host.status().find((s) => s.name === name)!);
  return (router: ConnectRouter): void => {
    router.service(admin.AdminService, {
      listPlugins: async () => ({ plugins: host.status().map(info) }),
      restartPlugin: (req) => guarded(async () => {
        await host.restart(req.name);
        return { plugin: statusOf(req.name) };
      }),
      stopPlugin: (req) => guarded(async () => {
        await host.stopPlugin(req.name);
        return { plugin: statusOf(req.name) };
      }),
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
        await host.replayDeadLetter(req.name, Number(req.seq));
        return {};
      }),
      dispatch: (req) => guarded(() => dispatch(host, req)),
    });
  };
}

/** Where the admin API listens. */
export interface AdminServerOptions {
  /** Unix socket path; default `admin.sock` in the host's run dir (`host.runDirectory`). */
  socketPath?: string;
  /** Also listen on 127.0.0.1 at this TCP port (0 picks a free one). */
  tcpPort?: number;
}

/** File name of the admin socket in the host's run dir. */
export const ADMIN_SOCKET_NAME = "admin.sock";

/**
 * Serves the admin API for a started host: on a unix socket (by default
 * `admin.sock` in the host's run dir) and, when asked, on a loopback TCP port.
 * Close it before `host.stop()`, which removes the run dir.
 */
export async function serveAdmin(host: Host, options: AdminServerOptions = {}): Promise<AdminServer> {
  const runDir = host.runDirectory;
  const socketPath = options.socketPath ?? (runDir === undefined ? undefined : join(runDir, ADMIN_SOCKET_NAME));
  if (socketPath === undefined) {
    throw new PlugwireError("invalid_argument", "serveAdmin(host) needs a started host (its run dir holds the admin socket); call host.start() first, or pass socketPath");
  }
  checkSocketPath(socketPath, "plugwire admin API");
  const server = new AdminServer(host, socketPath);
  await server.listen(options.tcpPort);
  return server;
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

/** A running admin server (unix socket, plus TCP when asked). */
export class AdminServer {
  private readonly servers: Server[] = [];

  constructor(
    private readonly host: Host,
    /** The unix socket it listens on. */
    readonly socketPath: string,
  ) {}

  async listen(tcpPort?: number): Promise<void> {
    const handler = connectNodeAdapter({ routes: adminRoutes(this.host) });
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
    await listen(unix, () => unix.listen(this.socketPath));
    this.servers.push(unix);
    if (tcpPort !== undefined) {
      const tcp = createServer(handler);
      try {
        await listen(tcp, () => tcp.listen(tcpPort, "127.0.0.1"));
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
  }
}
