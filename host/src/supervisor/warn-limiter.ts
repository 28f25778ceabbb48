/**
 * Aggregates a log line that a plugin can trigger once per event (effects
 * refused, payloads rejected because its queue is full, handler failures, bogus
 * acks...), so that a plugin cannot make the host write a million lines.
 *
 * Per key: the first event is logged at once. Later events within the interval
 * are counted, and when the interval ends one summary line is logged, the last
 * event's message with "(N more like this in the last S s)" appended and
 * `suppressed: N` in its fields. Events keep being summarised every interval
 * while they keep coming; after a quiet interval the next one is logged at
 * once again. So a key writes at most two lines per interval, whatever the
 * plugin does.
 *
 * Keys are chosen by the host's code (one per kind of warning), never taken
 * from what a plugin sent, so their number is bounded.
 */
export type LimitedLevel = "info" | "warn" | "error";

/** Where lines go: a pino-like logger. */
export interface LimitedSink {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

interface KeyState {
  /** When the current interval began. */
  since: number;
  suppressed: number;
  level: LimitedLevel;
  fields: object;
  message: string;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export const DEFAULT_WARN_INTERVAL_MS = 10_000;

export class WarnLimiter {
  private readonly keys = new Map<string, KeyState>();

  constructor(
    private readonly sink: LimitedSink,
    readonly intervalMs = DEFAULT_WARN_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  warn(key: string, fields: object, message: string): void {
    this.log("warn", key, fields, message);
  }

  error(key: string, fields: object, message: string): void {
    this.log("error", key, fields, message);
  }

  /** Logs the line, or counts it toward the key's next summary. Returns true when it was logged now. */
  log(level: LimitedLevel, key: string, fields: object, message: string): boolean {
    const state = this.keys.get(key);
    if (state === undefined) {
      this.sink[level](fields, message);
      this.keys.set(key, { since: this.now(), suppressed: 0, level, fields, message, timer: this.arm(key, this.intervalMs) });
      return true;
    }
    state.suppressed++;
    state.level = level;
    state.fields = fields;
    state.message = message;
    return false;
  }

  /** Events counted and not yet summarised, for a key (0 if none). */
  pending(key: string): number {
    return this.keys.get(key)?.suppressed ?? 0;
  }

  /** Logs every pending summary now and forgets all keys (when the plugin stops). */
  flush(): void {
    for (const key of [...this.keys.keys()]) {
      const state = this.keys.get(key)!;
      clearTimeout(state.timer);
      this.summarise(state);
      this.keys.delete(key);
    }
  }

  private arm(key: string, delayMs: number): ReturnType<typeof setTimeout> {
    const timer = setTimeout(() => this.tick(key), delayMs);
    timer.unref?.();
    return timer;
  }

  private tick(key: string): void {
    const state = this.keys.get(key);
    if (state === undefined) return;
    if (state.suppressed === 0) {
      // A quiet interval: the next event is logged at once.
      this.keys.delete(key);
      return;
    }
    this.summarise(state);
    state.suppressed = 0;
    state.since = this.now();
    state.timer = this.arm(key, this.intervalMs);
  }

  private summarise(state: KeyState): void {
    if (state.suppressed === 0) return;
    const seconds = Math.max(1, Math.round((this.now() - state.since) / 1000));
    this.sink[state.level](
      { ...state.fields, suppressed: state.suppressed },
      `${state.message} (${state.suppressed} more like this in the last ${seconds} s)`,
    );
  }
}
