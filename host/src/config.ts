/**
 * Plugin configuration: what the application (or the CLI's YAML file) says
 * about each plugin, validated here, with the defaults filled in.
 */
import { ENV, MAX_EFFECTS_PER_ACK, MAX_PLUGIN_CONFIG_BYTES, PlugwireError } from "@plugwire/proto";
import { LIMIT_KEYS, type PluginLimits } from "./launch/limits.js";
import { resolveAttachConfig, type AttachConfig, type ResolvedAttachConfig } from "./launch/attach.js";

export type { PluginLimits } from "./launch/limits.js";
export type { AttachConfig } from "./launch/attach.js";

export type Capability = "peers" | "control" | "identity";
export const CAPABILITIES: readonly Capability[] = ["peers", "control", "identity"];

/** OTP restart types: always, only after an abnormal exit, or never. */
export type RestartType = "permanent" | "transient" | "temporary";
/** What happens to a new payload when a restarting plugin's queue is full. */
export type OverflowPolicy = "reject" | "drop-oldest";

/** One plugin, as the application configures it. Durations are in ms. */
export interface PluginConfig {
  /** Unique name of this plugin in the host; used in logs, errors and metrics. */
  name: string;
  /** Executable to run. An attached plugin has none (AttachedPluginConfig). */
  command: string;
  args?: readonly string[];
  cwd?: string;
  /** Extra environment variables; the host's own environment is not passed, except an allowlist. */
  env?: Readonly<Record<string, string>>;
  /** Handed to the plugin in Start, as JSON. */
  config?: Readonly<Record<string, unknown>>;
  /** What the plugin may call on the host. Default: none. */
  capabilities?: readonly Capability[];
  restart?: RestartType;
  handshakeTimeoutMs?: number;
  /**
   * How the plugin gets its auth token: `stdin` (default), a line on its
   * stdin that no other process can read; or `env`, the legacy
   * PLUGWIRE_AUTH_TOKEN variable for plugins built before the token line, which any
   * process of the same user can read in /proc/<pid>/environ.
   */
  tokenVia?: "stdin" | "env";
  /** Deadline of the Shutdown RPC, the first step of the shutdown ladder. */
  shutdownTimeoutMs?: number;
  /** Wait after SIGTERM before SIGKILL. */
  killGraceMs?: number;
  /** Restarts allowed within `restartWindowMs` before the plugin is quarantined as failed. */
  maxRestarts?: number;
  restartWindowMs?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** Healthy running time after which the backoff resets. */
  backoffResetMs?: number;
  healthIntervalMs?: number;
  healthTimeoutMs?: number;
  /**
   * Warm standby: keep one spare process spawned, handshaken and described,
   * promoted on a crash instead of a cold spawn (docs/supervision.md, "Warm
   * standby"). `auto` (default): on for a plugin whose Describe declares it
   * stateful, off for a stateless one; `true`/`false`: always on/off.
   */
  warmStandby?: boolean | "auto";
  /** Consecutive failed health checks after which the plugin counts as hung. */
  healthFailures?: number;
  /**
   * A plugin that has un-acked payloads and acks nothing for this long counts
   * as hung, even though it answers health checks. Default 5 min: a slow
   * (busy) handler is not a hung one; a blocked process is caught by the
   * health checks instead. 0 disables.
   */
  ackTimeoutMs?: number;
  /** Payloads sent but not yet acked, at most. */
  maxInFlight?: number;
  /** Payloads waiting while the plugin is restarting or its window is full, at most. */
  maxQueued?: number;
  /** Bytes of payloads waiting while the plugin is restarting or its window is full, at most (one payload is always allowed). */
  maxQueuedBytes?: number;
  overflow?: OverflowPolicy;
  /**
   * Bytes of payloads sent but not yet acked, at most (one payload is always
   * allowed, up to the 16 MiB message limit). At most 128 KiB, the default:
   * more than a unix socket buffers could deadlock two Node HTTP/2 peers
   * (docs/guarantees.md, "Flow control").
   */
  maxInFlightBytes?: number;
  /** Payloads per Deliver message, at most. */
  maxBatch?: number;
  /** Bytes of payloads per Deliver message, at most (one payload is always allowed). */
  maxBatchBytes?: number;
  /** Once a full batch is in flight, new payloads wait up to this long for the next ack to carry them (0: send on the next tick). */
  coalesceMs?: number;
  /** Stateful plugins: acked payloads kept for replay before an early snapshot is taken. */
  maxReplayPayloads?: number;
  /** Stateful plugins: bytes of acked payloads kept for replay before an early snapshot is taken. */
  maxReplayBytes?: number;
  maxLogLineBytes?: number;
  maxLogLinesPerSecond?: number;
  /**
   * Effects (sends) one item's outcome may carry, at most; more fail the item
   * with too_many_effects and none of them is performed. 1 to 32768.
   */
  maxEffectsPerItem?: number;
  /**
   * Binary pinning: the SHA-256 (hex) of the executable `command` resolves
   * to, or of `sha256File` when that is set. Checked before every launch; a
   * mismatch is refused (permission_denied) and not retried.
   */
  sha256?: string;
  /** The file `sha256` pins instead of the executable: the script, for a plugin run by an interpreter. Relative to cwd. */
  sha256File?: string;
  /** Resource limits of the plugin's processes (docs/configuration.md, "Resource limits"). */
  limits?: PluginLimits;
  /**
   * Attach mode: the plugin is run by someone else (Kubernetes, systemd) and
   * serves on TCP with mutual TLS; the host dials it instead of spawning
   * `command` (docs/remote-plugins.md). Mutually exclusive with `command`.
   */
  attach?: AttachConfig;
  /** HostService LookupX25519, LookupName, GetSigningSeed and WatchPeers opens per second (a burst of one second's worth); more is RESOURCE_EXHAUSTED. 0: no limit. */
  hostLookupsPerSecond?: number;
  /** HostService SendDirect and SendRouted calls per second (a burst of one second's worth); more is RESOURCE_EXHAUSTED. 0: no limit. */
  hostSendsPerSecond?: number;
  /** WatchPeers streams open at once, at most; one more is RESOURCE_EXHAUSTED. */
  maxWatchPeersStreams?: number;
  /** Peer events a WatchPeers stream may leave unread; one more ends the stream (RESOURCE_EXHAUSTED: reopen and re-sync). */
  maxWatchPeersBacklog?: number;
  /** Bytes of HostService request bodies the plugin may have in transfer at once; more is RESOURCE_EXHAUSTED. */
  maxHostCallBytes?: number;
}

