/** CLI commands that talk to a running `plugwire run` through its admin API. */
import { readPem } from "./pem.js";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError } from "@connectrpc/connect";
import { PlugwireError, admin } from "@plugwire/proto";
import { adminClient, type AdminClient } from "../admin/client.js";
import { fromConnectError } from "../admin/errors.js";
import { ADMIN_TOKEN_ENV, adminTokenPath, readAdminTokenFile } from "../admin/token.js";
import { loadConfigFile } from "./config-file.js";

/** File in the data dir where `plugwire run` records its admin socket. */
export const ADMIN_POINTER = "admin.address";

export function adminPointerPath(dataDir: string): string {
  return join(dataDir, ADMIN_POINTER);
}

/** How a CLI command finds and authenticates to a running host's admin API. */
export interface AdminTarget {
  /** The admin socket path or http(s)://HOST:PORT; default: the address `plugwire run` wrote to the config's data dir. */
  admin?: string;
  /** The config the host runs (default ./plugwire.yaml): its data dir holds admin.address and admin.token. */
  config?: string;
  /** A file holding the admin token (--admin-token-file). */
  tokenFile?: string;
  /** PEM files for an https:// address (--admin-tls-ca, --admin-tls-cert, --admin-tls-key). */
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/**
 * The admin token: --admin-token-file, else $PLUGWIRE_ADMIN_TOKEN, else the
 * config's data dir's admin.token; undefined when none is found (the host's
 * refusal then says where it is).
 */
export function resolveAdminToken(options: AdminTarget, dataDir: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (options.tokenFile) return readAdminTokenFile(options.tokenFile).value;
  const fromEnv = env[ADMIN_TOKEN_ENV]?.trim();
  if (fromEnv) return fromEnv;
  if (dataDir === undefined || !existsSync(adminTokenPath(dataDir))) return undefined;
  return readAdminTokenFile(adminTokenPath(dataDir)).value;
}

/** Finds the admin address (--admin wins, else the pointer file of --config's data dir) and its token. */
export function resolveAdmin(options: AdminTarget, env: NodeJS.ProcessEnv = process.env): AdminClient {
  const configPath = options.config ?? "plugwire.yaml";
  // With --admin, the config is only needed for the token: read it when there is one.
  const dataDir = options.admin && options.config === undefined && !existsSync(configPath) ? undefined : loadConfigFile(configPath).dataDir;
  let address = options.admin;
  if (!address) {
    try {
      address = readFileSync(adminPointerPath(dataDir!), "utf8").trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      throw new PlugwireError(
        "plugin_unavailable",
        `no running host found for ${configPath} (no ${adminPointerPath(dataDir!)}); start one with 'plugwire run --config ${configPath}' or pass --admin SOCKET`,
      );
    }
  }
  const tls = {
    ca: readPem(options.tlsCa, "--admin-tls-ca"),
    cert: readPem(options.tlsCert, "--admin-tls-cert"),
    key: readPem(options.tlsKey, "--admin-tls-key"),
  };
  return adminClient(address, { token: resolveAdminToken(options, dataDir, env), tls });
}

function unreachable(e: unknown): never {
  if (e instanceof ConnectError) {
    // The host's own error, with its plugwire code.
    const typed = fromConnectError(e);
    if (typed) throw typed;
    const cause = (e.cause as NodeJS.ErrnoException | undefined)?.code ?? "";
    if (cause === "ECONNREFUSED" || cause === "ENOENT") {
      throw new PlugwireError("plugin_unavailable", `the host is not running (${e.rawMessage}); start it with 'plugwire run'`, { cause: e });
    }
    if (/SSL|TLS|CERT|EPROTO|ECONNRESET/.test(cause) || /certificate|ssl|tls/i.test(e.rawMessage)) {
      throw new PlugwireError(
        "unauthenticated",
        `the TLS connection to the host's admin API failed (${e.rawMessage.split("\n")[0]!.trim()}); pass --admin-tls-ca FILE to trust its certificate, and --admin-tls-cert FILE --admin-tls-key FILE when it requires a client certificate`,
        { cause: e },
      );
    }
    throw new PlugwireError("plugin_unavailable", `the host's admin API answered: ${e.rawMessage}`, { cause: e });
  }
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ECONNREFUSED" || code === "ENOENT") {
    throw new PlugwireError("plugin_unavailable", "the host is not running (its admin socket refused the connection); start it with 'plugwire run'", { cause: e });
  }
  throw e;
}

