/**
 * One supervised plugin: its launches, its state machine, restarts under
 * policy, health checks, the shutdown ladder, and its delivery channel.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import {
  Capability as WireCapability,
  ERROR_DETAIL_TRAILER,
  MAX_ERROR_TEXT_BYTES,
  MAX_SDK_FIELD_LENGTH,
  PLUGIN_NAME_PATTERN,
  PlugwireError,
  describeProblems,
  health,
  quote,
  truncateText,
  type DeliverRequest,
  type DeliverResponse,
  type DescribeResponse,
  type Effect,
} from "@plugwire/proto";
import type { Capability, ResolvedPluginConfig } from "../config.js";
import { DeliveryChannel, type DeadLetter, type DispatchOptions, type Entry } from "../delivery/channel.js";
import type { HostEvents, PluginState } from "../events.js";
import { describeExit, launchPlugin, type ExitInfo, type PluginProcess } from "../launch/spawn.js";
import { PinMismatchError } from "../launch/pin.js";
import { attachPlugin, type AttachedProcess } from "../launch/attach.js";
import { socketFileName } from "../launch/rundir.js";
import type { HostMetrics } from "../metrics.js";
import type { HostPorts, NodeId } from "../ports.js";
import type { Caller } from "../services/host-service.js";
import { explainFsError, statefulIdProblem, type SnapshotRecord, type SnapshotStore } from "../snapshot/store.js";
import { restoreSnapshot, takeSnapshot } from "../snapshot/transfer.js";
import { dialPlugin, type DialedPlugin } from "../transport/dial.js";
import { RestartWindow, backoffDelayMs, shouldRestart, type EndReason } from "./policy.js";
import type { Semaphore } from "./semaphore.js";
import { WarmStandby, type Spare, type StandbyStatus } from "./standby.js";
import { WarnLimiter } from "./warn-limiter.js";

function launchStderrTail(lines: readonly string[]): string {
  return lines.length === 0 ? " It wrote nothing to stderr." : `\nLast stderr lines:\n  ${lines.join("\n  ")}`;
}

const WIRE_CAPABILITY: Record<Capability, WireCapability> = {
  peers: WireCapability.PEERS,
  control: WireCapability.CONTROL,
  identity: WireCapability.IDENTITY,
};

/** Deadline of Describe, Start and PeerForgotten calls. */
const CONTROL_CALL_DEADLINE_MS = 10_000;
/** How long a plugin whose Deliver stream broke may take to exit on its own. */
const STREAM_BROKEN_GRACE_MS = 250;
/** Wait after an early snapshot that failed or did not trim the replay buffer; it doubles up to the max. */
const EARLY_SNAPSHOT_RETRY_MS = 1_000;
const EARLY_SNAPSHOT_MAX_BACKOFF_MS = 30_000;
/** Deadline of a Snapshot or Restore stream. */
const SNAPSHOT_DEADLINE_MS = 120_000;
/** A plugin that acks nothing for this long (or half its ackTimeoutMs, if less) gets one "busy" warning per stall. */
const BUSY_WARN_MS = 30_000;

export interface RunnerContext {
  runDir: () => string;
  /** Re-creates the run dir and host.sock if something removed them; called before every spawn. */
  ensureRunDir?: () => Promise<void>;
  hostAddress: () => string;
  dataDir: string;
  logger: Logger;
  store: SnapshotStore;
  maxSnapshotBytes: number;
  ports: HostPorts;
  metrics: HostMetrics;
  emit: <K extends keyof HostEvents>(event: K, ...args: HostEvents[K]) => void;
  /** Bounds how many plugins are between spawn and handshake at once. */
  launchSlots: Semaphore;
  registerToken(token: string, caller: Caller): void;
  unregisterToken(token: string): void;
  /**
   * Claims a stateful id for this plugin; returns the name of the plugin
   * that already holds it, if another does. A plugin's claim moves with the
   * id its latest Describe declared.
   */
  claimStatefulId?(plugin: string, id: string): string | undefined;
  /** True when `name` is the configured name of a plugin of this host. */
  isPluginName?: (name: string) => boolean;
}

/** The current launch of a plugin. */
interface Launch {
  id: number;
  token: string;
  /** A spawned process, or the connection to an attached plugin (launch/attach.ts). */
  proc: PluginProcess | AttachedProcess;
  conn: DialedPlugin;
  deliver?: ReturnType<DialedPlugin["plugin"]["deliver"]>;
  ended: boolean;
  /** Set once the launch is ready; until then launchOnce owns its failure. */
  ready: boolean;
  /** The Deliver stream broke; the launch is about to end. */
  streamBroken?: boolean;
  /** PLUGWIRE_INSTANCE_ID of this launch; its socket is `${instanceId}.sock` in the run dir. */
  instanceId: string;
  /** An ack past what was sent was logged (once per launch). */
  warnedAckBeyondSent?: boolean;
  /** An outcome with both an error and effects was logged (once per launch). */
  warnedErrorWithEffects?: boolean;
  /** Handler error texts over MAX_ERROR_TEXT_BYTES cut on this launch (logged once per launch). */
  truncatedErrors?: number;
  /** Set when the host ends the launch on purpose (stop, restart, hang). */
  endReason?: EndReason;
  /** While a hot upgrade holds delivery: what the channel wrote, not yet sent (upgrade section). */
  held?: DeliverRequest[];
}

/** The executable and arguments a plugin runs. */
export interface Build {
  command: string;
  args: readonly string[];
}

/** What a hot upgrade (`host.upgrade`) did. */
export interface UpgradeResult {
  plugin: string;
  /** The pid of the build that served before, now shut down; and of the new one. */
  fromPid: number;
  toPid: number;
  /** How long delivery was held: from holding new payloads to the new build's Deliver stream (ms). */
  pauseMs: number;
  /** The seq the state handed over covers (0 for a stateless plugin). */
  appliedSeq: number;
  command: string;
  args: readonly string[];
}

/** What `status()` reports about a plugin. */
export interface PluginStatus {
  name: string;
  state: PluginState;
  pid: number | undefined;
  restarts: number;
  queued: number;
  inFlight: number;
  lastAcked: number;
  lastExit: string | undefined;
  lastError: string | undefined;
  kinds: readonly string[];
  /** Claimed kinds that a plugin listed before this one owns (first claim wins); set by the host. */
  shadowedKinds: readonly ShadowedKind[];
  /** The name the plugin's Describe returned, when it is not its configured name. */
  describedAs: string | undefined;
  stateful: boolean;
  deadLetters: number;
  /** Unix ms the running launch became ready; undefined when no launch is running (for the dashboard's uptime). */
  readySince?: number;
  /** Payloads acked but not yet covered by a stored snapshot, and their bytes (the replay buffer). */
  replay?: number;
  replayBytes?: number;
  /** The warm standby spare (docs/supervision.md, "Warm standby"); state "off" when none is kept. */
  standby: StandbyStatus;
  /** Attached plugins (config `attach`): where the host dials them, and the state of that connection. */
  remote?: { address: string; connection: string };
  /** Where the time of the last launch that became ready went (docs/supervision.md, "Launch timings"). */
  lastLaunch?: LaunchTimings;
}

/**
 * How long each phase of a launch took, in ms, from when the launch began
 * (after any restart backoff) to ready. `process` is spawn to handshake line
 * (or, attached, dial and TLS; 0 for a promoted warm standby spare).
 */
export interface LaunchTimings {
  totalMs: number;
  processMs: number;
  describeMs: number;
  startMs: number;
  restoreMs: number;
  /** Opening the Deliver stream and queueing the replay (the replay itself is acked later). */
  deliverMs: number;
  /** Payloads replayed and redelivered to the launch. */
  replayed: number;
  /** Whether a warm standby spare was promoted. */
  spare: boolean;
}

/** A kind a plugin claims that an earlier plugin owns. */
export interface ShadowedKind {
  kind: string;
  /** The plugin that gets the kind's payloads. */
  owner: string;
}

export class PluginRunner {
  readonly channel: DeliveryChannel;
  private state: PluginState = "stopped";
  private launch: Launch | undefined;
  private launches = 0;
  private restarts = 0;
  private attempt = 0;
  private readyAt = 0;
  private readonly window: RestartWindow;
  private restartTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private healthFailures = 0;
  /** lastProgressAt of the stall a busy warning was logged for (one warning per stall). */
  private busyWarnedFor = -1;
  private stopping = false;
  /**
   * Lifecycle operations (start, restart, stop, and the supervisor's own
   * relaunches) run one at a time, in the order they were asked for: two of
   * them interleaved could launch a second process while the first runs.
   */
  private lifecycle: Promise<unknown> = Promise.resolve();
  /** An operator restart that has not yet stopped the old launch; later requests join it. */
  private pendingRestart: Promise<void> | undefined;
  /** Counts stop requests: a start or restart asked for before one gives up. */
  private stopRequests = 0;
  /** Counts operator operations: a relaunch scheduled before one is dropped. */
  private operatorOps = 0;
  /** Aborts the spawn and handshake of the launch under way. */
  private launchAbort: AbortController | undefined;
  private lastExit: string | undefined;
  private lastError: string | undefined;
  private lastStderr: string[] = [];
  private lastLaunch: LaunchTimings | undefined;
  /** id, version, applied_seq and SHA-256 of the last snapshot this runner stored (background snapshots of the same state are not stored again). */
  private lastStoredDigest: string | undefined;
  private description: DescribeResponse | undefined;
  private resumed = false;
  private snapshotQueue: Promise<unknown> = Promise.resolve();
  private snapshotsPending = 0;
  private earlySnapshotRetryAt = 0;
  private earlySnapshotBackoffMs = 0;
  /** The seq through which the plugin's default state stands in, after an UnsupportedVersion reset; 0 if none. */
  private resetThrough = 0;
  private readonly log: Logger;
  /** Lines a plugin can trigger once per event are logged once, then summarised per interval. */
  private readonly limited: WarnLimiter;
  /** The warm standby spare, if one is kept (standby.ts). */
  private readonly standby: WarmStandby;
  /** Aborts the new build's spawn of a hot upgrade under way. */
  private upgradeAbort: AbortController | undefined;
  /** Builds a hot upgrade replaced, while they shut down. */
  private readonly retiring = new Set<Launch>();

