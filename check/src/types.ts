/** The vocabulary of the conformance kit: checks, their outcomes and the report. */
import type { Session } from "./session.js";

export type CheckStatus = "pass" | "fail" | "skip";

/** What one check concluded, with a line an author can act on. */
export interface Outcome {
  status: CheckStatus;
  detail: string;
}

/** One line of the report. */
export interface CheckResult extends Outcome {
  id: string;
  title: string;
}

/** One conformance check. Checks run in a fixed order and share a session. */
export interface Check {
  /** Stable id, used in --json output and in tests. */
  id: string;
  /** What the check verifies, as a short sentence. */
  title: string;
  /** Checks that must have passed first; otherwise this one is skipped. */
  needs?: readonly string[];
  /** Talks to the main launch: skipped once that process has exited (an earlier check reported why). */
  mainLaunch?: boolean;
  run(session: Session): Promise<Outcome>;
}

export interface Timings {
  /** Spawn → handshake line of the first full launch, in ms. */
  spawnToHandshakeMs?: number;
  /** Spawn → Start answered of the first full launch, in ms. */
  spawnToReadyMs?: number;
  /** Spawn → handshake / ready of every launch brought up, in launch order. */
  launches: Array<{ spawnToHandshakeMs: number; spawnToReadyMs?: number }>;
}

/** The machine-readable report that `plugwire check --json` prints. */
export interface CheckReport {
  command: string[];
  checks: CheckResult[];
  passed: number;
  failed: number;
  skipped: number;
  timings: Timings;
}

export function pass(detail: string): Outcome {
  return { status: "pass", detail };
}

export function fail(detail: string): Outcome {
  return { status: "fail", detail };
}

export function skip(detail: string): Outcome {
  return { status: "skip", detail };
}

/** Thrown inside a check to fail it with `message`. */
export class CheckFailure extends Error {
  override name = "CheckFailure";
}
