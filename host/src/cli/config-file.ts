/**
 * Reads a plugwire YAML config file into host options, validated against the
 * schema in config-schema.ts. Every problem is reported as FILE:LINE:COL with
 * what to change; an unknown key names the nearest valid one.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { isMap, isNode, isPair, isScalar, LineCounter, parseDocument, type Document } from "yaml";
import type * as z from "zod";
import { PlugwireError } from "@plugwire/proto";
import { pluginConfigJson, type PluginConfig, type PluginEntry } from "../config.js";
import { configSchema, keysAt, type RawConfig } from "./config-schema.js";
import type { RemoteHostServiceOptions } from "../launch/attach.js";

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
  stopTimeoutMs: number | undefined;
  /** Absolute, when set. */
  runDirParent: string | undefined;
  maxConcurrentLaunches: number | undefined;
  /** A payload kind claimed by two plugins is an error. */
  strictKinds: boolean | undefined;
  /** Serve the web dashboard on the admin port (default true). */
  dashboard: boolean | undefined;
  remoteHostService: RemoteHostServiceOptions | undefined;
  plugins: PluginEntry[];
  /** Peers the in-memory directory starts with. */
  peers: PeerSeed[];
}

/** At most this many problems are listed. */
const MAX_PROBLEMS = 20;

/**
 * Largest config file read, in bytes. A plugin's own config is at most
 * 1 MiB (it travels in Start); bulk data belongs in files of its own.
 */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

/** The file's text, refusing one over MAX_CONFIG_FILE_BYTES before reading it, and one that is not UTF-8 text. */
function readConfigText(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    fail(path, `cannot read the config file (${(e as Error).message})`);
  }
  let bytes: Buffer;
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) fail(path, "is not a regular file; pass the path of a YAML config file");
    if (stat.size > MAX_CONFIG_FILE_BYTES) {
      fail(path, `is ${stat.size} bytes; a config file may be at most ${MAX_CONFIG_FILE_BYTES} bytes (4 MiB). Keep large plugin data in files of their own and pass their paths in the plugin's config`);
    }
    // Read at most one byte past the cap: the file may grow after fstat.
    bytes = Buffer.alloc(Math.min(stat.size, MAX_CONFIG_FILE_BYTES) + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length < bytes.length; length += n) n = readSync(fd, bytes, length, bytes.length - length, null);
    if (length > MAX_CONFIG_FILE_BYTES) fail(path, `is over ${MAX_CONFIG_FILE_BYTES} bytes (4 MiB), the most a config file may be`);
    bytes = bytes.subarray(0, length);
  } catch (e) {
    if (e instanceof PlugwireError) throw e;
    fail(path, `cannot read the config file (${(e as Error).message})`);
  } finally {
    closeSync(fd);
  }
  const nul = bytes.indexOf(0);
  let text: string;
  try {
    if (nul >= 0) throw new Error(`a NUL byte at offset ${nul}`);
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    fail(path, `is not a text file (${(e as Error).message.startsWith("a NUL") ? (e as Error).message : "it is not valid UTF-8"}); pass the path of a YAML config file`);
  }
  if (text.trim() === "") fail(path, "is empty; it must be a YAML mapping with a 'plugins' list (see plugwire --help and docs/configuration.md)");
  return text;
}

function fail(path: string, message: string): never {
  throw new PlugwireError("invalid_config", `${path}: ${message}`);
}

/**
 * Loads a config file. Relative `dataDir`, `runDirParent` and plugin `cwd`
 * resolve against the file's directory, which is also each plugin's default
 * working directory.
 */