  constructor(
    readonly config: ResolvedPluginConfig,
    private readonly ctx: RunnerContext,
  ) {
    this.log = ctx.logger.child({ plugin: config.name });
    this.limited = new WarnLimiter(this.log);
    this.window = new RestartWindow(config.maxRestarts, config.restartWindowMs);
    const labels = { plugin: config.name };
    // Once per ack message, not per payload: label hashing is costly on the hot path.
    const latency = ctx.metrics.latency.labels(labels);
    this.channel = new DeliveryChannel({
      plugin: config.name,
      maxInFlight: config.maxInFlight,
      maxInFlightBytes: config.maxInFlightBytes,
      maxBatchBytes: config.maxBatchBytes,
      maxQueued: config.maxQueued,
      maxQueuedBytes: config.maxQueuedBytes,
      overflow: config.overflow,
      maxBatch: config.maxBatch,
      maxDeadLetters: 1000,
      coalesceMs: config.coalesceMs,
      maxReplayPayloads: config.maxReplayPayloads,
      maxReplayBytes: config.maxReplayBytes,
      maxEffectsPerItem: config.maxEffectsPerItem,
      onReplayPressure: () => this.earlySnapshot(),
      onReplayFull: (full) => {
        if (full) {
          this.lastError =
            `replay buffer full (${this.channel.replayCount} payloads, ${this.channel.replayBufferBytes} bytes): ` +
            `snapshots do not advance past seq ${this.channel.trimmedThrough}, so new payloads wait`;
          this.log.error(
            { replay: this.channel.replayCount, bytes: this.channel.replayBufferBytes, trimmedThrough: this.channel.trimmedThrough },
            `plugin '${config.name}': its replay buffer reached twice its bound (maxReplayPayloads ${config.maxReplayPayloads}, ` +
              `maxReplayBytes ${config.maxReplayBytes}) because its snapshots do not cover the payloads it acked. ` +
              `New payloads wait (and overflow per its policy) until a snapshot trims the buffer. Check that its Snapshot reports the applied_seq of its state.`,
          );
        } else {
          this.log.info({ replay: this.channel.replayCount }, "replay buffer trimmed below its hard bound; new payloads flow again");
        }
      },
      performEffects: (entry, effects) => {
        if (!config.capabilities.includes("control")) {
          this.refuseEffects(entry, effects);
          return;
        }
        for (const effect of effects) {
          if (effect.effect.case !== "sendDirect") continue;
          const { peer, frame } = effect.effect.value;
          entry.onEffect?.({ type: "sendDirect", peer, frame, performed: true });
          // The application's port may throw or reject; either way the host
          // logs it and carries on (sendDirect is best-effort).
          Promise.resolve()
            .then(() => ctx.ports.control.sendDirect(peer, frame))
            .catch((e: unknown) => this.limited.error("control-port", { seq: entry.seq, err: String(e) }, "control port failed to send a plugin's effect"));
        }
      },
      onHandlerError: (entry, message) => {
        ctx.metrics.handlerErrors.inc(labels);
        this.limited.warn("handler-failed", { seq: entry.seq, kind: entry.kind, error: message }, "payload handler failed");
      },
      onAcked: (_count, oldestEnqueuedAt) => {
        latency.observe((performance.now() - oldestEnqueuedAt) / 1000);
      },
      onOverflow: (policy) => {
        ctx.metrics.overflow.inc({ ...labels, policy });
        this.limited.warn(
          `overflow-${policy}`,
          { policy, queued: this.channel.queued },
          policy === "reject"
            ? `plugin '${config.name}' queue full (maxQueued ${config.maxQueued}, maxQueuedBytes ${config.maxQueuedBytes}): payloads are rejected with queue_full until it takes more`
            : `plugin '${config.name}' queue full (maxQueued ${config.maxQueued}, maxQueuedBytes ${config.maxQueuedBytes}): the oldest queued payloads are dropped (overflow: drop-oldest)`,
        );
      },
      onDeadLetter: (letter) => {
        ctx.metrics.deadLetters.inc(labels);
        this.log.error({ seq: letter.seq, kind: letter.kind, reason: letter.reason }, "payload moved to dead letters");
        ctx.emit("plugin:dead-letter", { plugin: config.name, letter });
      },
      onEffectsRefused: (entry, count, error) => {
        ctx.metrics.handlerErrors.inc(labels);
        this.limited.warn("too-many-effects", { seq: entry.seq, kind: entry.kind, effects: count }, error.message);
      },
      onIgnoredAck: (what, detail) => {
        this.limited.warn(
          `ignored-ack-${what}`,
          detail,
          what === "backwards"
            ? `plugin '${config.name}' sent an ack through seq ${detail.claimed} after acking through ${detail.ackedThrough} on the same stream; ` +
                `an ack that does not advance is ignored, with its ${detail.outcomes} outcome(s) (acks never go down: docs/protocol.md §8)`
            : `plugin '${config.name}' sent ${detail.outcomes} outcome(s) (the first for seq ${detail.firstSeq}) that its ack through seq ${detail.claimed} does not newly cover; ` +
                `they are ignored: an outcome must travel with the ack that first covers its item (docs/protocol.md §8)`,
        );
      },
      onAckBeyondSent: (claimed, sent) => {
        const launch = this.launch;
        if (!launch || launch.warnedAckBeyondSent) return;
        launch.warnedAckBeyondSent = true;
        this.log.warn(
          { ackedThrough: claimed, sentThrough: sent, instanceId: launch.instanceId },
          `plugin '${config.name}' acked through seq ${claimed} on its Deliver stream, but this launch was sent items only up to seq ${sent}; ` +
            `the ack counts only through ${sent}. An ack may cover only items its stream carried: after a Restore or on a new stream, ` +
            `ack nothing until an item arrives (docs/protocol.md §8). Logged once per launch.`,
        );
      },
    });
    ctx.metrics.setState(config.name, "stopped");
    this.standby = this.makeStandby();
  }

  get name(): string {
    return this.config.name;
  }

  get currentState(): PluginState {
    return this.state;
  }

  /** Payload kinds from the latest Describe. */
  get kinds(): readonly string[] {
    return this.description?.payloadKinds ?? [];
  }

  get statefulId(): string | undefined {
    return this.description?.stateful?.id;
  }

  status(): PluginStatus {
    return {
      name: this.name,
      state: this.state,
      pid: this.launch && !this.launch.ended ? this.launch.proc.pid : undefined,
      restarts: this.restarts,
      queued: this.channel.queued,
      inFlight: this.channel.inFlight,
      lastAcked: this.channel.lastAcked,
      lastExit: this.lastExit,
      lastError: this.lastError,
      kinds: this.kinds,
      shadowedKinds: [],
      describedAs: this.description && this.description.name !== this.name ? this.description.name : undefined,
      stateful: this.statefulId !== undefined,
      deadLetters: this.channel.listDeadLetters().length,
      readySince: this.state === "ready" && this.readyAt > 0 ? this.readyAt : undefined,
      replay: this.channel.replayCount,
      replayBytes: this.channel.replayBufferBytes,
      standby: this.standby.status(),
      ...(this.lastLaunch ? { lastLaunch: { ...this.lastLaunch } } : {}),
      ...(this.config.attach ? { pid: undefined, remote: this.remoteStatus(this.config.attach.address) } : {}),
    };
  }

  /** The connection of an attached plugin, for status(). */
  private remoteStatus(address: string): { address: string; connection: string } {
    const proc = this.launch?.proc;
    const connection = proc && "connectionState" in proc ? proc.connectionState() : "disconnected";
    return { address, connection: this.state === "ready" && connection === "connecting" ? "connected" : connection };
  }

  /**
   * First start: resolves when ready, rejects with the launch error. Runs
   * after any lifecycle operation already under way.
   */
  start(): Promise<void> {
    this.operatorOps++;
    const stops = this.stopRequests;
    return this.enqueue(() => this.startNow(stops, "start"));
  }

  /** Runs `op` once every lifecycle operation asked for before it has finished. */
  private enqueue<T>(op: () => Promise<T>): Promise<T> {
    const run = this.lifecycle.then(op);
    this.lifecycle = run.catch(() => undefined);
    return run;
  }

  private stoppedBefore(what: "start" | "restart"): PlugwireError {
    return new PlugwireError(
      "plugin_unavailable",
      `plugin '${this.name}' was not ${what === "start" ? "started" : "restarted"}: a stop (host.stop() or stopPlugin('${this.name}')) was requested ` +
        `before the ${what} finished. Call host.restart('${this.name}') to start it again.`,
      { plugin: this.name },
    );
  }

  /** Launches the plugin from `starting`; `stops` is stopRequests when the operation was asked for. */
  private async startNow(stops: number, what: "start" | "restart"): Promise<void> {
    if (this.stopRequests !== stops) throw this.stoppedBefore(what);
    this.stopping = false;
    this.setState("starting");
    try {
      await this.launchOnce();
    } catch (e) {
      // Stopped while launching: the launch was aborted, the plugin did not fail.
      if (this.stopRequests !== stops) throw this.stoppedBefore(what);
      const error = PlugwireError.from(e, "plugin_unavailable", this.name);
      this.lastError = error.message;
      this.setState("failed", error.message);
      throw error;
    }
  }

  /** Queues a payload for this plugin. */
  dispatch(src: NodeId, kind: string, body: Uint8Array, options?: DispatchOptions): Promise<void> {
    if (this.state === "failed" || this.state === "stopped") return Promise.reject(this.unavailableError(kind));
    return this.channel.dispatch(src, kind, body, options);
  }

  /** Queues many payloads for this plugin as one call (Host.dispatchMany). */
  dispatchMany(src: NodeId, kind: string, bodies: readonly Uint8Array[], options?: DispatchOptions): Promise<void> {
    if (this.state === "failed" || this.state === "stopped") return Promise.reject(this.unavailableError(kind));
    return this.channel.dispatchMany(src, kind, bodies, options);
  }

  private unavailableError(kind: string): PlugwireError {
    if (this.state === "failed") {
      const tail = this.lastStderr.length ? `\nLast stderr lines:\n  ${this.lastStderr.join("\n  ")}` : "";
      return new PlugwireError(
        "plugin_failed",
        `plugin '${this.name}' has failed (${this.lastError ?? "unknown reason"}), so payload kind '${kind}' cannot be delivered. ` +
          `Fix the plugin and restart it with host.restart('${this.name}') or \`plugwire restart ${this.name}\`.${tail}`,
        { plugin: this.name },
      );
    }
    return new PlugwireError(
      "plugin_unavailable",
      `plugin '${this.name}' is stopped, so payload kind '${kind}' cannot be delivered; start the host or restart the plugin`,
      { plugin: this.name },
    );
  }