/** A plugin run elsewhere that the host attaches to: no `command`, an `attach` (docs/remote-plugins.md). */
export type AttachedPluginConfig = Omit<PluginConfig, "command" | "attach"> & { command?: undefined; attach: AttachConfig };

/** A plugin entry of the host: spawned (`command`) or attached (`attach`). */
export type PluginEntry = PluginConfig | AttachedPluginConfig;

/** The largest maxEffectsPerItem: half the per-ack limit, so an SDK that acks by effect count stays under that. */
export const MAX_EFFECTS_PER_ITEM = MAX_EFFECTS_PER_ACK / 2;

/** The largest maxInFlightBytes: SAFE_IN_FLIGHT_BYTES of the delivery channel. */
export const MAX_IN_FLIGHT_BYTES = 128 * 1024;

export type ResolvedPluginConfig = Required<Omit<PluginConfig, "cwd" | "sha256" | "sha256File" | "attach">> & {
  /** Set for an attached plugin (its `command` is then ""). */
  attach: ResolvedAttachConfig | undefined;
  cwd: string | undefined;
  sha256: string | undefined;
  sha256File: string | undefined;
};

export const PLUGIN_DEFAULTS = {
  args: [],
  env: {},
  config: {},
  capabilities: [],
  restart: "permanent",
  handshakeTimeoutMs: 10_000,
  tokenVia: "stdin",
  shutdownTimeoutMs: 5_000,
  killGraceMs: 2_000,
  maxRestarts: 5,
  restartWindowMs: 60_000,
  backoffInitialMs: 100,
  backoffMaxMs: 30_000,
  backoffResetMs: 60_000,
  healthIntervalMs: 5_000,
  healthTimeoutMs: 1_000,
  warmStandby: "auto",
  healthFailures: 3,
  ackTimeoutMs: 300_000,
  maxInFlight: 4_096,
  maxQueued: 10_000,
  maxQueuedBytes: 256 * 1024 * 1024,
  overflow: "reject",
  maxBatch: 128,
  maxInFlightBytes: 128 * 1024,
  maxBatchBytes: 1024 * 1024,
  coalesceMs: 1,
  maxReplayPayloads: 100_000,
  maxReplayBytes: 64 * 1024 * 1024,
  maxLogLineBytes: 16 * 1024,
  maxLogLinesPerSecond: 1_000,
  maxEffectsPerItem: 4_096,
  sha256: undefined,
  sha256File: undefined,
  attach: undefined,
  limits: {},
  hostLookupsPerSecond: 10_000,
  hostSendsPerSecond: 10_000,
  maxWatchPeersStreams: 16,
  maxWatchPeersBacklog: 8_192,
  maxHostCallBytes: 32 * 1024 * 1024,
} as const satisfies Omit<ResolvedPluginConfig, "name" | "command" | "cwd">;

