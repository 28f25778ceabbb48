/**
 * The embeddable host: createHost({ plugins, ports, dataDir }) supervises the
 * plugins, serves HostService to them, routes payloads by kind, and drives
 * snapshots.
 */
import { EventEmitter } from "node:events";
import { mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { PlugwireError } from "@plugwire/proto";
import { resolveRemoteHostService, type RemoteHostServiceOptions } from "./launch/attach.js";
import { checkHostOptions, resolvePlugins, resolveStopTimeoutMs, type PluginEntry } from "./config.js";
import type { DeadLetter, DispatchOptions } from "./delivery/channel.js";
import type { HostEvents } from "./events.js";
import { checkSocketPath, chooseRunDirParent, createRunDirIn, longestSocketFileName, removeRunDir } from "./launch/rundir.js";
import { HostMetrics } from "./metrics.js";
import { hex, type HostPorts, type NodeId, type PeerEvent } from "./ports.js";
import { HostServiceServer, type Caller } from "./services/host-service.js";
import { FileSnapshotStore, explainFsError, type SnapshotRecord, type SnapshotStore } from "./snapshot/store.js";
import { PluginRunner, type PluginStatus, type ShadowedKind, type UpgradeResult } from "./supervisor/runner.js";
import { Semaphore } from "./supervisor/semaphore.js";
import { lockDataDir, type DataDirLock } from "./data-lock.js";

/** How often a running host checks that its socket dir and host.sock are still there. */
const RUN_DIR_CHECK_MS = 5_000;

export interface HostOptions {
  /** The plugins, in priority order: the first to claim a kind wins it. */
  plugins: readonly PluginEntry[];
  /** HostService on TCP with mutual TLS for attached plugins (docs/remote-plugins.md); default: unix socket only. */
  remoteHostService?: RemoteHostServiceOptions;
  ports: HostPorts;
  /** Where plugin data dirs and (by default) snapshots live. */
  dataDir: string;
  logger?: Logger;
  /** Where snapshots are kept, per plugin and stateful id; default: files under `${dataDir}/snapshots`. */
  store?: SnapshotStore;
  /**
   * Parent of the host's private socket dir (pw-XXXXXX, mode 0700). It must
   * be an absolute path without whitespace, short enough that every socket
   * path fits in 103 bytes. Default: the OS temp dir when it is such a path
   * with room for the configured plugins' sockets, otherwise /tmp.
   */
  runDirParent?: string;
  /** Snapshot every stateful plugin this often; 0 disables. Default 30 s. */
  snapshotIntervalMs?: number;
  /** Largest snapshot accepted, in bytes. Default 256 MiB. */
  maxSnapshotBytes?: number;
  /** Plugins between spawn and handshake at once, at most. Default: twice the CPU count, at least 2. */
  maxConcurrentLaunches?: number;
  /**
   * How long `host.stop()` may take in all: draining in-flight payloads, the
   * final snapshots and the shutdown ladder. A final snapshot still running
   * when only the ladder's share is left is abandoned, and the ladder shrinks
   * so that every plugin is SIGKILLed by this deadline. Default 10 s.
   */
  stopTimeoutMs?: number;
  /**
   * A payload kind claimed by two plugins: false (default), the first listed
   * wins and the other's claim is shadowed (a warning, a `kind:shadowed`
   * event, `shadowedKinds` in its status); true, an error: the later plugin
   * is refused and start() fails, naming both plugins and the kind.
   */
  strictKinds?: boolean;
}

/** Outcome of an operation that runs over every plugin. */
export interface FanOutResult<T = void> {
  ok: Array<{ plugin: string; value: T }>;
  failed: Array<{ plugin: string; error: PlugwireError }>;
}

export class Host extends EventEmitter<HostEvents> {
  readonly metrics = new HostMetrics(() =>
    this.runners.map((r) => ({
      plugin: r.name,
      queued: r.channel.queued,
      inFlight: r.channel.inFlight,
      dispatched: r.channel.dispatchedTotal,
      acked: r.channel.ackedTotal,
    })),
  );
  readonly logger: Logger;
  private readonly runners: PluginRunner[];
  private readonly byName = new Map<string, PluginRunner>();
  private readonly routes = new Map<string, PluginRunner>();
  /** Per plugin, its claimed kinds that an earlier plugin owns. */
  private readonly shadowed = new Map<string, ShadowedKind[]>();
  private readonly tokens = new Map<string, Caller>();
  /** Stateful id -> the plugin that declared it first; each plugin holds at most one. */
  private readonly statefulIds = new Map<string, string>();
  private readonly store: SnapshotStore;
  private runDir: string | undefined;
  /** `<dataDir>/host.lock`, held from start() to the end of stop() (data-lock.ts). */
  private dataLock: DataDirLock | undefined;
  private service: HostServiceServer | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  private runDirTimer: NodeJS.Timeout | undefined;
  private removeRunDirOnExit: (() => void) | undefined;
  private started = false;
  private stopped = false;
  /** The one run of stop(); later calls wait for it. */
  private stopRun: Promise<void> | undefined;
  private readonly stopTimeoutMs: number;
  private readonly remoteHostService: ReturnType<typeof resolveRemoteHostService> | undefined;

  constructor(private readonly options: HostOptions) {
    super();
    this.logger = options.logger ?? pino({ name: "plugwire" });
    checkHostOptions(options as unknown as Record<string, unknown>);
    const configs = resolvePlugins(options.plugins);
    this.remoteHostService = options.remoteHostService === undefined ? undefined : resolveRemoteHostService(options.remoteHostService);
    this.stopTimeoutMs = resolveStopTimeoutMs(options.stopTimeoutMs);
    const launchSlots = new Semaphore(options.maxConcurrentLaunches ?? Math.max(2, 2 * availableParallelism()));
    try {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
    } catch (e) {
      throw new PlugwireError("invalid_config", `the host's dataDir ${options.dataDir} cannot be used: ${explainFsError(e, options.dataDir)}`, { cause: e });
    }
    this.store =
      options.store ??
      new FileSnapshotStore({
        dir: join(options.dataDir, "snapshots"),
        onCorrupt: (c) =>
          this.logger.error(
            { plugin: c.plugin, id: c.id, path: c.path, reason: c.reason },
            `plugin '${c.plugin ?? "?"}': skipped snapshot file ${c.path} (${c.reason}); an older generation is used if one is readable. ` +
              `Payloads acked after that generation are missing from the restored state. Move the file away to inspect it.`,
          ),
        onAdopt: (a) =>
          this.logger.warn(
            { plugin: a.plugin, id: a.id, from: a.from, to: a.to },
            `plugin '${a.plugin}' adopted the snapshots of stateful id '${a.id}' written before snapshots were kept per plugin (moved ${a.from} to ${a.to})`,
          ),
      });
    this.runners = configs.map(
      (config) =>
        new PluginRunner(config, {
          runDir: () => this.runDir!,
          ensureRunDir: () => this.ensureRunDir(),
          hostAddress: () => this.service!.address,
          dataDir: options.dataDir,
          logger: this.logger,
          store: this.store,
          maxSnapshotBytes: options.maxSnapshotBytes ?? 256 * 1024 * 1024,
          ports: options.ports,
          metrics: this.metrics,
          emit: (event, ...args) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args),
          launchSlots,
          registerToken: (token, caller) => this.tokens.set(token, caller),
          unregisterToken: (token) => this.tokens.delete(token),
          claimStatefulId: (plugin, id) => this.claimStatefulId(plugin, id),
          isPluginName: (name) => this.byName.has(name),
        }),
    );
    for (const runner of this.runners) this.byName.set(runner.name, runner);
    // The snapshot gauges (age, size, applied_seq) follow the host's own events.
    this.on("snapshot:taken", (e) => this.metrics.snapshotStored(e.plugin, e.sizeBytes, e.appliedSeq));
    this.on("snapshot:restored", (e) => this.metrics.snapshotStored(e.plugin, e.sizeBytes, e.appliedSeq));
  }

  /**
   * Launches every plugin and waits until all are ready. If any plugin fails
   * to start, the others are stopped and the error names each failure.
   */
  async start(): Promise<void> {
    if (this.started) throw new PlugwireError("invalid_argument", "host.start() was already called");
    this.started = true;
    // One host per data dir: a second one would overwrite this one's snapshots.
    this.dataLock = lockDataDir(this.options.dataDir, this.logger);
    try {
      const choice = chooseRunDirParent(this.options.runDirParent, longestSocketFileName(["admin", ...this.runners.map((r) => r.name)]));
      if (choice.note) this.logger.info({ runDirParent: choice.parent }, choice.note);
      this.runDir = createRunDirIn(choice.parent);
    } catch (e) {
      this.dataLock.release();
      throw e;
    }
    const runDir = this.runDir;
    // Remove the socket dir even when the application exits without stop().
    this.removeRunDirOnExit = () => removeRunDir(runDir);
    process.once("exit", this.removeRunDirOnExit);
    const socketPath = join(this.runDir, "host.sock");
    try {
      checkSocketPath(socketPath, "plugwire host");
      this.service = new HostServiceServer({
        ports: this.options.ports,
        socketPath,
        callerOf: (token) => this.tokens.get(token),
        limitsOf: (plugin) => this.byName.get(plugin)?.config,
        logger: this.logger,
        metrics: this.metrics,
      });
      await this.service.listen();
      if (this.remoteHostService) {
        const port = await this.service.listenRemote(this.remoteHostService.address, this.remoteHostService.credentials);
        this.logger.info({ listen: this.remoteHostService.listen, port }, "HostService also listening on TCP for attached plugins (remoteHostService)");
      }
    } catch (e) {
      removeRunDir(this.runDir);
      this.dataLock?.release();
      throw e;
    }
    const results = await Promise.allSettled(this.runners.map((r) => r.start()));
    const failures = results.flatMap((r, i) => (r.status === "rejected" ? [{ plugin: this.runners[i]!.name, error: PlugwireError.from(r.reason) }] : []));
    if (failures.length === 0) failures.push(...this.buildRoutes());
    if (failures.length > 0) {
      await this.stop();
      if (failures.length === 1) throw failures[0]!.error;
      throw new PlugwireError(
        failures[0]!.error.code,
        `${failures.length} of ${this.runners.length} plugins failed to start:\n${failures.map((f) => `- ${f.error.message}`).join("\n")}`,
        { cause: new AggregateError(failures.map((f) => f.error)) },
      );
    }
    this.runDirTimer = setInterval(() => void this.ensureRunDir(), RUN_DIR_CHECK_MS);
    this.runDirTimer.unref();
    const interval = this.options.snapshotIntervalMs ?? 30_000;
    if (interval > 0) {
      this.snapshotTimer = setInterval(() => {
        void this.snapshotEach((r) => r.snapshotIfIdle());
      }, interval);
      this.snapshotTimer.unref();
    }
    this.logger.info({ plugins: this.runners.map((r) => r.name), kinds: [...this.routes.keys()] }, "plugwire host ready");
  }

  private runDirRepair: Promise<void> | undefined;

  /**
   * Before every spawn, and every RUN_DIR_CHECK_MS: if something removed the
   * host's socket dir or host.sock (a temp-dir cleaner under a long-running
   * host), serve host.sock again, so that plugins launched from now on can
   * reach HostService. One repair at a time.
   */
  private ensureRunDir(): Promise<void> {
    if (!this.service || this.stopped) return Promise.resolve();
    this.runDirRepair ??= this.service
      .ensureListening()
      .then(
        (repaired) => {
          if (repaired) {
            this.logger.error(
              { runDir: this.runDir },
              `the host's socket dir ${this.runDir} or its host.sock was removed while the host ran (a temp-dir cleaner?); it was re-created and HostService serves again. ` +
                `Exclude pw-* there from cleaners, or set runDirParent to a directory they do not touch`,
            );
          }
        },
        (e: unknown) => {
          this.logger.error({ runDir: this.runDir, err: String(e) }, "the host's socket dir or host.sock was removed and could not be re-created; plugins launched now cannot reach HostService");
        },
      )
      .finally(() => {
        this.runDirRepair = undefined;
      });
    return this.runDirRepair;
  }

  /** The first plugin to declare a stateful id keeps it; returns the holder when it is another plugin. */
  private claimStatefulId(plugin: string, id: string): string | undefined {
    const holder = this.statefulIds.get(id);
    if (holder !== undefined && holder !== plugin) {
      this.logger.error({ plugin, id, holder }, `plugin '${plugin}' declares stateful id '${id}', already declared by plugin '${holder}'; refused`);
      return holder;
    }
    for (const [held, by] of this.statefulIds) if (by === plugin && held !== id) this.statefulIds.delete(held);
    this.statefulIds.set(id, plugin);
    return undefined;
  }

  /**
   * Routes each kind to the first plugin (in config order) that claims it.
   * A later claim is shadowed: warned about once per plugin, told as a
   * `kind:shadowed` event per kind, and listed in that plugin's status. With
   * strictKinds, each plugin with a shadowed claim is refused instead: the
   * failures returned name both plugins and the kind.
   */
  private buildRoutes(): Array<{ plugin: string; error: PlugwireError }> {
    const refused: Array<{ plugin: string; error: PlugwireError }> = [];
    for (const runner of this.runners) {
      const shadowed: ShadowedKind[] = [];
      for (const kind of runner.kinds) {
        const owner = this.routes.get(kind);
        if (owner) shadowed.push({ kind, owner: owner.name });
        else this.routes.set(kind, runner);
      }
      if (shadowed.length === 0) continue;
      this.shadowed.set(runner.name, shadowed);
      const list = shadowed.map((s) => `'${s.kind}' (owned by '${s.owner}')`);
      const shown = list.length > 10 ? `${list.slice(0, 10).join(", ")} and ${list.length - 10} more` : list.join(", ");
      if (this.options.strictKinds === true) {
        const first = shadowed[0]!;
        refused.push({
          plugin: runner.name,
          error: new PlugwireError(
            "plugin_refused",
            `plugin '${runner.name}' claims payload kind '${first.kind}', which plugin '${first.owner}' (listed before it) already claims` +
              `${shadowed.length > 1 ? `; all its shadowed kinds: ${shown}` : ""}. strictKinds is on, so '${runner.name}' is refused. ` +
              `Remove the kind from one of the two plugins, or turn strictKinds off to let the first listed win.`,
            { plugin: runner.name },
          ),
        });
        continue;
      }
      this.logger.warn(
        { plugin: runner.name, shadowedKinds: shadowed.slice(0, 100), count: shadowed.length },
        `plugin '${runner.name}' claims ${shadowed.length} payload kind(s) that plugins listed before it already claim: ${shown}. ` +
          `Those payloads go to the earlier plugin (first claim wins); remove the claims, reorder the plugins, or set strictKinds to make this an error`,
      );
      for (const s of shadowed) this.emit("kind:shadowed", { kind: s.kind, plugin: runner.name, owner: s.owner });
    }
    return refused;
  }

  /**
   * The host's private run dir (mode 0700, under `runDirParent`) that holds
   * its sockets, from `start()` until `stop()` removes it; undefined before.
   * An application may put its own sockets here, as the CLI does with the
   * admin API's `admin.sock`.
   */
  get runDirectory(): string | undefined {
    return this.runDir;
  }

  /** Which plugin handles `kind`, if any. */
  ownerOf(kind: string): string | undefined {
    return this.routes.get(kind)?.name;
  }

  /**
   * Delivers a payload to the plugin that claims `kind`. Resolves when the
   * plugin has acked it; rejects with a PlugwireError when no plugin claims
   * the kind, the handler failed, or the plugin is failed. `options.onEffect`
   * is told each effect of the payload's handler (sends), once each.
   */
  dispatch(src: NodeId, kind: string, body: Uint8Array, options?: DispatchOptions): Promise<void> {
    if (this.stopped) {
      return Promise.reject(new PlugwireError("plugin_unavailable", `payload of kind '${kind}' was not accepted: the host is stopping or stopped`));
    }
    const runner = this.routes.get(kind);
    if (!runner) {
      return Promise.reject(
        new PlugwireError(
          "no_plugin_for_kind",
          `no plugin claims payload kind '${kind}' (from peer ${hex(src).slice(0, 16)}); claimed kinds: ${[...this.routes.keys()].join(", ") || "none"}. ` +
            `Add a plugin that lists it in its payload kinds.`,
        ),
      );
    }
    return runner.dispatch(src, kind, body, options);
  }

  /**
   * Delivers many payloads of one kind from one source, in order, as one
   * call: the batch API of the hot path. One promise for all of them, and no
   * promise or resolver per payload: it resolves once the plugin has acked
   * every one, and rejects once all are settled if any failed (handler
   * error, refused when queued), with the first failure's code and a message
   * that counts the failures; the others are delivered all the same. Each
   * payload is a sequenced item exactly as with dispatch(): the same
   * delivery guarantees, the same limits (maxQueued counts each payload).
   */
  dispatchMany(src: NodeId, kind: string, bodies: readonly Uint8Array[], options?: DispatchOptions): Promise<void> {
    if (this.stopped) {
      return Promise.reject(new PlugwireError("plugin_unavailable", `${bodies.length} payloads of kind '${kind}' were not accepted: the host is stopping or stopped`));
    }
    const runner = this.routes.get(kind);
    if (!runner) return this.dispatch(src, kind, bodies[0] ?? new Uint8Array(0), options);
    return runner.dispatchMany(src, kind, bodies, options);
  }

  /**
   * Tells every plugin that a peer was forgotten, as a sequenced item of its
   * Deliver stream (replayed after a crash like a payload). Resolves once
   * every plugin acked it or failed; a restarting plugin is told once it is
   * back. One plugin's failure does not stop the others.
   */
  async peerForgotten(peer: NodeId): Promise<FanOutResult> {
    if (this.stopped) {
      return { ok: [], failed: this.runners.map((r) => ({ plugin: r.name, error: new PlugwireError("plugin_unavailable", `plugin '${r.name}' was not told about the forgotten peer: the host is stopping or stopped`, { plugin: r.name }) })) };
    }
    const result = await this.fanOut(this.runners, (r) => r.peerForgotten(peer), "plugin_unavailable");
    for (const f of result.failed) this.logger.warn({ plugin: f.plugin, err: f.error.message }, "plugin failed to handle a forgotten peer");
    return result;
  }

  /** Sends a peer event to every plugin watching peers; returns how many streams got it. */
  publishPeerEvent(event: PeerEvent): number {
    return this.service?.publish(event) ?? 0;
  }

  /** Snapshots every stateful plugin. One plugin's failure does not stop the others. */
  async snapshotAll(): Promise<FanOutResult<SnapshotRecord>> {
    return this.snapshotEach((r) => r.snapshot());
  }

  private async snapshotEach(take: (r: PluginRunner) => Promise<SnapshotRecord | undefined>): Promise<FanOutResult<SnapshotRecord>> {
    const stateful = this.readyRunners().filter((r) => r.statefulId !== undefined);
    const result = await this.fanOut(stateful, take, "snapshot_failed");
    for (const f of result.failed) this.logger.error({ plugin: f.plugin, err: f.error.message }, "snapshot failed");
    // A skipped background snapshot (one was already pending) is no result.
    return { ok: result.ok.filter((o): o is { plugin: string; value: SnapshotRecord } => o.value !== undefined), failed: result.failed };
  }

  /** Snapshots one plugin now. */
  async snapshot(name: string): Promise<SnapshotRecord | undefined> {
    return this.runner(name).snapshot();
  }

  /**
   * Restarts one plugin (snapshotting it first); brings back a failed plugin.
   * Lifecycle operations on a plugin run one at a time; a restart asked for
   * while another has not yet stopped the old process joins that one.
   */
  async restart(name: string): Promise<void> {
    const runner = this.runner(name);
    if (this.stopped) {
      throw new PlugwireError("plugin_unavailable", `plugin '${name}' was not restarted: the host is stopping or stopped; create and start a new host`, {
        plugin: name,
      });
    }
    await runner.restart();
  }

  /**
   * Hot upgrade: replaces a running plugin's build with `command` and `args`
   * (each defaults to the current one) with no payload lost or duplicated,
   * handing its state over through a snapshot; rolls back to the running
   * build, which keeps serving, when the new one fails. See
   * docs/supervision.md, "Hot upgrade".
   */
  async upgrade(name: string, build: { command?: string; args?: readonly string[] } = {}): Promise<UpgradeResult> {
    const runner = this.runner(name);
    if (this.stopped) {
      throw new PlugwireError("plugin_unavailable", `plugin '${name}' was not upgraded: the host is stopping or stopped`, { plugin: name });
    }
    if (build.command !== undefined && (typeof build.command !== "string" || build.command.length === 0)) {
      throw new PlugwireError("invalid_argument", `plugin '${name}' was not upgraded: command must be a non-empty string (the new build's executable)`, { plugin: name });
    }
    if (build.args !== undefined && (!Array.isArray(build.args) || !build.args.every((a) => typeof a === "string"))) {
      throw new PlugwireError("invalid_argument", `plugin '${name}' was not upgraded: args must be a list of strings`, { plugin: name });
    }
    return runner.upgrade(build);
  }

  /** Stops one plugin through the shutdown ladder (snapshotting it first); `restart` brings it back. */
  async stopPlugin(name: string): Promise<void> {
    await this.runner(name).stop({ snapshot: true });
  }

  /** Dispatches a dead letter again as a new payload and removes it from the list. */
  replayDeadLetter(name: string, seq: number): Promise<void> {
    const runner = this.runner(name);
    const letter = runner.channel.takeDeadLetter(seq);
    if (!letter) {
      return Promise.reject(
        new PlugwireError("invalid_argument", `plugin '${name}' has no dead letter with seq ${seq}; list them with listDeadLetters('${name}')`, {
          plugin: name,
        }),
      );
    }
    this.logger.info({ plugin: name, seq, kind: letter.kind }, "replaying a dead letter");
    return letter.forget ? runner.peerForgotten(letter.src) : runner.dispatch(letter.src, letter.kind, letter.body);
  }

  status(): PluginStatus[] {
    return this.runners.map((r) => ({ ...r.status(), shadowedKinds: this.shadowed.get(r.name) ?? [] }));
  }

  listDeadLetters(name: string): readonly DeadLetter[] {
    return this.runner(name).listDeadLetters();
  }

  /**
   * Stops every plugin through the shutdown ladder, after a final snapshot,
   * within `stopTimeoutMs` (default 10 s) in all. A second call waits for
   * the first.
   */
  stop(): Promise<void> {
    this.stopRun ??= this.stopAll();
    return this.stopRun;
  }

  private async stopAll(): Promise<void> {
    this.stopped = true;
    const budgetMs = this.stopTimeoutMs;
    const deadline = performance.now() + budgetMs;
    // The drain and the final snapshots end early enough to leave the
    // shutdown ladder its usual time, but at most half the budget.
    const ladderMs = Math.min(budgetMs / 2, Math.max(0, ...this.runners.map((r) => r.config.shutdownTimeoutMs + r.config.killGraceMs)));
    const ladderAt = deadline - ladderMs;
    const left = (until: number): number => Math.max(0, Math.floor(until - performance.now()));
    clearInterval(this.snapshotTimer);
    clearInterval(this.runDirTimer);
    // No relaunch from here on; launches under way are killed, and restarts
    // asked for earlier give up.
    for (const r of this.runners) r.prepareStop();
    // Refuse new payloads, fail those never sent, and let the plugins ack
    // what they already have: the final snapshot then covers every payload
    // whose dispatch resolved, and nothing acked after it is lost.
    const stopping = (entry: { kind: string }, plugin: string): PlugwireError =>
      new PlugwireError("plugin_unavailable", `payload of kind '${entry.kind}' for plugin '${plugin}' was not delivered: the host is stopping`, {
        plugin,
      });
    for (const r of this.runners) r.channel.failUnsent((e) => stopping(e, r.name));
    const drained = await Promise.all(
      this.readyRunners().map(async (r) => [r.name, await r.channel.drainInFlight(Math.min(r.config.shutdownTimeoutMs, left(ladderAt)))] as const),
    );
    for (const [plugin, ok] of drained) {
      if (!ok) this.logger.warn({ plugin }, "plugin did not ack its in-flight payloads before the shutdown deadline");
    }
    if (this.routes.size > 0) await this.finalSnapshots(ladderAt, budgetMs);
    await Promise.all(this.runners.map((r) => r.stop({ deadline })));
    for (const r of this.runners) r.failPending("the host stopped");
    if (this.service) {
      // Every plugin is gone; its calls end with it. Bounded all the same.
      const closed = await withTimeout(this.service.close(), Math.max(1_000, left(deadline)));
      if (!closed) this.service.forceClose();
    }
    if (this.runDir) removeRunDir(this.runDir);
    if (this.removeRunDirOnExit) process.off("exit", this.removeRunDirOnExit);
    this.dataLock?.release();
    this.logger.info("plugwire host stopped");
  }

  /**
   * The final snapshot of every ready stateful plugin, each abandoned (with a
   * log line that says what is lost) if it has not finished by `until`.
   */
  private async finalSnapshots(until: number, budgetMs: number): Promise<void> {
    const stateful = this.readyRunners().filter((r) => r.statefulId !== undefined);
    await Promise.all(
      stateful.map(async (r) => {
        const taken = r.snapshot();
        try {
          if (await withTimeout(taken, Math.max(0, until - performance.now()))) return;
        } catch (e) {
          this.logger.error({ plugin: r.name, err: PlugwireError.from(e, "snapshot_failed", r.name).message }, "snapshot failed");
          return;
        }
        taken.catch(() => undefined); // it fails once the plugin is stopped
        this.logger.error(
          { plugin: r.name, stopTimeoutMs: budgetMs, unsnapshotted: r.channel.replayCount, lastAcked: r.channel.lastAcked },
          `plugin '${r.name}': its final snapshot did not finish in the time host.stop() leaves for it (stopTimeoutMs ${budgetMs} ms, ` +
            `less the shutdown ladder's share), so it was abandoned and the plugin is being stopped. The ${r.channel.replayCount} payloads it acked ` +
            `since its last stored snapshot (through seq ${r.channel.lastAcked}) are missing from the state its next start restores, unless the plugin ` +
            `keeps them itself. Find out why its Snapshot does not finish, or raise stopTimeoutMs.`,
        );
      }),
    );
  }

  private runner(name: string): PluginRunner {
    const runner = this.byName.get(name);
    if (!runner) {
      throw new PlugwireError("invalid_argument", `no plugin named '${name}'; plugins: ${[...this.byName.keys()].join(", ")}`);
    }
    return runner;
  }

  private readyRunners(): PluginRunner[] {
    return this.runners.filter((r) => r.currentState === "ready");
  }

  private async fanOut<T>(runners: PluginRunner[], op: (r: PluginRunner) => Promise<T>, code: PlugwireError["code"]): Promise<FanOutResult<T>> {
    const settled = await Promise.allSettled(runners.map(op));
    const result: FanOutResult<T> = { ok: [], failed: [] };
    settled.forEach((s, i) => {
      const plugin = runners[i]!.name;
      if (s.status === "fulfilled") result.ok.push({ plugin, value: s.value });
      else result.failed.push({ plugin, error: PlugwireError.from(s.reason, code, plugin) });
    });
    return result;
  }
}

/** Resolves true once `promise` fulfils, false after `ms` (its rejection is passed on). */
async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Creates a host. Call `start()` to launch the plugins. */
export function createHost(options: HostOptions): Host {
  return new Host(options);
}