export function loadConfigFile(path: string): ConfigFile {
  const text = readConfigText(path);
  const lines = new LineCounter();
  let doc: Document;
  try {
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  } catch (e) {
    fail(path, `is not valid YAML (${(e as Error).message})`);
  }
  if (doc.errors.length > 0) {
    const problems = doc.errors.slice(0, MAX_PROBLEMS).map((e) => {
      const pos = lines.linePos(e.pos[0]);
      return `${path}:${pos.line}:${pos.col}: ${e.message}`;
    });
    throw new PlugwireError("invalid_config", `${path} is not valid YAML:\n${problems.join("\n")}`);
  }
  let raw: unknown;
  try {
    // The yaml library refuses alias expansion past a bound ("billion laughs").
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    fail(path, `cannot be read (${(e as Error).message}); use fewer YAML aliases (*name)`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(path, "must be a YAML mapping with a 'plugins' list (see plugwire --help)");
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) {
    const problems = parsed.error.issues
      .flatMap((issue) => describeIssue(issue, doc, lines, raw as Record<string, unknown>))
      .sort((a, b) => a.line - b.line || a.col - b.col)
      .map((p) => `${path}:${p.line}:${p.col}: ${p.message}`);
    const shown = problems.slice(0, MAX_PROBLEMS);
    const more = problems.length > shown.length ? `\n(and ${problems.length - shown.length} more)` : "";
    const heading = problems.length === 1 ? "" : `${path}: ${problems.length} problems:\n`;
    throw new PlugwireError("invalid_config", `${heading}${shown.join("\n")}${more}\nEvery option is in plugwire --help and docs/configuration.md.`);
  }
  const config = parsed.data;
  const base = dirname(resolve(path));
  const names = new Map<string, number>();
  config.plugins.forEach((p, i) => {
    const first = names.get(p.name);
    if (first !== undefined) {
      const at = locate(doc, lines, ["plugins", i, "name"]);
      fail(`${path}:${at.line}:${at.col}`, `plugins[${i}]: a plugin named '${p.name}' is already listed (plugins[${first}]); names must be unique`);
    }
    names.set(p.name, i);
    checkCommandOrAttach(p, i, (keys) => {
      const at = locate(doc, lines, ["plugins", i, ...keys]);
      return `${path}:${at.line}:${at.col}`;
    });
    if (p.config !== undefined) {
      try {
        pluginConfigJson(p.name, p.config);
      } catch (e) {
        const at = locate(doc, lines, ["plugins", i, "config"]);
        fail(`${path}:${at.line}:${at.col}`, `plugins[${i}].config: ${(e as Error).message}`);
      }
    }
  });
  const plugins = config.plugins.map((p): PluginEntry => (p.attach ? attachedEntry(p, base) : ({ ...p, cwd: p.cwd === undefined ? base : resolve(base, p.cwd) } as PluginConfig)));
  const peers = (config.peers ?? []).map((p): PeerSeed => ({ nodeId: p.nodeId, name: p.name, x25519: p.x25519 }));
  return {
    dataDir: resolve(base, config.dataDir ?? ".plugwire"),
    snapshotIntervalMs: config.snapshotIntervalMs,
    maxSnapshotBytes: config.maxSnapshotBytes,
    stopTimeoutMs: config.stopTimeoutMs,
    runDirParent: config.runDirParent === undefined ? undefined : isAbsolute(config.runDirParent) ? config.runDirParent : resolve(base, config.runDirParent),
    maxConcurrentLaunches: config.maxConcurrentLaunches,
    strictKinds: config.strictKinds,
    dashboard: config.dashboard,
    remoteHostService: remoteHostServiceOf(config.remoteHostService, base),
    plugins,
    peers,
  };
}

interface Problem {
  line: number;
  col: number;
  message: string;
}

/** Where the node at `path` starts (or the nearest enclosing node that exists); `key`: that key of the mapping there. */
function locate(doc: Document, lines: LineCounter, path: readonly PropertyKey[], key?: string): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as unknown[], true);
    if (!isNode(node) || !node.range) continue;
    let offset = node.range[0];
    if (key !== undefined && n === path.length && isMap(node)) {
      // The unknown key itself, not the mapping it is in.
      const pair = node.items.find((item) => isPair(item) && isScalar(item.key) && item.key.value === key);
      if (pair && isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
    }
    return lines.linePos(offset);
  }
  return { line: 1, col: 1 };
}

/** `plugins[1].maxInFlight (plugin 'counter')`: where a problem is, for people. */
function where(path: readonly PropertyKey[], raw: Record<string, unknown>): string {
  let text = "";
  for (const part of path) text += typeof part === "number" ? `[${part}]` : text === "" ? String(part) : `.${String(part)}`;
  if (path[0] === "plugins" && typeof path[1] === "number" && path[2] !== "name") {
    const name = (raw.plugins as Array<{ name?: unknown }>)[path[1]]?.name;
    if (typeof name === "string") text += ` (plugin '${name}')`;
  }
  return text;
}