function invalid(name: string, message: string): PlugwireError {
  return new PlugwireError("invalid_config", `plugin '${name}': ${message}`, { plugin: name });
}

/** A value as an error message shows it: short, and never the whole of a large one. */
function shown(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "string") return value.length > 40 ? `${JSON.stringify(value.slice(0, 40))}… (a string)` : `${JSON.stringify(value)} (a string)`;
  return String(value);
}

/** A plain object: `{}` or made by Object.create(null), not a list, Map, Date or class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The bytes of a plugin's `config` as Start carries it (JSON), or why it
 * cannot be sent. Refuses a config over MAX_PLUGIN_CONFIG_BYTES up front,
 * where a 16 MiB message error would name no plugin.
 */
export function pluginConfigJson(name: string, config: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(config);
  } catch (e) {
    throw invalid(name, `its config cannot be sent as JSON (${(e as Error).message}); use plain objects, lists, strings, numbers, booleans and null`);
  }
  if (json === undefined) throw invalid(name, "its config cannot be sent as JSON; use a plain object");
  const bytes = Buffer.byteLength(json, "utf8");
  if (bytes > MAX_PLUGIN_CONFIG_BYTES) {
    throw invalid(
      name,
      `its config is ${bytes} bytes as JSON; at most ${MAX_PLUGIN_CONFIG_BYTES} (1 MiB) travel in Start (docs/protocol.md §13). ` +
        `Put bulk data in a file and pass its path in the config`,
    );
  }
  return json;
}

/**
 * Checks the types of a plugin config an application passed (the YAML file
 * is checked by its schema first), so a wrong one is an invalid_config error
 * naming the plugin and the option, never a TypeError from deep inside.
 */
function checkTypes(input: PluginEntry, name: string): void {
  const o = input as unknown as Record<string, unknown>;
  const isStringList = (v: unknown): boolean => Array.isArray(v) && v.every((a) => typeof a === "string");
  if (o.args !== undefined && !isStringList(o.args)) {
    throw invalid(name, `args must be a list of strings, not ${shown(o.args)}${Array.isArray(o.args) ? " with a non-string entry" : ""}; for example args: ["server.js", "--port", "8080"]`);
  }
  if (o.cwd !== undefined && (typeof o.cwd !== "string" || o.cwd.length === 0)) {
    throw invalid(name, `cwd must be a directory path (a non-empty string), not ${shown(o.cwd)}`);
  }
  if (o.env !== undefined && (!isPlainObject(o.env) || !Object.values(o.env).every((v) => typeof v === "string"))) {
    throw invalid(name, `env must be an object of strings (NAME: "value"), not ${isPlainObject(o.env) ? "an object with a non-string value" : shown(o.env)}`);
  }
  if (o.config !== undefined) {
    if (!isPlainObject(o.config)) throw invalid(name, `config must be an object (it is handed to the plugin in Start as JSON), not ${shown(o.config)}`);
    pluginConfigJson(name, o.config);
  }
  if (o.capabilities !== undefined) {
    if (typeof o.capabilities === "string") {
      throw invalid(name, `capabilities must be a list, not the string ${JSON.stringify(o.capabilities)}; write capabilities: [${JSON.stringify(o.capabilities)}] (valid: ${CAPABILITIES.join(", ")})`);
    }
    if (!Array.isArray(o.capabilities)) throw invalid(name, `capabilities must be a list of ${CAPABILITIES.join(", ")}, not ${shown(o.capabilities)}`);
    for (const c of o.capabilities) {
      if (!CAPABILITIES.includes(c as Capability)) throw invalid(name, `unknown capability ${shown(c)}; use ${CAPABILITIES.join(", ")}`);
    }
  }
  for (const key of ["restart", "overflow"] as const) {
    if (o[key] !== undefined && typeof o[key] !== "string") throw invalid(name, `${key} must be a string, not ${shown(o[key])}`);
  }
}

