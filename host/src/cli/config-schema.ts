/**
 * The YAML config file of `plugwire run`: its schema (zod, strict: an unknown
 * key is an error) and the one table of its options, with default and unit,
 * that `plugwire --help` prints and docs/configuration.md follows.
 */
import * as z from "zod";
import { MAX_SOCKET_PATH_BYTES } from "@plugwire/proto";
import { CAPABILITIES, DEFAULT_STOP_TIMEOUT_MS, MAX_EFFECTS_PER_ITEM, MAX_IN_FLIGHT_BYTES, PLUGIN_DEFAULTS, type Capability } from "../config.js";
import { ENV_ALLOWLIST } from "../launch/env.js";

/** One option of the config file, as --help and the docs show it. */
export interface OptionDoc {
  key: string;
  /** The default with its unit, as people read it ("(required)" when there is none). */
  default: string;
  /** Unit of a number: ms, bytes, count, per second; "" for other types. */
  unit: string;
  about: string;
}

const MIB = 1024 * 1024;

/** A default for people, with its unit: "300000 ms (5 min)", "4 MiB", "1000/s". */
function show(value: number, unit: string): string {
  if (unit === "bytes") {
    if (value >= MIB && value % MIB === 0) return `${value / MIB} MiB`;
    if (value >= 1024 && value % 1024 === 0) return `${value / 1024} KiB`;
    return `${value} bytes`;
  }
  if (unit === "ms") {
    if (value >= 60_000 && value % 60_000 === 0) return `${value} ms (${value / 60_000} min)`;
    if (value >= 1_000 && value % 1_000 === 0) return `${value} ms (${value / 1_000} s)`;
    return `${value} ms`;
  }
  if (unit === "per second") return `${value}/s`;
  return String(value);
}

type NumericKey = { [K in keyof typeof PLUGIN_DEFAULTS]: (typeof PLUGIN_DEFAULTS)[K] extends number ? K : never }[keyof typeof PLUGIN_DEFAULTS];

/** A per-plugin number option whose default comes from PLUGIN_DEFAULTS. */
function num(key: NumericKey, unit: string, about: string): OptionDoc {
  return { key, default: show(PLUGIN_DEFAULTS[key], unit), unit, about };
}

export const SNAPSHOT_INTERVAL_MS_DEFAULT = 30_000;
export const MAX_SNAPSHOT_BYTES_DEFAULT = 256 * MIB;

/** Top-level keys of the config file. */
export const HOST_OPTIONS: readonly OptionDoc[] = [
  { key: "dataDir", default: ".plugwire", unit: "", about: "plugin data dirs, snapshots, admin.address and admin.token; relative to the config file's directory. One host per data dir: a second host on it is refused (`host.lock`, supervision.md)" },
  { key: "snapshotIntervalMs", default: show(SNAPSHOT_INTERVAL_MS_DEFAULT, "ms"), unit: "ms", about: "snapshot every stateful plugin this often; 0 disables. A state identical to the one stored last is not stored again" },
  { key: "maxSnapshotBytes", default: show(MAX_SNAPSHOT_BYTES_DEFAULT, "bytes"), unit: "bytes", about: "largest snapshot accepted" },
  { key: "stopTimeoutMs", default: show(DEFAULT_STOP_TIMEOUT_MS, "ms"), unit: "ms", about: "how long stopping the host (SIGINT/SIGTERM) may take in all; more than 0" },
  {
    key: "runDirParent",
    default: "$TMPDIR or /tmp",
    unit: "",
    about: `where the host makes its private socket dir (pw-XXXXXX); keep it short: unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES} bytes. If a temp-dir cleaner removes the dir or its host.sock, the host re-creates them (checked every 5 s and before each spawn) and logs an error`,
  },
  { key: "maxConcurrentLaunches", default: "2 × CPUs (min 2)", unit: "count", about: "plugins between spawn and handshake at once, at most" },
  {
    key: "strictKinds",
    default: "false",
    unit: "",
    about: "true: a payload kind claimed by two plugins is an error (the later one is refused); false: the first listed wins, the other is warned about",
  },
  {
    key: "dashboard",
    default: "true",
    unit: "",
    about: "serve the web dashboard at / of the admin port (--admin-port); false (or --no-dashboard) turns it off (docs/dashboard.md)",
  },
  {
    key: "remoteHostService",
    default: "(none)",
    unit: "",
    about:
      "HostService also on TCP for attached plugins: { listen: tcp://HOST:PORT, tls: { ca, cert, key } (PEM files, relative to the file's dir; ca signs the plugins' client certificates), plaintext (loopback only) }",
  },
  { key: "peers", default: "[]", unit: "", about: "peers the in-memory directory starts with: - { nodeId: HEX, name: NAME, x25519: HEX }" },
  { key: "plugins", default: "(required)", unit: "", about: "the plugins, in priority order: the first to claim a payload kind wins it" },
];