function shown(value: unknown): string {
  if (value === null || value === undefined) return "empty";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return JSON.stringify(value);
}

const TYPE_NAMES: Record<string, string> = {
  number: "a number",
  int: "a whole number",
  string: "a string",
  array: "a list",
  object: "a mapping",
  record: "a mapping",
  boolean: "true or false",
};

function describeIssue(issue: z.core.$ZodIssue, doc: Document, lines: LineCounter, raw: Record<string, unknown>): Problem[] {
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => {
      const inside = path.length === 0 ? "" : ` in ${where(path, raw)}`;
      return { ...locate(doc, lines, path, key), message: `unknown key '${key}'${inside}; ${suggest(key, keysAt(path))}` };
    });
  }
  const at = locate(doc, lines, path);
  const input = (issue as { input?: unknown }).input;
  let message: string;
  switch (issue.code) {
    case "invalid_type":
      message = input === undefined ? "is required" : `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}, not ${shown(input)}`;
      // `capabilities: control` is a one-entry list without its brackets.
      if (issue.expected === "array" && (typeof input === "string" || typeof input === "number")) message += `; write [${String(input)}] for a list of one`;
      break;
    case "too_small":
      if (issue.origin === "array") message = `must list at least ${Number(issue.minimum) === 1 ? "one entry" : `${Number(issue.minimum)} entries`}`;
      else if (issue.origin === "string") message = "must not be empty";
      else message = `must be ${issue.inclusive ? "at least" : "more than"} ${Number(issue.minimum)}, not ${shown(input)}`;
      break;
    case "too_big":
      message = `must be at most ${Number(issue.maximum)}${issue.origin === "number" ? `, not ${shown(input)}` : ""}`;
      break;
    case "invalid_value":
      message = `must be one of ${issue.values.map((v) => String(v)).join(", ")}, not ${shown(input)}`;
      break;
    default:
      message = `${issue.message}${input === undefined ? "" : `, not ${shown(input)}`}`;
  }
  return [{ ...at, message: `${where(path, raw) || "the file"} ${message}` }];
}

/** "did you mean 'x'?" for a near miss, else the nearest valid key and the list. */
function suggest(key: string, valid: readonly string[]): string {
  if (valid.length === 0) return "this mapping takes no such key";
  let best = valid[0]!;
  let bestDistance = Infinity;
  for (const candidate of valid) {
    const d = distance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (bestDistance <= Math.max(2, Math.floor(key.length / 3))) return `did you mean '${best}'?`;
  return `the nearest valid key is '${best}' (valid here: ${valid.join(", ")})`;
}

/** Levenshtein distance, with a transposition counting as one edit. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** An attached plugin's entry (docs/remote-plugins.md): its TLS files resolve against the config file's dir; it has no cwd. */
function attachedEntry(p: RawConfig["plugins"][number], base: string): PluginEntry {
  const tls = p.attach?.tls;
  const attach = { ...p.attach!, ...(tls ? { tls: { ca: resolve(base, tls.ca), cert: resolve(base, tls.cert), key: resolve(base, tls.key) } } : {}) };
  return { ...p, attach } as PluginEntry;
}

/** Each plugin is spawned (`command`) or attached (`attach`): exactly one of the two. */
function checkCommandOrAttach(p: RawConfig["plugins"][number], i: number, where: (keys: (string | number)[]) => string): void {
  if (p.command === undefined && p.attach === undefined) {
    fail(where([]), `plugins[${i}].command (plugin '${p.name}') is required\nEvery option is in plugwire --help and docs/configuration.md.`);
  }
  if (p.command !== undefined && p.attach !== undefined) {
    fail(where(["attach"]), `plugins[${i}] (plugin '${p.name}') sets both command and attach: a plugin is spawned by the host or attached to, not both`);
  }
}

/** `remoteHostService` with its TLS files resolved against the config file's dir. */
function remoteHostServiceOf(r: RawConfig["remoteHostService"], base: string): RemoteHostServiceOptions | undefined {
  if (!r) return undefined;
  return { ...r, ...(r.tls ? { tls: { ca: resolve(base, r.tls.ca), cert: resolve(base, r.tls.cert), key: resolve(base, r.tls.key) } } : {}) };
}