export function formatPlugins(plugins: readonly admin.PluginInfo[]): string {
  const header = ["PLUGIN", "STATE", "PID", "RESTARTS", "QUEUED", "IN-FLIGHT", "ACKED", "DEAD", "STANDBY", "LAST EXIT / ERROR"];
  const rows = plugins.map((p) => [
    p.name,
    p.state,
    p.remote ? `remote:${p.remote.address} (${p.remote.connection})` : p.pid ? String(p.pid) : "-",
    String(p.restarts),
    String(p.queued),
    String(p.inFlight),
    String(p.lastAckedSeq),
    String(p.deadLetters),
    standbyCell(p),
    p.state === "failed" ? p.lastError : p.lastExit || "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const table = [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
  return table + shadowedLines(plugins);
}

/** The warm standby spare: "waiting 4242", "spawning", "backoff", or "-" when none is kept. */
function standbyCell(p: admin.PluginInfo): string {
  if (!p.standbyState || p.standbyState === "off") return "-";
  return p.standbyPid ? `${p.standbyState} ${p.standbyPid}` : p.standbyState;
}

/** One line per plugin whose claims are shadowed by an earlier plugin (first claim wins). */
function shadowedLines(plugins: readonly admin.PluginInfo[]): string {
  const lines = plugins
    .filter((p) => (p.shadowedKinds ?? []).length > 0)
    .map((p) => {
      const kinds = p.shadowedKinds.map((k) => `'${k.kind}' (owned by ${k.owner})`);
      const shown = kinds.length > 10 ? `${kinds.slice(0, 10).join(", ")} and ${kinds.length - 10} more` : kinds.join(", ");
      return `shadowed: ${p.name} claims ${shown}; those payloads go to the earlier plugin\n`;
    });
  return lines.join("");
}

export async function statusCommand(client: AdminClient, json: boolean): Promise<string> {
  const { plugins } = await client.listPlugins({}).catch(unreachable);
  return json ? `${JSON.stringify(plugins.map((p) => ({ ...p, lastAckedSeq: Number(p.lastAckedSeq), shadowedKinds: (p.shadowedKinds ?? []).map((k) => ({ kind: k.kind, owner: k.owner })), $typeName: undefined })), null, 2)}\n` : formatPlugins(plugins);
}

export async function restartCommand(client: AdminClient, name: string): Promise<string> {
  const { plugin } = await client.restartPlugin({ name }).catch(unreachable);
  return `restarted ${name}: ${plugin?.state ?? "?"} (pid ${plugin?.pid ?? "-"})\n`;
}

export async function stopCommand(client: AdminClient, name: string): Promise<string> {
  const { plugin } = await client.stopPlugin({ name }).catch(unreachable);
  return `stopped ${name}: ${plugin?.state ?? "?"}\n`;
}

export async function snapshotCommand(client: AdminClient, name: string | undefined): Promise<string> {
  const { results } = await client.snapshotNow({ name: name ?? "" }).catch(unreachable);
  if (results.length === 0) return "no stateful plugin is ready\n";
  return results.map((r) => (r.ok ? `${r.plugin}: saved at seq ${r.appliedSeq}, ${r.sizeBytes} bytes` : `${r.plugin}: FAILED: ${r.error}`)).join("\n") + "\n";
}

export async function deadLettersCommand(client: AdminClient, name: string, replaySeq: number | undefined): Promise<string> {
  if (replaySeq !== undefined) {
    await client.replayDeadLetter({ name, seq: BigInt(replaySeq) }).catch(unreachable);
    return `replayed dead letter seq ${replaySeq} of ${name}\n`;
  }
  const { deadLetters } = await client.listDeadLetters({ name }).catch(unreachable);
  if (deadLetters.length === 0) return `${name} has no dead letters\n`;
  return (
    deadLetters
      .map((d) => `seq ${d.seq}  kind ${d.kind}  from ${Buffer.from(d.src).toString("hex").slice(0, 16)}  ${d.sizeBytes} bytes  parked ${new Date(Number(d.parkedAtMs)).toISOString()}  ${d.reason}`)
      .join("\n") + "\n"
  );
}

/** What `plugwire send` sends. */
export interface SendRequest {
  /** The plugin to send to; with no kind, its only payload kind is used. */
  plugin?: string;
  kind?: string;
  src: Uint8Array;
  body: Uint8Array;
}

/** `plugwire send`: its output, and 0 when the plugin acked the payload, 1 on a handler error. */
export async function sendCommand(client: AdminClient, request: SendRequest, json: boolean): Promise<{ output: string; code: number }> {
  const response = await client
    .dispatch({ plugin: request.plugin ?? "", kind: request.kind ?? "", src: request.src, body: request.body })
    .catch(unreachable);
  const acked = response.outcome === admin.DispatchOutcome.ACKED;
  return { output: json ? `${JSON.stringify(dispatchJson(response), null, 2)}\n` : formatDispatch(response), code: acked ? 0 : 1 };
}

function dispatchJson(r: admin.DispatchResponse): unknown {
  return {
    plugin: r.plugin,
    kind: r.kind,
    outcome: r.outcome === admin.DispatchOutcome.ACKED ? "acked" : "handler_error",
    ...(r.error ? { error: r.error } : {}),
    durationMs: Number(r.durationMs),
    effects: r.effects.map((e) =>
      e.effect.case === "sendDirect"
        ? { type: "sendDirect", peer: hexOf(e.effect.value.peer), frame: hexOf(e.effect.value.frame), performed: e.effect.value.performed, ...(e.effect.value.droppedReason ? { droppedReason: e.effect.value.droppedReason } : {}) }
        : e.effect.case === "sendRouted"
          ? { type: "sendRouted", dst: hexOf(e.effect.value.dst), frame: hexOf(e.effect.value.frame), routed: e.effect.value.routed, ...(e.effect.value.error ? { error: e.effect.value.error } : {}) }
          : { type: "unknown" },
    ),
  };
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

/** A node id for people: its first 8 bytes in hex. */
function shortId(bytes: Uint8Array): string {
  const hex = hexOf(bytes);
  return hex.length > 16 ? `${hex.slice(0, 16)}…` : hex;
}

/** A frame for people: quoted text when it is printable UTF-8, else hex. */
export function showBytes(bytes: Uint8Array): string {
  const text = Buffer.from(bytes).toString("utf8");
  const printable = !text.includes("\uFFFD") && !/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F]/.test(text);
  const size = `${bytes.byteLength} bytes`;
  if (bytes.byteLength === 0) return size;
  if (printable) return `${size} ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)}`;
  const hex = hexOf(bytes);
  return `${size} hex ${hex.length > 128 ? `${hex.slice(0, 128)}…` : hex}`;
}

export function formatDispatch(r: admin.DispatchResponse): string {
  const lines =
    r.outcome === admin.DispatchOutcome.ACKED
      ? [`acked by ${r.plugin} (kind ${r.kind}) in ${r.durationMs} ms`]
      : [`handler error from ${r.plugin} (kind ${r.kind}) after ${r.durationMs} ms: ${r.error}`];
  if (r.effects.length === 0) lines.push("no effects");
  else lines.push(`effects (${r.effects.length}):`);
  for (const e of r.effects) {
    if (e.effect.case === "sendDirect") {
      const { peer, frame, performed, droppedReason } = e.effect.value;
      lines.push(`  sendDirect to ${shortId(peer)}: ${showBytes(frame)}${performed ? "" : ` (dropped: ${droppedReason})`}`);
    } else if (e.effect.case === "sendRouted") {
      const { dst, frame, routed, error } = e.effect.value;
      lines.push(`  sendRouted to ${shortId(dst)}: ${showBytes(frame)} (${error ? `failed: ${error}` : routed ? "routed" : "no route"})`);
    }
  }
  return `${lines.join("\n")}\n`;
}

/** `plugwire upgrade NAME [--command CMD] [--arg ARG]...`: a hot upgrade (docs/supervision.md, "Hot upgrade"). */
export async function upgradeCommand(client: AdminClient, name: string, command: string | undefined, args: readonly string[] | undefined): Promise<string> {
  const r = await client.upgrade({ name, command: command ?? "", args: args ? [...args] : [], replaceArgs: args !== undefined }).catch(unreachable);
  return `upgraded ${name}: pid ${r.fromPid} → ${r.toPid}, delivery held ${r.pauseMs.toFixed(1)} ms, state through seq ${r.appliedSeq} handed over; ${r.plugin?.state ?? "?"}\n`;
}
