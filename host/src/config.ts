/**
 * Plugin configuration: what the application (or the CLI's YAML file) says
 * about each plugin, validated here, with the defaults filled in.
 */
import { PlugwireError } from "@plugwire/proto";

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
  /** Executable to run. */
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

/** The largest maxInFlightBytes: SAFE_IN_FLIGHT_BYTES of the delivery channel. */
export const MAX_IN_FLIGHT_BYTES = 128 * 1024;

export type ResolvedPluginConfig = Required<Omit<PluginConfig, "cwd">> & { cwd: string | undefined };

export const PLUGIN_DEFAULTS = {
  args: [],
  env: {},
  config: {},
  capabilities: [],
  restart: "permanent",
  handshakeTimeoutMs: 10_000,
  shutdownTimeoutMs: 5_000,
  killGraceMs: 2_000,
  maxRestarts: 5,
  restartWindowMs: 60_000,
  backoffInitialMs: 100,
  backoffMaxMs: 30_000,
  backoffResetMs: 60_000,
  healthIntervalMs: 5_000,
  healthTimeoutMs: 1_000,
  healthFailures: 3,
  ackTimeoutMs: 300_000,
  maxInFlight: 4_096,
  maxQueued: 10_000,
  overflow: "reject",
  maxBatch: 128,
  maxInFlightBytes: 128 * 1024,
  maxBatchBytes: 1024 * 1024,
  coalesceMs: 1,
  maxReplayPayloads: 100_000,
  maxReplayBytes: 64 * 1024 * 1024,
  maxLogLineBytes: 16 * 1024,
  maxLogLinesPerSecond: 1_000,
  hostLookupsPerSecond: 10_000,
  hostSendsPerSecond: 10_000,
  maxWatchPeersStreams: 16,
  maxWatchPeersBacklog: 8_192,
  maxHostCallBytes: 32 * 1024 * 1024,
} as const satisfies Omit<ResolvedPluginConfig, "name" | "command" | "cwd">;

function invalid(name: string, message: string): PlugwireError {
  return new PlugwireError("invalid_config", `plugin '${name}': ${message}`, { plugin: name });
}

/** Validates one plugin config and fills in defaults. */
export function resolvePluginConfig(input: PluginConfig): ResolvedPluginConfig {
  const name = input.name;
  if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new PlugwireError("invalid_config", `plugin name ${JSON.stringify(name)} must be 1-64 characters of [A-Za-z0-9._-]`);
  }
  if (typeof input.command !== "string" || input.command.length === 0) throw invalid(name, "'command' is required");
  const resolved: ResolvedPluginConfig = { ...PLUGIN_DEFAULTS, ...stripUndefined(input), cwd: input.cwd } as ResolvedPluginConfig;
  for (const c of resolved.capabilities) {
    if (!CAPABILITIES.includes(c)) throw invalid(name, `unknown capability '${c}' (use ${CAPABILITIES.join(", ")})`);
  }
  if (!["permanent", "transient", "temporary"].includes(resolved.restart)) {
    throw invalid(name, `restart must be permanent, transient or temporary, not '${resolved.restart}'`);
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
  return resolved;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Validates a whole plugin list: unique names. */
export function resolvePlugins(plugins: readonly PluginConfig[]): ResolvedPluginConfig[] {
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