/** Validates one plugin config and fills in defaults. */
export function resolvePluginConfig(input: PluginEntry): ResolvedPluginConfig {
  if (!isPlainObject(input)) throw new PlugwireError("invalid_config", `each plugin must be an object with a name and a command, not ${shown(input)}`);
  const name = input.name;
  if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new PlugwireError("invalid_config", `plugin name ${typeof name === "string" ? JSON.stringify(name.slice(0, 80)) : shown(name)} must be 1-64 characters of [A-Za-z0-9._-]`);
  }
  // The name becomes a directory under the data dir: "." and ".." would be the data dir itself or its parent.
  if (name === "." || name === "..") throw new PlugwireError("invalid_config", `plugin name "${name}" is not allowed (it names a directory above the plugin's own data dir); choose a name with a letter or digit in it`);
  const attach = input.attach === undefined ? undefined : resolveAttached(name, input);
  const command: unknown = input.command;
  if (!attach && (typeof command !== "string" || command.length === 0)) {
    throw invalid(name, "'command' is required: the executable to run (a non-empty string), or 'attach' for a plugin run elsewhere");
  }
  checkTypes(input, name);
  const resolved: ResolvedPluginConfig = {
    ...PLUGIN_DEFAULTS,
    ...stripUndefined(input),
    ...(attach ? { command: "" } : {}),
    attach,
    cwd: input.cwd,
    sha256: input.sha256,
    sha256File: input.sha256File,
  } as ResolvedPluginConfig;
  checkPinConfig(name, input);
  checkReservedEnv(name, input.env);
  resolved.limits = resolveLimits(name, input.limits);
  for (const c of resolved.capabilities) {
    if (!CAPABILITIES.includes(c)) throw invalid(name, `unknown capability '${c}' (use ${CAPABILITIES.join(", ")})`);
  }
  if (!["permanent", "transient", "temporary"].includes(resolved.restart)) {
    throw invalid(name, `restart must be permanent, transient or temporary, not '${resolved.restart}'`);
  }
  if (!["stdin", "env"].includes(resolved.tokenVia)) {
    throw invalid(name, `tokenVia must be stdin or env, not ${JSON.stringify(resolved.tokenVia)}`);
  }
  if (resolved.warmStandby !== true && resolved.warmStandby !== false && resolved.warmStandby !== "auto") {
    throw invalid(name, `warmStandby must be true, false or "auto", not ${shown(resolved.warmStandby)}`);
  }
  if (!["reject", "drop-oldest"].includes(resolved.overflow)) {
    throw invalid(name, `overflow must be reject or drop-oldest, not '${resolved.overflow}'`);
  }
  for (const [key, value] of Object.entries(resolved)) {
    if (/(Ms|Bytes|PerSecond|^max[A-Z].*|Failures|Payloads)$/.test(key) && (typeof value !== "number" || !Number.isFinite(value) || value < 0)) {
      throw invalid(name, `${key} must be a non-negative number, not ${JSON.stringify(value)}`);
    }
  }
  if (resolved.maxInFlight < 1 || resolved.maxBatch < 1) throw invalid(name, "maxInFlight and maxBatch must be at least 1");
  if (resolved.maxInFlightBytes < 1 || resolved.maxInFlightBytes > MAX_IN_FLIGHT_BYTES) {
    throw invalid(
      name,
      `maxInFlightBytes must be between 1 and ${MAX_IN_FLIGHT_BYTES} (128 KiB), not ${resolved.maxInFlightBytes}: ` +
        `more in flight than a unix socket buffers can deadlock the host and a Node plugin (see docs/guarantees.md, "Flow control")`,
    );
  }
  if (resolved.maxEffectsPerItem < 1 || resolved.maxEffectsPerItem > MAX_EFFECTS_PER_ITEM) {
    throw invalid(
      name,
      `maxEffectsPerItem must be between 1 and ${MAX_EFFECTS_PER_ITEM}, not ${resolved.maxEffectsPerItem}: ` +
        `one ack carries at most ${MAX_EFFECTS_PER_ACK} effects (docs/protocol.md §8, Effects)`,
    );
  }
  return resolved;
}

/** `attach`, which excludes the options that only mean something for a process the host spawns. */
function resolveAttached(name: string, input: PluginEntry): ResolvedAttachConfig {
  const spawnOnly = (["command", "args", "cwd", "env", "tokenVia", "sha256", "sha256File", "limits"] as const).filter((k) => input[k] !== undefined);
  if (spawnOnly.length > 0) {
    throw invalid(
      name,
      `attach cannot go with ${spawnOnly.join(", ")}: an attached plugin is run by its own process manager, not spawned by the host; ` +
        `remove ${spawnOnly.length > 1 ? "them" : "it"}, or remove attach to spawn the plugin`,
    );
  }
  return resolveAttachConfig(name, input.attach);
}

