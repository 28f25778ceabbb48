/** CLI commands that talk to a running `plugwire run` through its admin API. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ConnectError } from "@connectrpc/connect";
import { PlugwireError, type admin } from "@plugwire/proto";
import { adminClient, type AdminClient } from "../admin/client.js";
import { loadConfigFile } from "./config-file.js";

/** File in the data dir where `plugwire run` records its admin socket. */
export const ADMIN_POINTER = "admin.address";

export function adminPointerPath(dataDir: string): string {
  return join(dataDir, ADMIN_POINTER);
}

/** Finds the admin address: --admin wins, else the pointer file of --config's data dir. */
export function resolveAdmin(options: { admin?: string; config?: string }): AdminClient {
  if (options.admin) return adminClient(options.admin);
  const configPath = options.config ?? "plugwire.yaml";
  const { dataDir } = loadConfigFile(configPath);
  let address: string;
  try {
    address = readFileSync(adminPointerPath(dataDir), "utf8").trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    throw new PlugwireError(
      "plugin_unavailable",
      `no running host found for ${configPath} (no ${adminPointerPath(dataDir)}); start one with 'plugwire run --config ${configPath}' or pass --admin SOCKET`,
    );
  }
  return adminClient(address);
}

function unreachable(e: unknown): never {
  if (e instanceof ConnectError) throw new PlugwireError("plugin_unavailable", `the host's admin API answered: ${e.rawMessage}`, { cause: e });
  const code = (e as NodeJS.ErrnoException).code;
  if (code === "ECONNREFUSED" || code === "ENOENT") {
    throw new PlugwireError("plugin_unavailable", "the host is not running (its admin socket refused the connection); start it with 'plugwire run'", { cause: e });
  }
  throw e;
}

export function formatPlugins(plugins: readonly admin.PluginInfo[]): string {
  const header = ["PLUGIN", "STATE", "PID", "RESTARTS", "QUEUED", "IN-FLIGHT", "ACKED", "DEAD", "LAST EXIT / ERROR"];
  const rows = plugins.map((p) => [
    p.name,
    p.state,
    p.pid ? String(p.pid) : "-",
    String(p.restarts),
    String(p.queued),
    String(p.inFlight),
    String(p.lastAckedSeq),
    String(p.deadLetters),
    p.state === "failed" ? p.lastError : p.lastExit || "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

export async function statusCommand(client: AdminClient, json: boolean): Promise<string> {
  const { plugins } = await client.listPlugins({}).catch(unreachable);
  return json ? `${JSON.stringify(plugins.map((p) => ({ ...p, lastAckedSeq: Number(p.lastAckedSeq), $typeName: undefined })), null, 2)}\n` : formatPlugins(plugins);
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
