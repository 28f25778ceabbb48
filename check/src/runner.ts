/** Runs every check against one plugin command and builds the report. */
import { PlugwireError } from "@plugwire/proto";
import { CHECKS } from "./checks.js";
import { describeExit } from "./process.js";
import { Session } from "./session.js";
import { CheckFailure, fail, skip, type Check, type CheckReport, type CheckResult, type Outcome } from "./types.js";
import { messageOf } from "./util.js";

/** Handshake timeout, RPC deadline and ack wait unless told otherwise. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Slack on top of exit limits, for loaded machines. */
export const DEFAULT_EXIT_MARGIN_MS = 500;

export interface CheckOptions {
  /** The plugin's executable. */
  command: string;
  args?: readonly string[];
  /** Handshake timeout, per-call deadline, and how long an ack may not advance, in ms. Default 10 000. */
  timeoutMs?: number;
  /** Slack allowed on top of the timing limits (exits, the 20 ms ack interval) on a loaded machine, in ms. Default 500. */
  exitMarginMs?: number;
  /** Called as each check finishes, for progress output. */
  onResult?: (result: CheckResult) => void;
  /** Aborting kills every process the kit started, at once. */
  signal?: AbortSignal;
}

function positiveMs(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) throw new PlugwireError("invalid_argument", `${name} must be a whole number of milliseconds above 0, got ${value}`);
  return value;
}

async function outcomeOf(check: Check, session: Session, done: ReadonlyMap<string, CheckResult>): Promise<Outcome> {
  const unmet = (check.needs ?? []).filter((id) => done.get(id)?.status !== "pass");
  const failed = unmet.filter((id) => done.get(id)?.status === "fail");
  if (failed.length > 0) return skip(`needs ${failed.map((id) => `'${id}'`).join(", ")} to pass first`);
  // A prerequisite that was itself skipped passes on its reason (e.g. "not stateful").
  if (unmet.length > 0) return skip(done.get(unmet[0]!)?.detail ?? `needs '${unmet[0]}' to run first`);
  const gone = check.mainLaunch ? session.main?.proc.exitInfo : undefined;
  if (gone) return skip(`the plugin's main launch is gone: it ${describeExit(gone)} during an earlier check`);
  try {
    return await check.run(session);
  } catch (e) {
    if (e instanceof CheckFailure) return fail(e.message);
    return fail(`the check itself failed unexpectedly (please report this): ${messageOf(e)}`);
  }
}

/**
 * Acts as a host for `command`: launches it several times, serves
 * HostService, and runs every conformance check. Never throws for a
 * misbehaving plugin; that is what the report is for.
 */
export async function runCheck(options: CheckOptions): Promise<CheckReport> {
  const timeoutMs = positiveMs(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const exitMarginMs = options.exitMarginMs ?? DEFAULT_EXIT_MARGIN_MS;
  if (!Number.isInteger(exitMarginMs) || exitMarginMs < 0) throw new PlugwireError("invalid_argument", "exitMarginMs must be a whole number ≥ 0");
  if (!options.command) throw new PlugwireError("invalid_argument", "runCheck needs the plugin's command");
  const session = await Session.open({ command: options.command, args: options.args ?? [], timeoutMs, exitMarginMs });
  const onAbort = (): void => session.killNow();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const results = new Map<string, CheckResult>();
  try {
    for (const check of CHECKS) {
      if (options.signal?.aborted) break;
      const result: CheckResult = { id: check.id, title: check.title, ...(await outcomeOf(check, session, results)) };
      results.set(check.id, result);
      options.onResult?.(result);
    }
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await session.close();
  }
  const checks = [...results.values()];
  return {
    command: [options.command, ...(options.args ?? [])],
    checks,
    passed: checks.filter((c) => c.status === "pass").length,
    failed: checks.filter((c) => c.status === "fail").length,
    skipped: checks.filter((c) => c.status === "skip").length,
    timings: session.timings(),
  };
}