/** The host sets the PLUGWIRE_* variables of the protocol; a config may not set them (a wrong cookie, another socket dir, ...). */
function checkReservedEnv(name: string, env: unknown): void {
  if (env === null || typeof env !== "object") return;
  const reserved: readonly string[] = Object.values(ENV);
  for (const key of Object.keys(env)) {
    if (reserved.includes(key)) {
      throw invalid(name, `env may not set ${key}: the host sets the PLUGWIRE_* variables of each launch itself (docs/protocol.md §1); remove it from the plugin's env`);
    }
  }
}

function checkPinConfig(name: string, input: PluginEntry): void {
  if (input.sha256 !== undefined && (typeof input.sha256 !== "string" || !/^[0-9a-fA-F]{64}$/.test(input.sha256))) {
    throw invalid(name, `sha256 must be 64 hex digits (the SHA-256 of the file it pins, e.g. from \`sha256sum FILE\`), not ${JSON.stringify(input.sha256)}`);
  }
  if (input.sha256File !== undefined) {
    if (typeof input.sha256File !== "string" || input.sha256File.length === 0) throw invalid(name, `sha256File must be a file path, not ${JSON.stringify(input.sha256File)}`);
    if (input.sha256 === undefined) throw invalid(name, "sha256File names the file sha256 pins, so sha256 must be set too");
  }
}

/** Validates `limits`: each a positive whole number, or absent. */
function resolveLimits(name: string, limits: unknown): PluginLimits {
  if (limits === undefined) return {};
  if (limits === null || typeof limits !== "object" || Array.isArray(limits)) {
    throw invalid(name, `limits must be a mapping of ${LIMIT_KEYS.join(", ")}, not ${JSON.stringify(limits)}`);
  }
  const out: PluginLimits = {};
  for (const [key, value] of Object.entries(limits)) {
    if (!(LIMIT_KEYS as readonly string[]).includes(key)) throw invalid(name, `limits.${key} is not a limit (use ${LIMIT_KEYS.join(", ")})`);
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1) {
      throw invalid(name, `limits.${key} must be a whole number of at least 1, not ${JSON.stringify(value)}`);
    }
    out[key as keyof PluginLimits] = value;
  }
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Validates a whole plugin list: unique names. */
export function resolvePlugins(plugins: readonly PluginEntry[]): ResolvedPluginConfig[] {
  if (!Array.isArray(plugins)) throw new PlugwireError("invalid_config", `host option plugins must be a list of plugin configs, not ${shown(plugins)}`);
  const seen = new Set<string>();
  return plugins.map((p) => {
    const resolved = resolvePluginConfig(p);
    if (seen.has(resolved.name)) throw invalid(resolved.name, "two plugins have this name; names must be unique");
    seen.add(resolved.name);
    return resolved;
  });
}

/** Default of HostOptions.stopTimeoutMs: how long `host.stop()` may take in all. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** Validates HostOptions.stopTimeoutMs and fills in its default. */
export function resolveStopTimeoutMs(value: unknown): number {
  if (value === undefined) return DEFAULT_STOP_TIMEOUT_MS;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new PlugwireError(
      "invalid_config",
      `host option stopTimeoutMs must be a positive number of milliseconds, not ${JSON.stringify(value)}; it bounds how long host.stop() takes (default ${DEFAULT_STOP_TIMEOUT_MS})`,
    );
  }
  return value;
}

/**
 * Checks the host-wide options an application passed to createHost (the
 * per-plugin ones are checked by resolvePlugins): each wrong one is an
 * invalid_config error naming the option and what it takes.
 */
export function checkHostOptions(options: Readonly<Record<string, unknown>>): void {
  const fail = (key: string, what: string): never => {
    throw new PlugwireError("invalid_config", `host option ${key} must be ${what}, not ${shown(options[key])}`);
  };
  if (typeof options.dataDir !== "string" || options.dataDir.length === 0) fail("dataDir", "a directory path (a non-empty string)");
  if (options.runDirParent !== undefined && typeof options.runDirParent !== "string") fail("runDirParent", "an absolute directory path");
  for (const key of ["snapshotIntervalMs", "maxSnapshotBytes"]) {
    const v = options[key];
    if (v !== undefined && (typeof v !== "number" || !Number.isFinite(v) || v < 0)) fail(key, "a non-negative number");
  }
  const launches = options.maxConcurrentLaunches;
  if (launches !== undefined && (typeof launches !== "number" || !Number.isInteger(launches) || launches < 1)) fail("maxConcurrentLaunches", "a whole number, at least 1");
  if (options.strictKinds !== undefined && typeof options.strictKinds !== "boolean") fail("strictKinds", "true or false");
}