/** Keys of each entry of `plugins:`. */
export const PLUGIN_OPTIONS: readonly OptionDoc[] = [
  { key: "name", default: "(required)", unit: "", about: "unique name, 1-64 of [A-Za-z0-9._-]; used in logs, errors, metrics and the CLI" },
  { key: "command", default: "(required)", unit: "", about: "the executable: a bare name is looked up in PATH, a path with a / resolves against cwd (not with attach)" },
  {
    key: "attach",
    default: "(none)",
    unit: "",
    about:
      "instead of command, a plugin run elsewhere that the host dials: { address: tcp://HOST:PORT, tls: { ca, cert, key } (PEM files, relative to the file's dir), serverName, plaintext (loopback only) }; docs/remote-plugins.md",
  },
  { key: "args", default: "[]", unit: "", about: "its arguments" },
  { key: "cwd", default: "the file's dir", unit: "", about: "its working directory; relative to the config file's directory" },
  { key: "env", default: "{}", unit: "", about: `extra environment variables; of the host's own, only ${ENV_ALLOWLIST.join(", ")} are passed` },
  { key: "config", default: "{}", unit: "", about: "handed to the plugin in Start, as JSON" },
  { key: "capabilities", default: "[]", unit: "", about: `what it may call on the host: ${CAPABILITIES.join(", ")}` },
  { key: "restart", default: PLUGIN_DEFAULTS.restart, unit: "", about: "permanent (always), transient (after a crash) or temporary (never)" },
  num("handshakeTimeoutMs", "ms", "how long the host waits for the handshake line"),
  { key: "tokenVia", default: PLUGIN_DEFAULTS.tokenVia, unit: "", about: "how the plugin gets its auth token: stdin, or env (legacy PLUGWIRE_AUTH_TOKEN, readable by any process of the same user)" },
  num("shutdownTimeoutMs", "ms", "deadline of the Shutdown RPC and the exit after it; then SIGTERM"),
  num("killGraceMs", "ms", "wait after SIGTERM before SIGKILL"),
  num("maxRestarts", "count", "restarts allowed within restartWindowMs; one more makes the plugin failed"),
  num("restartWindowMs", "ms", "the sliding window of maxRestarts"),
  num("backoffInitialMs", "ms", "ceiling of the first delayed restart; doubles per attempt"),
  num("backoffMaxMs", "ms", "cap of the restart backoff"),
  num("backoffResetMs", "ms", "ready time after which the backoff starts over"),
  num("healthIntervalMs", "ms", "interval of health checks (and of the ack-timeout check)"),
  num("healthTimeoutMs", "ms", "deadline of one health check"),
  num("healthFailures", "count", "failed health checks in a row after which the plugin is hung"),
  { key: "warmStandby", default: PLUGIN_DEFAULTS.warmStandby, unit: "", about: "keep a spare process (spawned, handshaken, described) to promote on a crash: auto (stateful plugins), true or false" },
  num("ackTimeoutMs", "ms", "payloads in flight and no ack for this long: hung, even if healthy; 0 disables"),
  num("maxInFlight", "count", "payloads sent but not acked, at most; at least 1"),
  num("maxInFlightBytes", "bytes", `bytes of payloads sent but not acked, at most (one payload always goes); 1 to ${show(MAX_IN_FLIGHT_BYTES, "bytes")}`),
  num("maxQueued", "count", "payloads waiting while the plugin restarts or its window is full, at most"),
  num("maxQueuedBytes", "bytes", "bytes of payloads waiting while the plugin restarts or its window is full, at most (one payload always waits)"),
  { key: "overflow", default: PLUGIN_DEFAULTS.overflow, unit: "", about: "a full queue: reject the new payload, or drop-oldest" },
  num("maxBatch", "count", "payloads per Deliver message, at most; at least 1"),
  num("maxBatchBytes", "bytes", "bytes per Deliver message, at most (one payload always goes)"),
  num("coalesceMs", "ms", "with a full batch in flight, how long new payloads wait for the next ack; 0: next tick"),
  num("maxReplayPayloads", "count", "stateful: acked payloads kept for replay before an early snapshot"),
  num("maxReplayBytes", "bytes", "stateful: bytes of acked payloads kept for replay before an early snapshot"),
  num("maxLogLineBytes", "bytes", "longest plugin log line kept; the rest of the line is dropped"),
  num("maxLogLinesPerSecond", "per second", "plugin log lines forwarded per second per launch (before and after the handshake); the rest are dropped and counted"),
  num("maxEffectsPerItem", "count", `effects (sends) one payload's handler may report; more fail the payload (too_many_effects); 1 to ${MAX_EFFECTS_PER_ITEM}`),
  {
    key: "sha256",
    default: "(none)",
    unit: "",
    about: "pins the SHA-256 (64 hex digits) of the executable command resolves to, or of sha256File; checked before every launch, a mismatch fails the plugin",
  },
  { key: "sha256File", default: "(none)", unit: "", about: "the file sha256 pins instead of the executable (a script run by an interpreter); relative to cwd" },
  {
    key: "limits",
    default: "{}",
    unit: "",
    about: "resource limits: { memoryMiB (cgroup, else RLIMIT_DATA), openFiles (RLIMIT_NOFILE), cpuSeconds (RLIMIT_CPU) }",
  },
  num("hostLookupsPerSecond", "per second", "HostService lookups (LookupX25519, LookupName, GetSigningSeed, WatchPeers opens) per second; more: RESOURCE_EXHAUSTED; 0: no limit"),
  num("hostSendsPerSecond", "per second", "HostService SendDirect and SendRouted calls per second; more: RESOURCE_EXHAUSTED; 0: no limit"),
  num("maxWatchPeersStreams", "count", "WatchPeers streams open at once; one more: RESOURCE_EXHAUSTED"),
  num("maxWatchPeersBacklog", "count", "peer events a WatchPeers stream may leave unread; one more ends it (reopen and re-sync)"),
  num("maxHostCallBytes", "bytes", "bytes of HostService request bodies in transfer at once; more: RESOURCE_EXHAUSTED"),
];