  /**
   * Tells the plugin a peer was forgotten, as a sequenced item of its
   * Deliver stream: resolves once the plugin acked it. A restarting plugin
   * is told once it is back; a stopped or failed one is not told.
   */
  peerForgotten(peer: NodeId): Promise<void> {
    if (this.state === "failed" || this.state === "stopped") {
      const why = this.state === "failed" ? `has failed (${this.lastError ?? "unknown reason"})` : "is stopped";
      return Promise.reject(
        new PlugwireError(
          this.state === "failed" ? "plugin_failed" : "plugin_unavailable",
          `plugin '${this.name}' ${why}, so it was not told about the forgotten peer; ` +
            `it will hold state about that peer until it is restarted and the peer is forgotten again`,
          { plugin: this.name },
        ),
      );
    }
    return this.channel.forget(peer);
  }

  /** A snapshot to trim a replay buffer past its bounds; backs off while snapshots do not trim it. */
  private earlySnapshot(): void {
    const now = Date.now();
    if (this.snapshotsPending > 0 || this.state !== "ready" || now < this.earlySnapshotRetryAt) return;
    this.log.info({ replay: this.channel.replayCount, bytes: this.channel.replayBufferBytes }, "replay buffer is full; snapshotting early to trim it");
    const trimmedBefore = this.channel.trimmedThrough;
    const backOff = (why: string): void => {
      this.earlySnapshotBackoffMs = Math.min(EARLY_SNAPSHOT_MAX_BACKOFF_MS, Math.max(EARLY_SNAPSHOT_RETRY_MS, this.earlySnapshotBackoffMs * 2));
      this.earlySnapshotRetryAt = Date.now() + this.earlySnapshotBackoffMs;
      this.log.error({ retryInMs: this.earlySnapshotBackoffMs }, `${why}; next early snapshot in ${this.earlySnapshotBackoffMs} ms at the earliest`);
    };
    this.snapshot().then(
      (record) => {
        // Progress is a snapshot that trimmed something; a busy plugin may
        // be past the bound again already, and then snapshots again at once.
        if (this.channel.trimmedThrough > trimmedBefore) {
          this.earlySnapshotBackoffMs = 0;
          return;
        }
        backOff(
          `plugin '${this.name}': an early snapshot covered seq ${record?.appliedSeq ?? "?"}, no further than the last one, while ${this.channel.replayCount} acked payloads ` +
            `are kept for replay after it: its snapshots do not advance with the payloads it handles`,
        );
      },
      (e: unknown) => backOff(`early snapshot failed: ${String(e)}`),
    );
  }

  /**
   * Snapshots the plugin into the store and trims its replay buffer. Returns
   * undefined for a plugin that is not stateful.
   */
  snapshot(onChecked?: (record: SnapshotRecord) => void, background = false): Promise<SnapshotRecord | undefined> {
    // One at a time: two overlapping snapshots could store the older state as
    // the newest generation after the replay buffer was trimmed past it.
    this.snapshotsPending++;
    const next = this.snapshotQueue.then(() => this.snapshotNow(onChecked, background)).finally(() => {
      this.snapshotsPending--;
    });
    this.snapshotQueue = next.catch(() => undefined);
    return next;
  }

  /** A background snapshot: skipped (undefined) when one is already queued or running; an unchanged state is not stored again. */
  snapshotIfIdle(): Promise<SnapshotRecord | undefined> {
    return this.snapshotsPending > 0 ? Promise.resolve(undefined) : this.snapshot(undefined, true);
  }

  /** `onChecked`: called with the record once it passed every check, as it is being stored (a hot upgrade restores it meanwhile). */
  private async snapshotNow(onChecked?: (record: SnapshotRecord) => void, background = false): Promise<SnapshotRecord | undefined> {
    const id = this.statefulId;
    if (id === undefined) return undefined;
    const launch = this.launch;
    if (!launch || launch.ended || this.state !== "ready") {
      throw new PlugwireError("snapshot_failed", `plugin '${this.name}' is ${this.state}; only a ready plugin can be snapshotted`, { plugin: this.name });
    }
    const labels = { plugin: this.name };
    try {
      // The snapshot streams back on the connection the payloads use: keep
      // the window small while it does (see SAFE_IN_FLIGHT_BYTES).
      const deadLettersBefore = this.channel.deadLettersTotal;
      const window = this.channel.beginSnapshot(SNAPSHOT_DEADLINE_MS);
      let record: SnapshotRecord;
      try {
        if (!(await window.ready)) this.log.warn("payloads in flight did not drain below the safe bound before a snapshot; taking it anyway");
        // The header is checked as it arrives (id, version, applied_seq,
        // size), and the bytes as they come: a lying stream is cut off at
        // once, never buffered past its header's size or maxSnapshotBytes.
        record = await takeSnapshot(launch.conn.plugin, this.name, this.ctx.maxSnapshotBytes, SNAPSHOT_DEADLINE_MS, {
          id,
          versions: this.description?.stateful?.snapshotVersions ?? [],
          highestSeq: () => this.channel.highestSeq,
        });
      } finally {
        window.end();
      }
      // The plugin acks before it snapshots; wait for those acks so that the
      // stored state never covers a payload whose effects the host lacks.
      if (!(await this.channel.waitForAck(record.appliedSeq, SNAPSHOT_DEADLINE_MS))) {
        throw new PlugwireError(
          "snapshot_failed",
          `plugin '${this.name}' snapshotted through seq ${record.appliedSeq} but never acked it; the snapshot was discarded`,
          { plugin: this.name },
        );
      }
      // A crash while the snapshot was under way can park an item it covers
      // (the plugin applied it but its ack was lost): its dispatch was
      // rejected, so a state that includes it must not be stored.
      const parked = this.channel.lowestParkedSince(deadLettersBefore);
      if (parked !== undefined && parked <= record.appliedSeq) {
        throw new PlugwireError(
          "snapshot_failed",
          `plugin '${this.name}' snapshotted through seq ${record.appliedSeq}, but seq ${parked} was parked as a dead letter meanwhile ` +
            `(its dispatch was rejected); the snapshot was discarded. Plugins must ack through applied_seq before answering Snapshot.`,
          { plugin: this.name },
        );
      }
      // After an UnsupportedVersion reset, a snapshot of the default state
      // (applied_seq below the reset point) covers everything through it.
      if (record.appliedSeq < this.resetThrough) record = { ...record, appliedSeq: this.resetThrough };
      // A launch still replaying can report a state older than the snapshot
      // already stored (a relaunch restored an older record while a newer
      // one was being saved): storing it would make the newest generation
      // go back past what the replay buffer still holds.
      if (record.appliedSeq < this.channel.trimFloor) {
        this.log.info(
          { appliedSeq: record.appliedSeq, storedThrough: this.channel.trimFloor },
          "snapshot not stored: the plugin is still replaying and its state is older than the stored snapshot",
        );
        return record;
      }
      // A background snapshot of the very state stored last is not stored
      // again: the older generations keep their history (an idle plugin
      // would otherwise fill every generation with one state).
      const digest = `${record.id}\0${record.version}\0${record.appliedSeq}\0${createHash("sha256").update(record.bytes).digest("hex")}`;
      if (background && digest === this.lastStoredDigest) {
        this.ctx.metrics.snapshots.inc({ ...labels, result: "unchanged" });
        this.log.debug({ id, appliedSeq: record.appliedSeq }, "snapshot unchanged since the last one stored; not stored again");
        return record;
      }
      onChecked?.(record);
      await this.ctx.store.save(record, this.name);
      this.lastStoredDigest = digest;
      this.channel.trimReplay(record.appliedSeq);
      this.ctx.metrics.snapshots.inc({ ...labels, result: "ok" });
      this.ctx.emit("snapshot:taken", { plugin: this.name, id, version: record.version, appliedSeq: record.appliedSeq, sizeBytes: record.bytes.byteLength });
      this.log.info({ id, version: record.version, appliedSeq: record.appliedSeq, bytes: record.bytes.byteLength }, "snapshot saved");
      return record;
    } catch (e) {
      this.ctx.metrics.snapshots.inc({ ...labels, result: "failed" });
      throw this.checkErrorDetail(PlugwireError.from(e, "snapshot_failed", this.name));
    }
  }

  /**
   * Operator restart: snapshot (if stateful and ready), stop through the
   * ladder, start again; also brings a failed plugin back. Runs after any
   * lifecycle operation already under way. Restarts asked for before this one
   * has stopped the old launch join it rather than restarting once more.
   */
  restart(): Promise<void> {
    if (this.pendingRestart) return this.pendingRestart;
    this.operatorOps++;
    const stops = this.stopRequests;
    const restart = this.enqueue(async () => {
      try {
        if (this.stopRequests !== stops) throw this.stoppedBefore("restart");
        if (this.state === "ready" && this.statefulId !== undefined) {
          await this.snapshot().catch((e: unknown) => this.log.warn({ err: String(e) }, "snapshot before restart failed"));
        }
        await this.stopNow(undefined);
      } finally {
        // From here on a new launch is coming: a later request restarts again.
        this.pendingRestart = undefined;
      }
      this.window.reset();
      this.attempt = 0;
      await this.startNow(stops, "restart");
    });
    this.pendingRestart = restart;
    return restart;
  }

  /**
   * The first half of a stop, effective at once: no relaunch happens any
   * more, a start or restart asked for earlier gives up, and a launch under
   * way (spawn, handshake, Describe, Start, Restore) is killed. `stop()` does
   * this itself; `host.stop()` calls it before its drain and final snapshot.
   */
  prepareStop(): void {
    this.stopping = true;
    this.stopRequests++;
    this.operatorOps++;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    void this.standby.close();
    this.upgradeAbort?.abort();
    this.launchAbort?.abort();
    const launch = this.launch;
    if (launch && !launch.ready && !launch.ended) {
      this.log.info("a stop was requested while the plugin was starting; killing that launch");
      launch.proc.signalGroup("SIGKILL");
    }
  }

  /**
   * Stops the plugin through the shutdown ladder, once the lifecycle
   * operations asked for before have finished or given up (see prepareStop).
   * `snapshot`: snapshot a ready stateful plugin first. `deadline` (a
   * performance.now() time): the ladder shrinks to end by then, and if an
   * earlier operation still holds the plugin at that time its process group
   * is killed, so the stop ends by the deadline regardless.
   */
  stop(options: { deadline?: number; snapshot?: boolean } = {}): Promise<void> {
    this.prepareStop();
    let begun = false;
    const op = this.enqueue(async () => {
      begun = true;
      if (options.snapshot && this.state === "ready" && this.statefulId !== undefined) {
        await this.snapshot().catch((e: unknown) => this.log.warn({ err: String(e) }, "snapshot before stop failed"));
      }
      await this.stopNow(options.deadline);
    });
    const { deadline } = options;
    if (deadline === undefined) return op;
    const timer = setTimeout(() => {
      const launch = this.launch;
      if (begun || !launch || launch.ended) return;
      this.log.error(
        `plugin '${this.name}' was still held by an earlier restart or start when its stop deadline passed; killing its process group`,
      );
      launch.endReason ??= "exit";
      launch.proc.signalGroup("SIGKILL");
    }, Math.max(0, deadline - performance.now()));
    return op.finally(() => clearTimeout(timer));
  }

