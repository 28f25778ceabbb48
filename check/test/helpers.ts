/**
 * Shared by the kit's tests: paths of the fixture and the examples, an
 * in-process run of the kit that asserts it left no process behind, and
 * report helpers.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { CHECKS, formatTimings, runCheck, type CheckReport, type CheckStatus } from "../src/index.js";

/** Generous: the tests assert which check fails, not how fast a loaded CI machine is. */
export const TIMEOUT_MS = 5_000;
export const EXIT_MARGIN_MS = 1_500;

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, "..", "..", "..");
export const KIT = join(here, "..", "src", "main.js");
export const BROKEN = join(here, "fixtures", "broken.js");
export const PYTHON = join(repo, "plugins-example", "python", ".venv", "bin", "python");
export const PYTHON_COUNTER = join(repo, "plugins-example", "python", "counter.py");
export const GO_PRESENCE = join(repo, "plugins-example", "go", "bin", "presence-go");
export const GO_COUNTER = join(repo, "plugins-example", "go", "bin", "counter-go");
export const RUST_COUNTER = join(repo, "target", "release", "counter-rust");
export const NOT_BUILT = "not built; run bash scripts/setup-polyglot.sh";

export const STATEFUL = ["restore-garbage", "restore-keeps-state", "restore-own", "restore-unsupported-version", "snapshot"];
export const ALL = CHECKS.map((c) => c.id);
/** What a failed 'deliver' takes with it. */
export const AFTER_DELIVER = ["ack-cadence", "message-limit", "peer-forgotten", "reconnect", "redelivery", "unclaimed-kind"];

/** Path of a compiled example plugin. */
export function example(name: string): string {
  return join(repo, "plugins-example", "dist", `${name}.js`);
}

/** A marker arg unique to one run, to find its processes with ps. */
export function newMarker(label: string): string {
  return `pwcheck-${label}-${randomBytes(4).toString("hex")}`;
}

export function processesWith(marker: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile("ps", ["-ww", "-eo", "pid,args"], { timeout: 10_000 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout.split("\n").filter((line) => line.includes(marker)));
    });
  });
}

export function ids(report: CheckReport, status: CheckStatus): string[] {
  return report.checks.filter((c) => c.status === status).map((c) => c.id).sort();
}

/** Every check that did not pass, for assertion messages. */
export function explain(report: CheckReport): string {
  return report.checks
    .filter((c) => c.status !== "pass")
    .map((c) => `  ${c.status} ${c.id}: ${c.detail}`)
    .join("\n");
}

/** Runs the kit in-process on a command (plus a marker arg) and checks nothing is left running. */
export async function check(label: string, command: string, args: string[]): Promise<CheckReport> {
  const marker = newMarker(label);
  const report = await runCheck({ command, args: [...args, marker], timeoutMs: TIMEOUT_MS, exitMarginMs: EXIT_MARGIN_MS });
  assert.deepEqual(await processesWith(marker), [], `processes left behind by the kit for ${label}`);
  assert.equal(report.checks.length, ALL.length, "every check is reported");
  assert.equal(report.passed + report.failed + report.skipped, ALL.length);
  return report;
}

export function assertConformant(t: TestContext, report: CheckReport, skipped: string[]): void {
  assert.deepEqual(ids(report, "fail"), [], `no check should fail:\n${explain(report)}`);
  assert.deepEqual(ids(report, "skip"), [...skipped].sort(), `skipped checks:\n${explain(report)}`);
  assert.ok(report.timings.spawnToHandshakeMs! > 0 && report.timings.spawnToReadyMs! >= report.timings.spawnToHandshakeMs!);
  t.diagnostic(formatTimings(report.timings).trim());
}

/** Runs the kit's own command; resolves with its exit code and output. */
export function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [KIT, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** A fixture mode, the one check it must fail, the checks that must be skipped for it, and what the failure must say. */
export type Mode = [mode: string, failed: string, skipped: string[], why?: RegExp];

/** Runs the kit on each mode and asserts it fails exactly the check named. */
export function failsExactlyOne(modes: readonly Mode[]): void {
  for (const [mode, failed, skipped, why] of modes) {
    it(`${mode} fails '${failed}'`, async () => {
      const report = await check(mode, process.execPath, [BROKEN, mode]);
      assert.deepEqual(ids(report, "fail"), [failed], explain(report));
      assert.deepEqual(ids(report, "skip"), [...skipped].sort(), explain(report));
      for (const id of skipped) {
        assert.match(report.checks.find((c) => c.id === id)!.detail, /needs '|main launch is gone/, `${id} says why it did not run`);
      }
      if (why) assert.match(report.checks.find((c) => c.id === failed)!.detail, why);
    });
  }
}