/** A string, number or boolean, as a string: YAML reads `8080` and `true` as non-strings. */
const scalar = z.union([z.string(), z.number(), z.boolean()], { error: "must be a string" }).transform(String);
const hex = z.string({ error: "must be a hex string in quotes" }).regex(/^([0-9a-fA-F]{2})+$/, { error: "must be hex digits, two per byte" });
const nonNegative = z.number().nonnegative();
const atLeastOne = z.number().min(1);

const NUMBER_SCHEMAS = Object.fromEntries(
  Object.entries(PLUGIN_DEFAULTS)
    .filter(([, value]) => typeof value === "number")
    .map(([key]) => [
      key,
      (key === "maxInFlight" || key === "maxBatch" ? atLeastOne : key === "maxInFlightBytes" ? atLeastOne.max(MAX_IN_FLIGHT_BYTES) : key === "maxEffectsPerItem" ? atLeastOne.max(MAX_EFFECTS_PER_ITEM) : nonNegative).optional(),
    ]),
) as Record<NumericKey, z.ZodOptional<z.ZodNumber>>;

export const pluginSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { error: "must be 1-64 characters of [A-Za-z0-9._-]" }),
  command: z.string().min(1).optional(),
  attach: z
    .strictObject({
      address: z.string().regex(/^tcp:\/\/\S+:[0-9]{1,5}$/, { error: "must be tcp://HOST:PORT" }),
      tls: z.strictObject({ ca: z.string().min(1), cert: z.string().min(1), key: z.string().min(1) }).optional(),
      serverName: z.string().min(1).optional(),
      plaintext: z.boolean().optional(),
    })
    .optional(),
  args: z.array(scalar).optional(),
  cwd: z.string().min(1).optional(),
  env: z.record(z.string(), scalar).optional(),
  config: z.record(z.string(), z.unknown()).optional(),
  capabilities: z.array(z.enum(CAPABILITIES as readonly Capability[] as [Capability, ...Capability[]])).optional(),
  restart: z.enum(["permanent", "transient", "temporary"]).optional(),
  overflow: z.enum(["reject", "drop-oldest"]).optional(),
  tokenVia: z.enum(["stdin", "env"]).optional(),
  warmStandby: z.union([z.boolean(), z.literal("auto")]).optional(),
  ...NUMBER_SCHEMAS,
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, { error: "must be 64 hex digits (the output of sha256sum)" }).optional(),
  sha256File: z.string().min(1).optional(),
  limits: z
    .strictObject({
      memoryMiB: z.number().int().min(1).optional(),
      openFiles: z.number().int().min(1).optional(),
      cpuSeconds: z.number().int().min(1).optional(),
    })
    .optional(),
});