  /** The shutdown ladder: Shutdown RPC, SIGTERM to the group, SIGKILL; shrunk to end by `deadline` if given. */
  private async stopNow(deadline: number | undefined): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.stopHealth();
    await this.standby.close();
    // Builds a hot upgrade replaced and that are still shutting down go now.
    for (const old of this.retiring) old.proc.signalGroup("SIGKILL");
    await Promise.all([...this.retiring].map((old) => old.proc.exited));
    const launch = this.launch;
    if (launch && !launch.ended) {
      launch.endReason = "exit";
      const { proc } = launch;
      let shutdownMs = this.config.shutdownTimeoutMs;
      let graceMs = this.config.killGraceMs;
      if (deadline !== undefined) {
        // Both steps shrink in proportion, so SIGKILL comes by the deadline.
        const left = Math.max(0, Math.floor(deadline - performance.now()));
        const total = shutdownMs + graceMs;
        if (total > left) {
          shutdownMs = total === 0 ? 0 : Math.floor((left * shutdownMs) / total);
          graceMs = left - shutdownMs;
          this.log.info({ shutdownMs, graceMs }, "shutdown ladder shortened to end by the host's stop deadline");
        }
      }
      // One deadline for the Shutdown RPC and the exit that should follow it.
      const shutdownDeadline = performance.now() + shutdownMs;
      const exited = proc.exited.then(() => true);
      const within = (ms: number): Promise<boolean> =>
        Promise.race([exited, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]);
      if (shutdownMs > 0) {
        try {
          await launch.conn.plugin.shutdown({ deadlineMs: shutdownMs }, { deadlineMs: shutdownMs });
        } catch (e) {
          this.log.warn({ err: String(e) }, "Shutdown RPC failed; escalating to SIGTERM");
        }
      }
      if (!(await within(Math.max(0, shutdownDeadline - performance.now())))) {
        proc.signalGroup("SIGTERM");
        if (!(await within(graceMs))) {
          this.log.warn("plugin ignored SIGTERM; sending SIGKILL to its process group");
          proc.signalGroup("SIGKILL");
        }
      }
      await exited;
    }
    if (launch) await this.endLaunch(launch);
    // Counts of aggregated warnings still waiting for their summary.
    this.limited.flush();
    if (this.state !== "failed") this.setState("stopped");
  }

  /** Rejects every pending payload; used when the host goes away. */
  failPending(reason: string): void {
    this.channel.failAll(
      (entry) =>
        new PlugwireError("plugin_unavailable", `payload of kind '${entry.kind}' for plugin '${this.name}' was not acked: ${reason}`, {
          plugin: this.name,
        }),
    );
  }

  listDeadLetters(): readonly DeadLetter[] {
    return this.channel.listDeadLetters();
  }

  private setState(state: PluginState, reason?: string): void {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    // A failed or stopped plugin keeps no spare.
    if (state === "failed" || state === "stopped") void this.standby.close();
    this.ctx.metrics.setState(this.name, state);
    this.log.info({ state, previous, reason }, `plugin ${state}`);
    this.ctx.emit("plugin:state", { plugin: this.name, state, previous, reason });
  }

  private async launchOnce(): Promise<void> {
    const began = performance.now();
    const dataDir = join(this.ctx.dataDir, "plugins", this.name);
    this.makeDataDir(dataDir);
    // A warm standby spare, if one waits: spawned, handshaken and described already.
    // (An attached plugin keeps none: its process is not the host's to spawn.)
    const attach = this.config.attach;
    const spare = this.stopping || attach ? undefined : this.standby.take(this.config.command, this.config.args);
    const id = spare?.id ?? ++this.launches;
    const instanceId = spare?.instanceId ?? `${this.name}-${id}`;
    const token = spare?.token ?? randomBytes(24).toString("base64url");
    const proc: PluginProcess | AttachedProcess = spare?.proc ?? (attach ? await this.attachProcess(attach, token) : await this.spawnProcess(instanceId, token));
    const conn = spare?.conn ?? ("conn" in proc ? proc.conn : dialPlugin(proc.handshake, token, this.name));
    if (spare) this.log.info({ pid: proc.pid, instanceId }, "promoting the warm standby spare");
    await this.activate({ id, instanceId, token, proc, conn, dataDir, described: spare?.description, began, spare: spare !== undefined });
  }

  /**
   * Dials an attached plugin (config `attach`, launch/attach.ts) within a
   * launch slot: the connection stands in for the process, and losing it is
   * a crash (docs/remote-plugins.md).
   */
  private async attachProcess(attach: NonNullable<ResolvedPluginConfig["attach"]>, token: string): Promise<AttachedProcess> {
    const abort = new AbortController();
    this.launchAbort = abort;
    const releaseSlot = await this.ctx.launchSlots.acquire();
    if (this.stopping) abort.abort(); // stopped while waiting for the slot: nothing is dialled
    return attachPlugin(this.name, attach, { token, connectTimeoutMs: this.config.handshakeTimeoutMs, logger: this.log, signal: abort.signal }).finally(() => {
      releaseSlot();
      if (this.launchAbort === abort) this.launchAbort = undefined;
    });
  }

  /**
   * Spawns a process of the plugin and waits for its handshake, within a
   * launch slot: at most a few plugins start at once (module loading is
   * CPU-bound), and the handshake timeout runs from when this launch got its
   * slot, so a large host on a small machine does not time out plugins that
   * merely waited. `signal`: aborts it (default: the runner's launchAbort).
   */
  private async spawnProcess(instanceId: string, token: string, signal?: AbortSignal, build?: Build): Promise<PluginProcess> {
    let abort: AbortController | undefined;
    if (!signal) {
      abort = new AbortController();
      this.launchAbort = abort;
      signal = abort.signal;
    }
    const releaseSlot = await this.ctx.launchSlots.acquire();
    if (this.stopping) abort?.abort(); // stopped while waiting for the slot: launchPlugin spawns nothing
    try {
      await this.ctx.ensureRunDir?.();
    } catch (e) {
      releaseSlot();
      throw e;
    }
    return launchPlugin(
      {
        name: this.name,
        command: build?.command ?? this.config.command,
        args: build?.args ?? this.config.args,
        env: this.config.env,
        cwd: this.config.cwd,
        limits: this.config.limits,
        sha256: this.config.sha256,
        sha256File: this.config.sha256File,
      },
      {
        runDir: this.ctx.runDir(),
        hostAddress: this.ctx.hostAddress(),
        token,
        tokenVia: this.config.tokenVia,
        instanceId,
        handshakeTimeoutMs: this.config.handshakeTimeoutMs,
        maxLogLineBytes: this.config.maxLogLineBytes,
        maxLogLinesPerSecond: this.config.maxLogLinesPerSecond,
        stderrTailLines: 20,
        logger: this.log,
        onLog: (line) =>
          this.ctx.emit("plugin:log", { plugin: this.name, level: line.level, msg: line.msg, stream: line.stream, fields: line.fields, truncated: line.truncated }),
        onLogDropped: (count) => this.ctx.metrics.logLinesDropped.inc({ plugin: this.name }, count),
        signal,
      },
    ).finally(() => {
      releaseSlot();
      if (abort && this.launchAbort === abort) this.launchAbort = undefined;
    });
  }

  /**
   * Makes a handshaken process the serving launch: Describe (unless a spare
   * already answered it), Start, Restore, the Deliver stream, ready.
   */
  private async activate(a: {
    id: number;
    instanceId: string;
    token: string;
    proc: PluginProcess | AttachedProcess;
    conn: DialedPlugin;
    dataDir: string;
    described: DescribeResponse | undefined;
    /** performance.now() when the launch began, for its timings. */
    began: number;
    spare: boolean;
  }): Promise<void> {
    const { id, instanceId, token, proc, conn, dataDir } = a;
    const marks = { process: performance.now(), describe: 0, start: 0, restore: 0, deliver: 0 };
    const launch: Launch = { id, token, proc, conn, ended: false, ready: false, instanceId };
    this.launch = launch;
    // A stop asked for just as the handshake completed: end this launch too.
    if (this.stopping) proc.signalGroup("SIGKILL");
    this.ctx.registerToken(token, this.callerFor());
    void proc.exited.then((exit) => this.onExit(launch, exit));
    // What the launch was waiting for, should the plugin exit meanwhile.
    let phase = "before it answered Describe";
    try {
      // The version the handshake chose, which the plugin checks (docs/protocol.md §7).
      const description = a.described ?? (await conn.plugin.describe({ protocolVersion: proc.handshake.protocolVersion }, { deadlineMs: CONTROL_CALL_DEADLINE_MS }));
      marks.describe = performance.now();
      if (!a.described) this.checkDescription(description, proc.handshake.protocolVersion);
      this.channel.keepReplay = description.stateful !== undefined;
      this.claimStatefulId(description);
      this.description = description;
      phase = "before it answered Start";
      // From loading the record to attaching, a snapshot of the previous
      // launch that is saved meanwhile must not trim what this one replays.
      const releaseTrim = this.channel.holdTrim();
      let replayed: number;
      let redelivered: number;
      try {
        // The record is read from the store while the plugin runs its Start.
        const preloaded = description.stateful ? this.ctx.store.load(description.stateful.id, this.name) : undefined;
        preloaded?.catch(() => undefined);
        await conn.plugin.start(
          {
            // An attached plugin runs on another machine: the host's path means nothing there (docs/protocol.md §18).
            dataDir: this.config.attach ? "" : dataDir,
            instanceId,
            configJson: JSON.stringify(this.config.config),
            capabilities: this.config.capabilities.map((c) => WIRE_CAPABILITY[c]),
          },
          { deadlineMs: CONTROL_CALL_DEADLINE_MS },
        );
        marks.start = performance.now();
        phase = "while it restored its snapshot";
        const replayAfter = await this.restoreLatest(conn, description, preloaded);
        marks.restore = performance.now();
        phase = "as its Deliver stream opened";
        if (launch.ended) throw new PlugwireError("plugin_exited", `plugin '${this.name}' exited while starting`, { plugin: this.name });
        const deliver = conn.plugin.deliver();
        launch.deliver = deliver;
        deliver.on("data", (response: DeliverResponse) => this.channel.onAck(this.screenAck(launch, response)));
        deliver.on("error", (e: Error) => this.onStreamBroken(launch, e.message));
        deliver.on("end", () => this.onStreamBroken(launch, "the plugin ended the Deliver stream"));
        ({ replayed, redelivered } = this.channel.attach(this.deliveryStream(launch, deliver), id, replayAfter));
      } finally {
        releaseTrim();
      }
      if (replayed + redelivered > 0) this.log.info({ replayed, redelivered }, "payloads replayed to the new launch");
      marks.deliver = performance.now();
      const ms = (x: number): number => Math.round(x * 100) / 100;
      this.lastLaunch = {
        totalMs: ms(marks.deliver - a.began),
        processMs: ms(marks.process - a.began),
        // A spare answered Describe while it waited: its time is Start's.
        describeMs: a.described ? 0 : ms(marks.describe - marks.process),
        startMs: ms(marks.start - (a.described ? marks.process : marks.describe)),
        restoreMs: ms(marks.restore - marks.start),
        deliverMs: ms(marks.deliver - marks.restore),
        replayed: replayed + redelivered,
        spare: a.spare,
      };
      this.log.debug({ launch: this.lastLaunch }, "launch timings");
      this.readyAt = Date.now();
      this.healthFailures = 0;
      launch.ready = true;
      this.setState("ready");
      this.startHealth(launch);
      this.keepStandby();
    } catch (e) {
      launch.endReason = "launch-failed";
      // A call that fails right after the handshake usually means the plugin
      // is exiting: give it a moment to, so that its exit status tells why.
      if (!this.stopping) await Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, STREAM_BROKEN_GRACE_MS).unref())]);
      proc.signalGroup("SIGKILL");
      const exit = await proc.exited;
      await this.endLaunch(launch);
      // Not killed by us: it died by itself after its handshake, and the
      // failed call ("Connection dropped") would not say which plugin or why.
      const limit = proc.limitExceeded(exit);
      if ((exit.signal !== "SIGKILL" || limit) && !this.stopping) throw this.exitedWhileStarting(exit, proc.stderrTail().slice(-10), e, phase, limit);
      throw e;
    }
  }

  /**
   * Effects from a plugin without the control capability: none is
   * performed, and the item fails with permission_denied (docs/protocol.md §8).
   */
  private refuseEffects(entry: Entry, effects: readonly Effect[]): void {
    const what = entry.forget ? `forgotten-peer item seq ${entry.seq}` : `payload seq ${entry.seq} (kind '${entry.kind}')`;
    const message =
      `plugin '${this.name}' is not granted the 'control' capability, so the ${effects.length} effect(s) of ${what} were not performed ` +
      `and the item counts as failed; grant 'control' in the plugin's capabilities, or make the handler send nothing`;
    for (const effect of effects) {
      if (effect.effect.case !== "sendDirect") continue;
      const { peer, frame } = effect.effect.value;
      entry.onEffect?.({ type: "sendDirect", peer, frame, performed: false, droppedReason: message });
    }
    this.ctx.metrics.handlerErrors.inc({ plugin: this.name });
    this.limited.warn("effects-refused", { seq: entry.seq, kind: entry.kind, effects: effects.length }, message);
    // The channel settles the item after this returns; settled here, it leaves it be.
    entry.settle?.reject(new PlugwireError("permission_denied", message, { plugin: this.name }));
    entry.settle = undefined;
  }

  /** Drops the effects of outcomes that also report an error: a failed handler's effects are never performed (docs/protocol.md §8). */
  private screenAck(launch: Launch, response: DeliverResponse): DeliverResponse {
    for (const outcome of response.outcomes) {
      // A handler's error text is the plugin's: cut it before it reaches logs, dead letters and callers.
      if (outcome.error && outcome.error.message.length * 3 > MAX_ERROR_TEXT_BYTES) {
        const cut = truncateText(outcome.error.message, MAX_ERROR_TEXT_BYTES);
        if (cut !== outcome.error.message) {
          outcome.error.message = cut;
          if ((launch.truncatedErrors = (launch.truncatedErrors ?? 0) + 1) === 1) {
            this.log.warn(
              { seq: Number(outcome.seq), maxBytes: MAX_ERROR_TEXT_BYTES },
              `plugin '${this.name}' reported a handler error over ${MAX_ERROR_TEXT_BYTES} bytes for seq ${outcome.seq}; it was cut (this and later ones). Logged once per launch.`,
            );
          }
        }
      }
      if (!outcome.error || outcome.effects.length === 0) continue;
      if (!launch.warnedErrorWithEffects) {
        launch.warnedErrorWithEffects = true;
        this.log.warn(
          { seq: Number(outcome.seq), effects: outcome.effects.length },
          `plugin '${this.name}' reported an error for seq ${outcome.seq} together with ${outcome.effects.length} effect(s); ` +
            `a failed handler's effects are dropped, never performed (docs/protocol.md §8). Logged once per launch.`,
        );
      }
      outcome.effects = [];
    }
    return response;
  }

  /**
   * Warns when a typed error's ErrorDetail named the plugin otherwise than
   * its Describe does (docs/protocol.md §11). The error itself already names
   * this plugin (`plugin`, `detail.plugin`); the claimed name is kept in
   * `claimedPlugin`.
   */
  private checkErrorDetail(error: PlugwireError): PlugwireError {
    const named = error.claimedPlugin ?? error.detail?.plugin;
    const described = this.description?.name;
    if (named === undefined || described === undefined || named === described) return error;
    const other = named !== this.name && this.ctx.isPluginName?.(named) === true;
    this.log.warn(
      { errorDetailPlugin: named, describedAs: described },
      `plugin '${this.name}' sent a ${ERROR_DETAIL_TRAILER} trailer naming plugin ${PLUGIN_NAME_PATTERN.test(named) ? `'${named}'` : quote(named, 64)}, but it describes itself as '${described}'; ` +
        `ErrorDetail.plugin must be the name Describe returns (docs/protocol.md §11)` +
        (other ? `. '${named}' is another plugin of this host: the error is reported as '${this.name}'s, not as '${named}'s` : ""),
    );
    if (!other) return error;
    // Its text may blame the other plugin too: say up front whose error it is.
    return new PlugwireError(
      error.code,
      `plugin '${this.name}' sent an error whose detail names plugin '${named}', another plugin of this host; it is '${this.name}'s error: ${error.message}`,
      { plugin: this.name, detail: error.detail, claimedPlugin: named, cause: error },
    );
  }

  /** Removes a launch's socket file once it has ended; a plugin killed by SIGKILL cannot. */
  private removeSocket(launch: Launch): void {
    const path = join(this.ctx.runDir(), socketFileName(launch.instanceId));
    try {
      rmSync(path, { force: true });
    } catch (e) {
      this.log.warn({ path, err: String(e) }, "could not remove the socket file of a launch that ended");
    }
  }

  private exitedWhileStarting(exit: ExitInfo, stderrTail: readonly string[], cause: unknown, phase: string, limit: string | undefined): PlugwireError {
    const command = this.config.attach ? `attach ${this.config.attach.address}` : [this.config.command, ...this.config.args].join(" ");
    const tail = launchStderrTail(stderrTail);
    const detail = cause instanceof Error ? cause.message : String(cause);
    const what = limit ? `${limit} and ${describeExit(exit)}` : describeExit(exit);
    return new PlugwireError(
      "plugin_exited",
      `plugin '${this.name}' (command: ${command}) ${what} while starting, after its handshake (${phase}: ${detail}). ` +
        `Its stderr should say why.${tail}`,
      { plugin: this.name, cause },
    );
  }

  /**
   * Refuses a Describe that contradicts the handshake or breaks the limits of
   * docs/protocol.md §13 (name, kinds, stateful id, versions) with
   * plugin_refused: the plugin is not started, and a refused relaunch
   * quarantines it at once (the same binary would be refused again).
   */
  private checkDescription(d: DescribeResponse, handshakeVersion: number): void {
    const refuse = (what: string, todo: string): never => {
      throw new PlugwireError("plugin_refused", `plugin '${this.name}' was refused: its Describe ${what}. It was not started. ${todo}`, { plugin: this.name });
    };
    if (d.protocolVersion !== handshakeVersion) {
      refuse(
        `says protocol version ${d.protocolVersion}, but its handshake line said ${handshakeVersion}`,
        `Describe must return the version of the handshake line (docs/protocol.md §7); fix the plugin.`,
      );
    }
    if (!d.name) refuse("returned no name", "Return the plugin's name, 1-64 characters of [A-Za-z0-9._-] (docs/protocol.md §7).");
    const problems = describeProblems({ name: d.name, payloadKinds: d.payloadKinds, stateful: d.stateful });
    if (problems.length > 0) {
      refuse(`breaks the protocol's limits: ${problems.join("; ")}`, "Fix the plugin's name, payload kinds or stateful surface (docs/protocol.md §7 and §13).");
    }
    if (d.sdk) {
      d.sdk.language = d.sdk.language.slice(0, MAX_SDK_FIELD_LENGTH);
      d.sdk.version = d.sdk.version.slice(0, MAX_SDK_FIELD_LENGTH);
    }
    if (d.name !== this.name) {
      this.log.warn(
        { describedAs: d.name },
        `plugin '${this.name}' describes itself as '${d.name}'; the host names it '${this.name}' everywhere (errors, logs, status), and its ErrorDetail.plugin should be '${d.name}'`,
      );
    }
    const previous = this.description;
    if (previous && previous.payloadKinds.join("\n") !== d.payloadKinds.join("\n")) {
      this.log.warn({ before: previous.payloadKinds.slice(0, 100), now: d.payloadKinds.slice(0, 100) }, "plugin claims different kinds after a restart; routing keeps the first claims");
    }
  }

  /**
   * The Describe-time check of a stateful id: one the snapshot store can
   * keep, and not declared by another plugin of this host (the first to
   * declare it keeps it; this launch fails).
   */
  private claimStatefulId(d: DescribeResponse): void {
    const id = d.stateful?.id;
    if (id === undefined || id === "") return;
    const problem = statefulIdProblem(id);
    if (problem) {
      throw new PlugwireError("handshake_failed", `plugin '${this.name}' described itself wrongly: its stateful id cannot be stored: ${problem}`, {
        plugin: this.name,
      });
    }
    const holder = this.ctx.claimStatefulId?.(this.name, id);
    if (holder === undefined) return;
    throw new PlugwireError(
      "invalid_config",
      `plugin '${this.name}' declares stateful id '${id}', which plugin '${holder}' already declares in this host; it was not started, and '${holder}' ` +
        `keeps running with its state untouched. Stateful ids must be unique: give one of the plugins another id, or remove one from the config.`,
      { plugin: this.name },
    );
  }

  /** Creates the plugin's data dir (0700), with an error that names the plugin, the path and what to do. */
  private makeDataDir(dataDir: string): void {
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new PlugwireError("plugin_unavailable", `plugin '${this.name}' could not be started: its data dir cannot be created: ${explainFsError(e, dataDir)}`, {
        plugin: this.name,
        cause: e,
      });
    }
  }

  /** Restores the latest stored snapshot; returns the seq replay continues after. */
  private async restoreLatest(conn: DialedPlugin, d: DescribeResponse, preloaded?: Promise<SnapshotRecord | undefined>): Promise<number | undefined> {
    if (!d.stateful) return undefined;
    const id = d.stateful.id;
    // The store is keyed by this plugin's name as well: another plugin that
    // declares the same id never gets this state, nor this plugin its.
    const record = await (preloaded ?? this.ctx.store.load(id, this.name));
    if (record && record.id !== id) {
      throw new PlugwireError(
        "restore_failed",
        `the snapshot store returned a record of stateful id '${record.id}' when asked for '${id}' of plugin '${this.name}'; it was not sent to the plugin. ` +
          `Check the SnapshotStore implementation.`,
        { plugin: this.name },
      );
    }
    if (!this.resumed) {
      this.resumed = true;
      if (record) this.channel.resumeAfter(record.appliedSeq);
    }
    if (record && record.appliedSeq < this.channel.trimmedThrough) {
      this.log.error(
        { id, restored: record.appliedSeq, trimmedThrough: this.channel.trimmedThrough },
        `the newest readable snapshot (seq ${record.appliedSeq}) is older than the one the replay buffer was trimmed to (seq ${this.channel.trimmedThrough}): ` +
          `payloads ${record.appliedSeq + 1}..${this.channel.trimmedThrough} are missing from the restored state. A newer snapshot file was unreadable; check the snapshot store.`,
      );
    }
    if (!record) return 0;
    try {
      await restoreSnapshot(conn.plugin, record, SNAPSHOT_DEADLINE_MS);
    } catch (e) {
      const error = this.checkErrorDetail(PlugwireError.from(e, "restore_failed", this.name));
      if (error.code !== "unsupported_version") throw error;
      await this.ctx.store.discard(id, this.name);
      // The plugin's default state is the new base: what it acked before is
      // history it no longer holds, never to be replayed into it, and a
      // snapshot of that default state covers everything through here.
      this.resetThrough = Math.max(this.resetThrough, this.channel.lastAcked);
      this.channel.trimReplay(this.resetThrough);
      this.ctx.metrics.snapshotResets.inc({ plugin: this.name });
      this.log.warn(
        { id, version: record.version, err: error.message, resetThrough: this.resetThrough },
        "snapshot discarded: the plugin does not read its version; continuing from default state",
      );
      this.ctx.emit("snapshot:reset", { plugin: this.name, id, reason: error.message });
      return undefined;
    }
    const replayed = this.channel.replayCount;
    this.ctx.emit("snapshot:restored", { plugin: this.name, id, version: record.version, appliedSeq: record.appliedSeq, sizeBytes: record.bytes.byteLength, replayed });
    this.log.info({ id, version: record.version, appliedSeq: record.appliedSeq, bytes: record.bytes.byteLength }, "snapshot restored");
    return record.appliedSeq;
  }

  private startHealth(launch: Launch): void {
    this.stopHealth();
    this.healthTimer = setInterval(() => void this.checkHealth(launch), this.config.healthIntervalMs);
    this.healthTimer.unref();
  }

  private stopHealth(): void {
    clearInterval(this.healthTimer);
    this.healthTimer = undefined;
  }

  private async checkHealth(launch: Launch): Promise<void> {
    if (launch.ended || launch.endReason !== undefined || this.state !== "ready") return;
    if (this.checkAcks(launch)) return;
    try {
      const reply = await launch.conn.health.check({ service: "" }, { deadlineMs: this.config.healthTimeoutMs });
      if (reply.status !== health.HealthCheckResponse_ServingStatus.SERVING) throw new Error(`status ${reply.status}`);
      this.healthFailures = 0;
    } catch (e) {
      if (launch.ended || launch.endReason !== undefined) return; // already being killed
      this.healthFailures++;
      this.log.warn({ failures: this.healthFailures, err: String(e) }, "health check failed");
      if (this.healthFailures >= this.config.healthFailures) this.hung(launch, `${this.healthFailures} health checks failed in a row`);
    }
  }

  /**
   * The ack timeout: busy is not hung. A plugin that answers health checks
   * but acks nothing gets one warning per stall, naming the item it is on,
   * and is killed only after ackTimeoutMs (default 5 min; 0: never). Returns
   * true when it was killed.
   */
  private checkAcks(launch: Launch): boolean {
    const oldest = this.channel.inFlight > 0 ? this.channel.oldestInFlight() : undefined;
    if (!oldest) return false;
    const { ackTimeoutMs } = this.config;
    const inFlight = this.channel.inFlight;
    const stalledMs = Date.now() - this.channel.lastProgressAt;
    const item = `seq ${oldest.seq} (${oldest.forget ? "a forgotten peer" : `kind '${oldest.kind}'`})`;
    const fields = { seq: oldest.seq, kind: oldest.kind, inFlight, stalledMs };
    if (ackTimeoutMs > 0 && stalledMs > ackTimeoutMs) {
      this.hung(
        launch,
        `no ack for ${ackTimeoutMs} ms with ${inFlight} payloads in flight`,
        fields,
        `plugin '${this.name}' acked nothing for ${stalledMs} ms, past its ackTimeoutMs (${ackTimeoutMs} ms), though it answers health checks; ` +
          `the oldest item in flight is ${item}. Killing its process group as hung; if that handler is merely slow, raise ackTimeoutMs (0 turns the ack timeout off).`,
      );
      return true;
    }
    const warnAfterMs = ackTimeoutMs > 0 ? Math.min(BUSY_WARN_MS, ackTimeoutMs / 2) : BUSY_WARN_MS;
    if (stalledMs >= warnAfterMs && this.busyWarnedFor !== this.channel.lastProgressAt) {
      this.busyWarnedFor = this.channel.lastProgressAt;
      this.log.warn(
        fields,
        `plugin '${this.name}' has acked nothing for ${Math.round(stalledMs / 1000)} s; the oldest item in flight is ${item}. ` +
          `It answers health checks, so it counts as busy, not hung` +
          (ackTimeoutMs > 0
            ? `: it is killed only if nothing is acked for ackTimeoutMs (${ackTimeoutMs} ms).`
            : ` (ackTimeoutMs is 0: it is never killed for being slow).`),
      );
    }
    return false;
  }

  private hung(launch: Launch, why: string, fields: object = {}, message = "plugin is hung; killing its process group"): void {
    this.log.error({ why, ...fields }, message);
    launch.endReason = "hung";
    this.lastError = `hung: ${why}`;
    launch.proc.signalGroup("SIGKILL");
  }

  private onStreamBroken(launch: Launch, why: string): void {
    if (launch.ended || launch.endReason !== undefined || this.stopping || launch.streamBroken) return;
    launch.streamBroken = true;
    // A crashing plugin usually breaks the stream a moment before its exit is
    // seen: give the exit a chance to tell the real reason first.
    setTimeout(() => {
      if (launch.ended || launch.endReason !== undefined || this.stopping) return;
      this.log.warn({ why }, "Deliver stream broke but the plugin is still running; killing it to restart");
      launch.endReason = "stream-broken";
      launch.proc.signalGroup("SIGKILL");
    }, STREAM_BROKEN_GRACE_MS).unref();
  }

  private async endLaunch(launch: Launch): Promise<boolean> {
    if (launch.ended) return false;
    launch.ended = true;
    // Launches are serialised, so an ended launch is the current one; should
    // an older one ever end late, it must not touch the current one's state.
    const current = launch === this.launch;
    if (current) this.stopHealth();
    launch.deliver?.removeAllListeners();
    launch.deliver?.on("error", () => undefined);
    launch.deliver?.cancel();
    launch.conn.close();
    this.removeSocket(launch);
    this.ctx.unregisterToken(launch.token);
    launch.proc.signalGroup("SIGKILL", true); // children the plugin left behind
    const crashed = launch.endReason !== "exit";
    // A launch that never attached its stream had no payload in flight.
    if (launch.deliver && current) this.channel.detach(crashed);
    return true;
  }

  private async onExit(launch: Launch, exit: ExitInfo): Promise<void> {
    const planned = this.stopping;
    if (launch !== this.launch) {
      // Not the current launch: its end is no crash of the plugin.
      await this.endLaunch(launch);
      // A build retired by a hot upgrade ends on purpose.
      if (launch.endReason !== "exit") {
        this.log.warn({ pid: launch.proc.pid, code: exit.code, signal: exit.signal }, "a superseded launch of the plugin ended; it is not the running one, so nothing is restarted");
      }
      return;
    }
    if (planned && launch.ready && launch.endReason === undefined && !launch.ended) {
      this.log.warn({ code: exit.code, signal: exit.signal }, `plugin ${describeExit(exit)} by itself while it was being stopped`);
    }
    if (!launch.ready) {
      // launchOnce is still running: it sees the launch ended, fails, and its
      // caller alone decides what follows (a restart from here as well would
      // run two launches at once).
      await this.endLaunch(launch);
      if (planned) return;
      this.lastStderr = launch.proc.stderrTail().slice(-10);
      this.ctx.emit("plugin:exit", { plugin: this.name, pid: launch.proc.pid, code: exit.code, signal: exit.signal, reason: "launch-failed", stderrTail: this.lastStderr });
      return;
    }
    const natural: EndReason = exit.code === 0 && !exit.signal ? "exit" : "crash";
    // A resource limit that ended it is its reason, not a generic crash.
    const limit = launch.endReason === undefined || launch.endReason === "stream-broken" ? launch.proc.limitExceeded(exit) : undefined;
    const what = limit ? `${limit} and ${describeExit(exit)}` : describeExit(exit);
    // A broken Deliver stream is often just the first sign of an exit: unless
    // the SIGKILL sent for the broken stream ended the process, its exit status says why.
    const reason: EndReason = launch.endReason === "stream-broken" && exit.signal !== "SIGKILL" ? natural : (launch.endReason ?? natural);
    if (!(await this.endLaunch(launch)) && !planned) return;
    if (planned) return;
    this.lastStderr = launch.proc.stderrTail().slice(-10);
    this.lastExit = `${what} (${reason})`;
    this.lastError = reason === "hung" ? this.lastError : what;
    this.ctx.emit("plugin:exit", { plugin: this.name, pid: launch.proc.pid, code: exit.code, signal: exit.signal, reason, stderrTail: this.lastStderr });
    this.log.error(
      { code: exit.code, signal: exit.signal, reason, stderrTail: this.lastStderr, ...(limit ? { limit, limits: this.config.limits } : {}) },
      `plugin '${this.name}' ${what} (${reason})`,
    );
    this.scheduleRestart(reason, exit);
  }

  private scheduleRestart(reason: EndReason, exit: ExitInfo): void {
    if (!shouldRestart(this.config.restart, reason, exit.code, exit.signal)) {
      this.setState("stopped", `restart policy '${this.config.restart}' does not restart after ${reason}`);
      this.failPending(`the plugin ${reason === "exit" ? "exited" : "crashed"} and its restart policy is '${this.config.restart}'`);
      return;
    }
    const now = Date.now();
    if (this.readyAt > 0 && now - this.readyAt >= this.config.backoffResetMs) this.attempt = 0;
    if (!this.window.allow(now)) {
      const why = `crash loop: more than ${this.config.maxRestarts} restarts in ${this.config.restartWindowMs} ms; last: ${this.lastExit}`;
      this.lastError = why;
      this.setState("failed", why);
      this.failPending(`plugin '${this.name}' failed (${why})`);
      return;
    }
    const delayMs = backoffDelayMs(this.attempt, { initialMs: this.config.backoffInitialMs, maxMs: this.config.backoffMaxMs });
    this.attempt++;
    this.restarts++;
    this.ctx.metrics.restarts.inc({ plugin: this.name });
    this.setState("restarting", this.lastExit);
    this.ctx.emit("plugin:restart", { plugin: this.name, attempt: this.attempt, delayMs, restarts: this.restarts });
    const ops = this.operatorOps;
    const relaunch = (): void => {
      this.restartTimer = undefined;
      void this.enqueue(() => this.relaunch(ops));
    };
    // No delay: not even a timer tick (relaunch() itself drops a restart a stop overtook).
    if (delayMs === 0) queueMicrotask(relaunch);
    else this.restartTimer = setTimeout(relaunch, delayMs);
  }

  /** What the host service knows of a launch's token (as activate() registers it): this plugin, its capabilities, its SendRouted origin check. */
  private callerFor(): Caller {
    return {
      name: this.name,
      capabilities: new Set(this.config.capabilities),
      // Only an item in flight to this launch can be an origin; any other
      // (forged, or long acked) is refused, sending nothing and remembering nothing.
      sendRoutedOnce: (seq, index, send, call) =>
        this.channel.isInFlight(seq)
          ? this.channel.sendRoutedOnce(seq, index, send, call)
          : Promise.reject(
              new PlugwireError(
                "invalid_argument",
                `plugin '${this.name}' called SendRouted with origin seq ${seq} (index ${index}), which is not an item in flight to it; nothing was sent. Set origin only inside a payload handler, to the seq of the item it handles, and await the call before the handler returns (docs/protocol.md §8)`,
                { plugin: this.name },
              ),
            ),
    };
  }

  // ---- Hot upgrade (docs/supervision.md, "Hot upgrade") ----

  /**
   * The stream the channel writes a launch's Deliver messages to: straight
   * to its Deliver call, or, while a hot upgrade holds delivery, into
   * `launch.held` (sent on a rollback, redelivered to the new build otherwise).
   */
  private deliveryStream(launch: Launch, deliver: NonNullable<Launch["deliver"]>): { write: (request: DeliverRequest) => boolean } {
    return {
      write: (request: DeliverRequest) => {
        if (launch.held) {
          launch.held.push(request);
          return true;
        }
        return deliver.write(request);
      },
    };
  }

  /**
   * Hot upgrade: replaces the running build with `build` (command and args;
   * either defaults to the current one) with no payload lost or duplicated.
   * The new build is spawned, described and health-checked as a spare; then
   * delivery is held at a batch boundary (the running build acks all it was
   * sent), the running build is snapshotted, the new one gets Start and
   * Restore, delivery switches to it (the payloads held meanwhile go to it),
   * and the old build is shut down through the ladder. If the new build
   * cannot start, fails its health check, declares another stateful id, or
   * fails Start or Restore, it is killed and the old build keeps serving as if
   * nothing happened; the error says what failed and what to do. Runs after
   * any lifecycle operation already under way.
   */
  upgrade(build: Partial<Build>): Promise<UpgradeResult> {
    return this.enqueue(() => this.upgradeNow(build));
  }

  private async upgradeNow(partial: Partial<Build>): Promise<UpgradeResult> {
    // A stop asked for meanwhile (prepareStop) aborts the upgrade: the new build is killed at once.
    const abort = new AbortController();
    this.upgradeAbort = abort;
    try {
      return await this.upgradeSteps(partial, abort.signal);
    } finally {
      if (this.upgradeAbort === abort) this.upgradeAbort = undefined;
    }
  }

  private async upgradeSteps(partial: Partial<Build>, aborted: AbortSignal): Promise<UpgradeResult> {
    const build: Build = { command: partial.command ?? this.config.command, args: partial.args ?? this.config.args };
    const target = [build.command, ...build.args].join(" ");
    const old = this.launch;
    if (this.config.attach) {
      throw new PlugwireError(
        "invalid_argument",
        `plugin '${this.name}' was not upgraded: it is attached at ${this.config.attach.address}, and the host does not run its process. ` +
          `Roll out the new build where the plugin runs (e.g. a Kubernetes rollout); the host restores and replays when it reconnects (docs/remote-plugins.md).`,
        { plugin: this.name },
      );
    }
    if (this.state !== "ready" || !old || old.ended || !old.deliver || this.stopping) {
      throw new PlugwireError(
        "plugin_unavailable",
        `plugin '${this.name}' was not upgraded to '${target}': it is ${this.state}, and only a ready plugin is upgraded in place. ` +
          `Wait until it is ready, or change its command in the config and restart it.`,
        { plugin: this.name },
      );
    }
    const rolledBack = (what: string, cause: unknown, stderrTail?: readonly string[]): PlugwireError => {
      const error = PlugwireError.from(cause, "plugin_unavailable", this.name);
      const why = error.message.trim();
      return new PlugwireError(
        error.code,
        `plugin '${this.name}' was not upgraded to '${target}': ${what}: ${why}${/[.!?]$/.test(why) ? "" : "."} ` +
          (this.stopping
            ? `The upgrade was abandoned because the plugin is being stopped; the new build was killed.`
            : `The upgrade was rolled back: the running build (pid ${old.proc.pid}) keeps serving, its state and payloads untouched. ` +
              `Fix the new build and upgrade again (host.upgrade('${this.name}', …) or plugwire upgrade ${this.name}).`) +
          (stderrTail && !this.stopping ? launchStderrTail(stderrTail).replace(/^ It/, " The new build") : ""),
        { plugin: this.name, cause },
      );
    };
    this.log.info({ command: build.command, args: build.args }, "hot upgrade: starting the new build");
    // 1. The new build, as a spare: handshake, Describe, a health check.
    let spare: Spare;
    try {
      spare = await this.spawnSpare(aborted, build);
    } catch (e) {
      throw rolledBack("its new build could not be started", e);
    }
    // Until the switch, a stop kills the new build, which fails the step under way.
    const killNew = (): void => spare.proc.signalGroup("SIGKILL");
    aborted.addEventListener("abort", killNew, { once: true });
    try {
      return await this.upgradeHandOver(build, old as Launch & { deliver: NonNullable<Launch["deliver"]> }, spare, rolledBack, aborted);
    } finally {
      aborted.removeEventListener("abort", killNew);
    }
  }

  private async upgradeHandOver(
    build: Build,
    old: Launch & { deliver: NonNullable<Launch["deliver"]> },
    spare: Spare,
    rolledBack: (what: string, cause: unknown, stderrTail?: readonly string[]) => PlugwireError,
    aborted: AbortSignal,
  ): Promise<UpgradeResult> {
    const target = [build.command, ...build.args].join(" ");
    const oldId = this.statefulId;
    try {
      const reply = await spare.conn.health.check({ service: "" }, { deadlineMs: this.config.healthTimeoutMs });
      if (reply.status !== health.HealthCheckResponse_ServingStatus.SERVING) throw new Error(`it answered status ${reply.status}, not SERVING`);
      const newId = spare.description.stateful?.id;
      if (newId !== oldId) {
        throw new PlugwireError(
          "restore_failed",
          `its Describe declares ${newId === undefined ? "no stateful id" : `stateful id '${newId}'`} where the running build declares ${oldId === undefined ? "none" : `'${oldId}'`}; ` +
            `an upgrade hands the state over, so the id must stay the same (to change it, stop the plugin and start the new build instead)`,
          { plugin: this.name },
        );
      }
      if (this.stopping || old.ended || this.launch !== old) throw new Error(`the running build ${this.stopping ? "is being stopped" : "ended"} meanwhile`);
    } catch (e) {
      await this.discardSpare(spare);
      throw rolledBack("its new build failed its checks", e);
    }
    // Delivery to the running build is held from step 3 on; released as it was on a rollback.
    const release = (): void => {
      const held = old.held ?? [];
      old.held = undefined;
      if (!old.ended) for (const request of held) old.deliver!.write(request);
    };
    const launch: Launch = { id: spare.id, token: spare.token, proc: spare.proc, conn: spare.conn, ended: false, ready: false, instanceId: spare.instanceId };
    const newBuildFailed = async (e: unknown, during: string): Promise<PlugwireError> => {
      this.ctx.unregisterToken(spare.token);
      // A call that failed because the new build is exiting: let its exit status and stderr tell why.
      await Promise.race([spare.proc.exited, new Promise((resolve) => setTimeout(resolve, STREAM_BROKEN_GRACE_MS).unref())]);
      const exited = spare.proc.hasExited ? await spare.proc.exited : undefined;
      const tail = spare.proc.stderrTail().slice(-10);
      release();
      await this.discardSpare(spare);
      const why = exited ? `it ${describeExit(exited)} during ${during}` : `it failed ${during}`;
      return rolledBack(`the new build did not take over (${why})`, PlugwireError.from(e, "restore_failed", this.name), exited ? tail : undefined);
    };
    // 2. Start the new build while the running one still serves; it gets no payload yet.
    this.ctx.registerToken(spare.token, this.callerFor());
    try {
      const dataDir = join(this.ctx.dataDir, "plugins", this.name);
      await spare.conn.plugin.start(
        { dataDir, instanceId: spare.instanceId, configJson: JSON.stringify(this.config.config), capabilities: this.config.capabilities.map((c) => WIRE_CAPABILITY[c]) },
        { deadlineMs: CONTROL_CALL_DEADLINE_MS },
      );
      if (spare.proc.hasExited) throw new Error("the new build exited");
    } catch (e) {
      throw await newBuildFailed(e, "Start");
    }
    // 3. Hold delivery at a batch boundary: the running build acks what it was sent, then is snapshotted.
    const t0 = performance.now();
    old.held = [];
    let record: SnapshotRecord | undefined;
    let restoring: Promise<void> | undefined;
    const restoreInto = async (r: SnapshotRecord): Promise<void> => {
      try {
        await restoreSnapshot(spare.conn.plugin, r, SNAPSHOT_DEADLINE_MS);
      } catch (e) {
        throw this.checkErrorDetail(PlugwireError.from(e, "restore_failed", this.name));
      }
    };
    try {
      if (this.stopping || old.ended || this.launch !== old) throw new Error(`the running build ${this.stopping ? "is being stopped" : "ended"} meanwhile`);
      // Bounded, and cut short when the running build exits or a stop is asked for.
      let onAbort: (() => void) | undefined;
      const drained = await Promise.race([
        this.channel.waitForAck(this.channel.highestSeq, SNAPSHOT_DEADLINE_MS),
        old.proc.exited.then(() => false),
        new Promise<boolean>((resolve) => aborted.addEventListener("abort", (onAbort = () => resolve(false)), { once: true })),
      ]);
      if (onAbort) aborted.removeEventListener("abort", onAbort);
      if (!drained) {
        throw new PlugwireError(
          "snapshot_failed",
          this.stopping || old.ended
            ? `the running build ${this.stopping ? "is being stopped" : "ended"} meanwhile`
            : `the running build did not ack the payloads it was sent within ${SNAPSHOT_DEADLINE_MS} ms`,
          { plugin: this.name },
        );
      }
      // The new build restores the record while it is being stored.
      if (oldId !== undefined) record = await this.snapshot((r) => (restoring = restoreInto(r)).catch(() => undefined));
      if (old.ended) throw new Error("the running build ended meanwhile");
    } catch (e) {
      this.ctx.unregisterToken(spare.token);
      release();
      await this.discardSpare(spare);
      await restoring?.catch(() => undefined);
      throw rolledBack("the running build could not be snapshotted", e);
    }
    // 4. Restore into the new build, not yet attached: the old one still holds the stream.
    try {
      if (record) await (restoring ?? restoreInto(record));
      if (spare.proc.hasExited) throw new Error("the new build exited");
      if (this.stopping || old.ended) throw new Error(`the running build ${this.stopping ? "is being stopped" : "ended"} meanwhile`);
    } catch (e) {
      throw await newBuildFailed(e, "Restore");
    }
    // 5. Switch delivery: what was held (never sent to the old build) goes to the new one.
    old.endReason = "exit";
    old.held = undefined;
    old.deliver.removeAllListeners();
    old.deliver.on("error", () => undefined);
    old.deliver.cancel();
    this.stopHealth();
    this.channel.detach(false);
    this.launch = launch;
    this.description = spare.description;
    this.channel.keepReplay = spare.description.stateful !== undefined;
    void launch.proc.exited.then((exit) => this.onExit(launch, exit));
    const deliver = spare.conn.plugin.deliver();
    launch.deliver = deliver;
    deliver.on("data", (response: DeliverResponse) => this.channel.onAck(this.screenAck(launch, response)));
    deliver.on("error", (e: Error) => this.onStreamBroken(launch, e.message));
    deliver.on("end", () => this.onStreamBroken(launch, "the plugin ended the Deliver stream"));
    this.channel.attach(this.deliveryStream(launch, deliver), launch.id, record?.appliedSeq);
    const pauseMs = performance.now() - t0;
    launch.ready = true;
    this.readyAt = Date.now();
    this.healthFailures = 0;
    this.startHealth(launch);
    const mutable = this.config as { command: string; args: readonly string[] };
    mutable.command = build.command;
    mutable.args = build.args;
    // 6. The old build shuts down through the ladder; the spare of the old build goes, one of the new comes.
    void this.retire(old);
    void this.standby.close().then(() => {
      if (this.launch === launch && this.state === "ready") this.keepStandby();
    });
    const result: UpgradeResult = {
      plugin: this.name,
      fromPid: old.proc.pid,
      toPid: launch.proc.pid,
      pauseMs,
      appliedSeq: record?.appliedSeq ?? 0,
      command: build.command,
      args: build.args,
    };
    this.log.info({ ...result }, `plugin '${this.name}' upgraded to '${target}'; delivery was held for ${pauseMs.toFixed(1)} ms`);
    this.ctx.emit("plugin:upgraded", result);
    return result;
  }

  /** Shuts a build a hot upgrade replaced down: Shutdown RPC, SIGTERM, SIGKILL. */
  private async retire(old: Launch): Promise<void> {
    this.retiring.add(old);
    try {
      const exited = old.proc.exited.then(() => true);
      const within = (ms: number): Promise<boolean> => Promise.race([exited, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref())]);
      const shutdownMs = this.config.shutdownTimeoutMs;
      if (shutdownMs > 0) {
        await old.conn.plugin.shutdown({ deadlineMs: shutdownMs }, { deadlineMs: shutdownMs }).catch((e: unknown) => this.log.warn({ err: String(e) }, "Shutdown RPC to the replaced build failed"));
      }
      if (!(await within(shutdownMs))) {
        old.proc.signalGroup("SIGTERM");
        if (!(await within(this.config.killGraceMs))) old.proc.signalGroup("SIGKILL");
      }
      await exited;
    } finally {
      this.retiring.delete(old);
    }
  }

  // ---- Warm standby (standby.ts; docs/supervision.md, "Warm standby") ----

  private makeStandby(): WarmStandby {
    return new WarmStandby({
      name: this.name,
      log: this.log,
      spawn: (signal) => this.spawnSpare(signal),
      discard: (spare) => this.discardSpare(spare),
      backoffInitialMs: this.config.backoffInitialMs,
      backoffMaxMs: this.config.backoffMaxMs,
      backoffResetMs: this.config.backoffResetMs,
      onEvent: (e) => this.ctx.emit("plugin:standby", { plugin: this.name, ...e }),
    });
  }

  /** Whether this plugin keeps a spare: warmStandby true, or auto and its Describe declares it stateful. */
  private get wantsStandby(): boolean {
    const option = this.config.warmStandby;
    if (this.config.attach) return false; // the remote process is not the host's to spawn
    return option === true || (option === "auto" && this.statefulId !== undefined);
  }

  /**
   * Called once a launch is ready: makes sure a spare is waiting or coming,
   * off the critical path. In a crash loop (restarts within backoffResetMs)
   * the next spare waits as the restart backoff does, so a build that keeps
   * crashing cannot make the host spawn processes faster than it restarts.
   */
  private keepStandby(): void {
    if (!this.wantsStandby || this.stopping) {
      if (this.standby.active) void this.standby.close();
      return;
    }
    const delayMs = this.attempt > 0 ? Math.min(this.config.backoffMaxMs, this.config.backoffInitialMs * 2 ** Math.min(this.attempt - 1, 30)) : 0;
    this.standby.replenish(delayMs);
  }

  /**
   * Spawns a spare: handshake and Describe, checked as a launch's are, but
   * no Start, no Deliver stream, and its token is not registered with the
   * host service (so it can make no host call) until it is promoted.
   */
  private async spawnSpare(signal: AbortSignal, build?: Build): Promise<Spare> {
    const id = ++this.launches;
    const instanceId = `${this.name}-${id}`;
    const token = randomBytes(24).toString("base64url");
    const { command, args } = build ?? this.config;
    const proc = await this.spawnProcess(instanceId, token, signal, { command, args });
    const conn = dialPlugin(proc.handshake, token, this.name);
    const spare: Spare = { id, instanceId, token, proc, conn, description: undefined as unknown as DescribeResponse, command, args, since: 0 };
    const onAbort = (): void => proc.signalGroup("SIGKILL");
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      spare.description = await conn.plugin.describe({ protocolVersion: proc.handshake.protocolVersion }, { deadlineMs: CONTROL_CALL_DEADLINE_MS });
      this.checkDescription(spare.description, proc.handshake.protocolVersion);
      return spare;
    } catch (e) {
      const exited = proc.hasExited || (await Promise.race([proc.exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), STREAM_BROKEN_GRACE_MS).unref())]));
      await this.discardSpare(spare);
      const error = PlugwireError.from(e, "handshake_failed", this.name);
      if (!exited || signal.aborted) throw error;
      const exit = await proc.exited;
      throw new PlugwireError(error.code, `it ${describeExit(exit)} before it answered Describe (${error.message}).${launchStderrTail(proc.stderrTail().slice(-10))}`, {
        plugin: this.name,
        cause: e,
      });
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }

  /** Kills a spare that will not serve (its whole group) and frees its socket. */
  private async discardSpare(spare: Spare): Promise<void> {
    spare.proc.signalGroup("SIGKILL");
    await spare.proc.exited;
    spare.conn.close();
    spare.proc.signalGroup("SIGKILL", true);
    const path = join(this.ctx.runDir(), socketFileName(spare.instanceId));
    try {
      rmSync(path, { force: true });
    } catch (e) {
      this.log.warn({ path, err: String(e) }, "could not remove the socket file of a warm standby spare");
    }
  }

  /** The supervisor's relaunch, a lifecycle operation; `ops` is operatorOps when it was scheduled. */
  private async relaunch(ops: number): Promise<void> {
    // An operator start, restart or stop asked for since then has taken over.
    if (this.stopping || ops !== this.operatorOps || this.state !== "restarting") return;
    try {
      await this.launchOnce();
    } catch (e) {
      if (this.stopping) return;
      const error = PlugwireError.from(e, "plugin_unavailable", this.name);
      this.lastError = error.message;
      this.lastExit = "failed to relaunch";
      this.log.error({ err: error.message }, "relaunch failed");
      if (error.code === "plugin_refused") {
        // A deterministic refusal (its Describe breaks the limits): every
        // relaunch would be refused the same way, so quarantine it now.
        this.setState("failed", error.message);
        this.failPending(`plugin '${this.name}' was refused on relaunch and is quarantined (${error.message})`);
        return;
      }
      if (e instanceof PinMismatchError) {
        // Retrying cannot help: the file is not the pinned one.
        this.setState("failed", error.message);
        this.failPending(error.message);
        return;
      }
      this.scheduleRestart("launch-failed", { code: null, signal: null });
    }
  }
}
