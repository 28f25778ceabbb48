/**
 * Warm standby: one spare process of a plugin, spawned, handshaken and
 * described, that waits until the serving launch ends and is then promoted
 * (Start, Restore, replay) instead of a cold spawn. What a spare may and may
 * not do before its promotion is in docs/supervision.md ("Warm standby").
 *
 * The spare is the runner's to spawn (same command, env, limits and run dir
 * as any launch); this module owns when it is spawned, replaced after it
 * failed (with a backoff), handed over, and killed.
 */
import type { Logger } from "pino";
import { PlugwireError, type DescribeResponse } from "@plugwire/proto";
import { describeExit, type ExitInfo, type PluginProcess } from "../launch/spawn.js";
import type { DialedPlugin } from "../transport/dial.js";

/** A process waiting to be promoted. */
export interface Spare {
  /** Launch number and instance id it was spawned with (its socket is `${instanceId}.sock`). */
  id: number;
  instanceId: string;
  /** Its auth token: registered with the host service only at promotion. */
  token: string;
  proc: PluginProcess;
  conn: DialedPlugin;
  description: DescribeResponse;
  /** The build it runs: a spare of another command or args is never promoted. */
  command: string;
  args: readonly string[];
  /** Date.now() when it became ready to be promoted. */
  since: number;
}

/** What `status()` reports about the spare. */
export interface StandbyStatus {
  /** off: no spare is kept; spawning; waiting (ready to be promoted); backoff (a spare failed; the next comes later). */
  state: "off" | "spawning" | "waiting" | "backoff";
  pid: number | undefined;
  /** Spares promoted to serve so far. */
  promotions: number;
  /** Spares that failed (spawn, handshake, Describe, or an exit while waiting) so far. */
  failures: number;
  lastError: string | undefined;
}

export interface StandbyDeps {
  name: string;
  log: Logger;
  /** Spawns, dials and describes a spare; rejects if any step fails (its process is then gone). */
  spawn(signal: AbortSignal): Promise<Spare>;
  /** Kills a spare that will not be promoted and frees its socket. */
  discard(spare: Spare): Promise<void>;
  /** Backoff after a failed spare: the first delay and the cap, in ms. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  /** A spare that waited this long resets the failure backoff. */
  backoffResetMs: number;
  /** Reports a spare's life: ready, failed (with why), promoted. */
  onEvent(event: { event: "ready" | "failed" | "promoted"; pid?: number; error?: string }): void;
}

/** The smallest delay before replacing a spare that failed. */
const MIN_FAILURE_BACKOFF_MS = 250;

export class WarmStandby {
  private spare: Spare | undefined;
  private spawning: Promise<void> | undefined;
  private abort: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = true;
  private consecutiveFailures = 0;
  private promotions = 0;
  private failures = 0;
  private lastError: string | undefined;

  constructor(private readonly deps: StandbyDeps) {}

  /** True while a spare is wanted (between the first ready and a stop). */
  get active(): boolean {
    return !this.closed;
  }

  status(): StandbyStatus {
    const state = this.closed ? "off" : this.spare ? "waiting" : this.spawning ? "spawning" : this.timer ? "backoff" : "off";
    return {
      state,
      pid: this.spare?.proc.pid,
      promotions: this.promotions,
      failures: this.failures,
      lastError: this.lastError,
    };
  }