export const peerSchema = z.strictObject({
  nodeId: hex,
  name: z.string(),
  x25519: hex,
});

export const configSchema = z.strictObject({
  dataDir: z.string().min(1).optional(),
  snapshotIntervalMs: nonNegative.optional(),
  maxSnapshotBytes: nonNegative.optional(),
  stopTimeoutMs: z.number().positive().optional(),
  runDirParent: z.string().min(1).optional(),
  maxConcurrentLaunches: z.number().int().min(1).optional(),
  strictKinds: z.boolean().optional(),
  dashboard: z.boolean().optional(),
  remoteHostService: z
    .strictObject({
      listen: z.string().regex(/^tcp:\/\/\S+:[0-9]{1,5}$/, { error: "must be tcp://HOST:PORT" }),
      tls: z.strictObject({ ca: z.string().min(1), cert: z.string().min(1), key: z.string().min(1) }).optional(),
      plaintext: z.boolean().optional(),
    })
    .optional(),
  peers: z.array(peerSchema).optional(),
  plugins: z.array(pluginSchema).min(1),
});

export type RawConfig = z.infer<typeof configSchema>;

/** The valid keys of the mapping at `path` of the config ([] is the top level). */
export function keysAt(path: readonly PropertyKey[]): readonly string[] {
  if (path.length === 0) return HOST_OPTIONS.map((o) => o.key);
  if (path[0] === "plugins" && path.length === 2) return PLUGIN_OPTIONS.map((o) => o.key);
  if (path[0] === "peers" && path.length === 2) return Object.keys(peerSchema.shape);
  if (path[0] === "plugins" && path.length === 3 && path[2] === "limits") return ["memoryMiB", "openFiles", "cpuSeconds"];
  if (path[0] === "plugins" && path.length === 3 && path[2] === "attach") return ["address", "tls", "serverName", "plaintext"];
  if (path[0] === "plugins" && path.length === 4 && path[2] === "attach" && path[3] === "tls") return ["ca", "cert", "key"];
  return [];
}

/** The config section of `plugwire --help`: every option, with default and unit. */
export function configHelp(): string {
  const rows = (options: readonly OptionDoc[], indent: string): string =>
    options.map((o) => `${indent}${o.key.padEnd(26 - indent.length)} ${o.default.padEnd(18)} ${o.about}`).join("\n");
  return (
    `Config file (YAML). An unknown key is an error.\n` +
    `Option, default (with its unit), what it does:\n` +
    `${rows(HOST_OPTIONS, "  ")}\n` +
    `  Each entry of plugins:\n` +
    `${rows(PLUGIN_OPTIONS, "    ")}\n`
  );
}
