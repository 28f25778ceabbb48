/** Restart decisions, backoff and crash-loop quarantine: pure logic, no I/O. */
import type { RestartType } from "../config.js";

/** Why a launch ended. */
export type EndReason = "exit" | "crash" | "hung" | "stream-broken" | "launch-failed";

/** OTP semantics: should this end lead to a restart? */
export function shouldRestart(type: RestartType, reason: EndReason, exitCode: number | null, signal: string | null): boolean {
  switch (type) {
    case "permanent":
      return true;
    case "temporary":
      return false;
    case "transient":
      return !(reason === "exit" && exitCode === 0 && signal === null);
  }
}

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

/**
 * Full-jitter exponential backoff: attempt 0 restarts at once; attempt n>=1
 * waits a random time in [0, min(max, initial * 2^(n-1))].
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  if (attempt <= 0) return 0;
  const ceiling = Math.min(options.maxMs, options.initialMs * 2 ** Math.min(attempt - 1, 30));
  return Math.floor(random() * ceiling);
}

/** Counts restarts in a sliding window; too many means a crash loop. */
export class RestartWindow {
  private times: number[] = [];

  constructor(
    private readonly maxRestarts: number,
    private readonly windowMs: number,
  ) {}

  /** Records a restart at `now`; false when it is one too many (quarantine). */
  allow(now: number): boolean {
    this.times = this.times.filter((t) => now - t < this.windowMs);
    this.times.push(now);
    return this.times.length <= this.maxRestarts;
  }

  reset(): void {
    this.times = [];
  }
}