  /**
   * Makes sure a spare exists or is coming: spawns one after `delayMs` when
   * none is waiting, spawning or scheduled. A failure backoff already
   * scheduled is kept.
   */
  replenish(delayMs = 0): void {
    this.closed = false;
    if (this.spare || this.spawning || this.timer) return;
    const delay = Math.max(delayMs, this.failureDelayMs());
    if (delay <= 0) {
      this.spawnNow();
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.closed) this.spawnNow();
    }, delay);
    this.timer.unref();
  }

  /**
   * Hands over the waiting spare if it runs `command` and `args` and is
   * alive; the caller owns it from here (its exit, its socket). A spare of
   * another build is killed. Undefined when there is none.
   */
  take(command: string, args: readonly string[]): Spare | undefined {
    const spare = this.spare;
    if (!spare) return undefined;
    this.spare = undefined;
    if (spare.proc.hasExited || spare.command !== command || spare.args.join("\0") !== args.join("\0")) {
      void this.deps.discard(spare);
      return undefined;
    }
    this.promotions++;
    this.consecutiveFailures = 0;
    this.deps.onEvent({ event: "promoted", pid: spare.proc.pid });
    return spare;
  }

  /** Stops keeping a spare: a spawn under way is aborted, a waiting spare is killed. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.abort?.abort();
    const spawning = this.spawning;
    const spare = this.spare;
    this.spare = undefined;
    if (spare) await this.deps.discard(spare);
    await spawning?.catch(() => undefined);
    // A spawn that completed just as it was aborted is discarded by spawnNow.
  }

  private failureDelayMs(): number {
    if (this.consecutiveFailures === 0) return 0;
    const initial = Math.max(MIN_FAILURE_BACKOFF_MS, this.deps.backoffInitialMs);
    return Math.min(Math.max(initial, this.deps.backoffMaxMs), initial * 2 ** Math.min(this.consecutiveFailures - 1, 30));
  }

  private spawnNow(): void {
    const abort = new AbortController();
    this.abort = abort;
    const run = (async () => {
      let spare: Spare;
      try {
        spare = await this.deps.spawn(abort.signal);
      } catch (e) {
        if (abort.signal.aborted || this.closed) return;
        // This spawn is over: the replacement failed() schedules must not wait for it.
        this.spawning = undefined;
        this.failed(`its warm standby spare could not be made ready: ${PlugwireError.from(e, "plugin_unavailable", this.deps.name).message}`);
        return;
      }
      if (abort.signal.aborted || this.closed) {
        await this.deps.discard(spare);
        return;
      }
      this.spare = spare;
      spare.since = Date.now();
      this.deps.log.info({ pid: spare.proc.pid, instanceId: spare.instanceId }, "warm standby spare is ready");
      this.deps.onEvent({ event: "ready", pid: spare.proc.pid });
      void spare.proc.exited.then((exit) => this.onSpareExit(spare, exit));
    })().finally(() => {
      if (this.abort === abort) this.abort = undefined;
      if (this.spawning === run) this.spawning = undefined;
    });
    this.spawning = run;
  }

  /** A waiting spare ended by itself: it is replaced after a backoff; the serving launch is not touched. */
  private onSpareExit(spare: Spare, exit: ExitInfo): void {
    if (this.spare !== spare) return; // promoted or discarded: not ours any more
    this.spare = undefined;
    // A spare that waited long enough was healthy: its end starts the backoff over.
    if (Date.now() - spare.since >= this.deps.backoffResetMs) this.consecutiveFailures = 0;
    const tail = spare.proc.stderrTail().slice(-5);
    void this.deps.discard(spare);
    this.failed(
      `its warm standby spare (pid ${spare.proc.pid}) ${describeExit(exit)} while waiting to be promoted; the serving launch is not affected` +
        (tail.length ? `. Last stderr lines:\n  ${tail.join("\n  ")}` : ""),
    );
  }

  private failed(why: string): void {
    this.failures++;
    this.consecutiveFailures++;
    const delay = this.failureDelayMs();
    this.lastError = why;
    this.deps.log.error(
      { failures: this.consecutiveFailures, retryInMs: delay },
      `plugin '${this.deps.name}': ${why}. A new spare is spawned in ${delay} ms; until one is ready, a crash restarts the plugin with a cold spawn. ` +
        `If this repeats, check the plugin's stderr, or set warmStandby: false.`,
    );
    if (!this.closed) this.replenish();
    this.deps.onEvent({ event: "failed", error: why });
  }
}
