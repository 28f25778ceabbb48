/** Reads a plugwire YAML config file into host options. */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse } from "yaml";
import { PlugwireError } from "@plugwire/proto";
import type { PluginConfig } from "../config.js";

export interface PeerSeed {
  nodeId: string;
  name: string;
  x25519: string;
}

export interface ConfigFile {
  /** Absolute data dir. */
  dataDir: string;
  snapshotIntervalMs: number | undefined;
  maxSnapshotBytes: number | undefined;
  plugins: PluginConfig[];
  /** Peers the in-memory directory starts with. */
  peers: PeerSeed[];
}

const TOP_KEYS = new Set(["dataDir", "snapshotIntervalMs", "maxSnapshotBytes", "plugins", "peers"]);

function fail(path: string, message: string): never {
  throw new PlugwireError("invalid_config", `${path}: ${message}`);
}

/**
 * Loads a config file. Relative `dataDir` and plugin `cwd` resolve against the
 * file's directory, which is also each plugin's default working directory.
 */
export function loadConfigFile(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    fail(path, `cannot read the config file (${(e as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    fail(path, `is not valid YAML: ${(e as Error).message}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) fail(path, "must be a YAML mapping with a 'plugins' list");
  const raw = doc as Record<string, unknown>;
  for (const key of Object.keys(raw)) if (!TOP_KEYS.has(key)) fail(path, `unknown key '${key}' (known: ${[...TOP_KEYS].join(", ")})`);
  const base = dirname(resolve(path));
  if (!Array.isArray(raw.plugins) || raw.plugins.length === 0) fail(path, "'plugins' must be a non-empty list");
  const plugins = raw.plugins.map((p, i): PluginConfig => {
    if (p === null || typeof p !== "object" || Array.isArray(p)) fail(path, `plugins[${i}] must be a mapping`);
    const plugin = p as PluginConfig;
    const cwd = plugin.cwd === undefined ? base : isAbsolute(plugin.cwd) ? plugin.cwd : resolve(base, plugin.cwd);
    return { ...plugin, cwd, args: plugin.args?.map(String) };
  });
  const peers = (Array.isArray(raw.peers) ? raw.peers : []).map((p, i): PeerSeed => {
    const peer = p as Partial<PeerSeed>;
    if (typeof peer.nodeId !== "string" || !/^[0-9a-f]+$/i.test(peer.nodeId)) fail(path, `peers[${i}].nodeId must be hex`);
    return { nodeId: peer.nodeId, name: String(peer.name ?? ""), x25519: String(peer.x25519 ?? "") };
  });
  const dataDir = typeof raw.dataDir === "string" ? resolve(base, raw.dataDir) : resolve(base, ".plugwire");
  const number = (key: string): number | undefined => {
    const v = raw[key];
    if (v === undefined) return undefined;
    if (typeof v !== "number" || v < 0) fail(path, `'${key}' must be a non-negative number`);
    return v;
  };
  return { dataDir, snapshotIntervalMs: number("snapshotIntervalMs"), maxSnapshotBytes: number("maxSnapshotBytes"), plugins, peers };
}
