/**
 * The conformance kit (`plugwire check`): it passes the example plugins in
 * every language, and each mode of the broken fixture (fixtures/broken.ts)
 * fails exactly the check it breaks. Every run must leave no process behind.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { fileURLToPath } from "node:url";
import { CHECKS, formatTimings, runCheck, type CheckReport, type CheckStatus } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
/** Path of a compiled example plugin. */
function example(name: string): string {
  return join(repo, "plugins-example", "dist", `${name}.js`);
}

/** Generous: the tests assert which check fails, not how fast a loaded CI machine is. */
const TIMEOUT_MS = 5_000;
const EXIT_MARGIN_MS = 1_500;

const repo = join(here, "..", "..", "..");
const CLI = join(repo, "host", "dist", "src", "cli", "main.js");
const BROKEN = join(here, "fixtures", "broken.js");
const PYTHON = join(repo, "plugins-example", "python", ".venv", "bin", "python");
const PYTHON_COUNTER = join(repo, "plugins-example", "python", "counter.py");
const GO_PRESENCE = join(repo, "plugins-example", "go", "bin", "presence-go");
const GO_COUNTER = join(repo, "plugins-example", "go", "bin", "counter-go");
const NOT_BUILT = "not built; run bash scripts/setup-polyglot.sh";

const STATEFUL = ["restore-garbage", "restore-own", "restore-unsupported-version", "snapshot"];
const ALL = CHECKS.map((c) => c.id);

/** A marker arg unique to one run, to find its processes with ps. */
function newMarker(label: string): string {
  return `pwcheck-${label}-${randomBytes(4).toString("hex")}`;
}

function processesWith(marker: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    execFile("ps", ["-ww", "-eo", "pid,args"], { timeout: 10_000 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(stdout.split("\n").filter((line) => line.includes(marker)));
    });
  });
}

function ids(report: CheckReport, status: CheckStatus): string[] {
  return report.checks.filter((c) => c.status === status).map((c) => c.id).sort();
}

/** Every check that did not pass, for assertion messages. */
function explain(report: CheckReport): string {
  return report.checks
    .filter((c) => c.status !== "pass")
    .map((c) => `  ${c.status} ${c.id}: ${c.detail}`)
    .join("\n");
}

/** Runs the kit in-process on a command (plus a marker arg) and checks nothing is left running. */
async function check(label: string, command: string, args: string[]): Promise<CheckReport> {
  const marker = newMarker(label);
  const report = await runCheck({ command, args: [...args, marker], timeoutMs: TIMEOUT_MS, exitMarginMs: EXIT_MARGIN_MS });
  assert.deepEqual(await processesWith(marker), [], `processes left behind by the kit for ${label}`);
  assert.equal(report.checks.length, ALL.length, "every check is reported");
  assert.equal(report.passed + report.failed + report.skipped, ALL.length);
  return report;
}

function assertConformant(t: TestContext, report: CheckReport, skipped: string[]): void {
  assert.deepEqual(ids(report, "fail"), [], `no check should fail:\n${explain(report)}`);
  assert.deepEqual(ids(report, "skip"), [...skipped].sort(), `skipped checks:\n${explain(report)}`);
  assert.ok(report.timings.spawnToHandshakeMs! > 0 && report.timings.spawnToReadyMs! >= report.timings.spawnToHandshakeMs!);
  t.diagnostic(formatTimings(report.timings).trim());
}

/** Runs the CLI; resolves with its exit code and output. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

describe("plugwire check passes the example plugins", { concurrency: 2 }, () => {
  it("echo (TypeScript): stateful checks and host calls skipped", async (t) => {
    const report = await check("echo", process.execPath, [example("echo")]);
    assertConformant(t, report, [...STATEFUL, "host-calls"]);
  });

  it("counter (TypeScript, stateful): snapshot and every restore check pass", async (t) => {
    const report = await check("counter", process.execPath, [example("counter")]);
    assertConformant(t, report, ["host-calls"]);
  });

  it("presence (TypeScript): its host calls carry the token", async (t) => {
    const report = await check("presence", process.execPath, [example("presence")]);
    assertConformant(t, report, STATEFUL);
    assert.match(report.checks.find((c) => c.id === "host-calls")!.detail, /WatchPeers×1.*LookupName×303\b/);
  });

  it("counter-py (Python, stateful)", { skip: existsSync(PYTHON) ? false : `${PYTHON} ${NOT_BUILT}` }, async (t) => {
    const report = await check("py", PYTHON, [PYTHON_COUNTER]);
    assertConformant(t, report, ["host-calls"]);
  });

  it("presence-go (Go)", { skip: existsSync(GO_PRESENCE) ? false : `${GO_PRESENCE} ${NOT_BUILT}` }, async (t) => {
    const report = await check("go", GO_PRESENCE, []);
    assertConformant(t, report, STATEFUL);
  });

  it("counter-go (Go, stateful)", { skip: existsSync(GO_COUNTER) ? false : `${GO_COUNTER} ${NOT_BUILT}` }, async (t) => {
    const report = await check("go-counter", GO_COUNTER, []);
    assertConformant(t, report, ["host-calls"]);
  });
});

describe("each broken fixture mode fails exactly the check it breaks", { concurrency: 2 }, () => {
  it("ok: the fixture itself passes every check", async () => {
    const report = await check("ok", process.execPath, [BROKEN, "ok"]);
    assert.deepEqual(ids(report, "pass"), [...ALL].sort(), explain(report));
  });

  const modes: Array<[mode: string, failed: string, skipped: string[], why?: RegExp]> = [
    ["no-cookie-check", "cookie", []],
    ["bad-handshake", "handshake", ALL.filter((id) => id !== "cookie" && id !== "handshake")],
    ["no-auth", "auth", []],
    ["bad-describe", "describe", []],
    ["no-ack", "deliver", ["unclaimed-kind", "peer-forgotten"]],
    ["out-of-order-ack", "deliver", ["unclaimed-kind", "peer-forgotten"]],
    ["ignore-forget", "peer-forgotten", [], /no ack through seq \d+ .*the first item never acked is seq \d+, a peer_forgotten item/],
    ["forget-ack-ahead", "peer-forgotten", [], /which covers the forget too, but that ack had no outcome for the payload \(its error outcome came only in a later ack/],
    ["forget-not-in-applied-seq", "peer-forgotten", [], /a snapshot taken once the forget at seq \d+ was acked says applied_seq=\d+; .*a peer_forgotten item counts like a payload/],
    ["crash-on-restore-garbage", "restore-garbage", []],
    ["wrong-version-error", "restore-unsupported-version", []],
    ["ignore-stdin", "stdin-eof", []],
    ["slow-shutdown", "shutdown", []],
  ];
  for (const [mode, failed, skipped, why] of modes) {
    it(`${mode} fails '${failed}'`, async () => {
      const report = await check(mode, process.execPath, [BROKEN, mode]);
      assert.deepEqual(ids(report, "fail"), [failed], explain(report));
      assert.deepEqual(ids(report, "skip"), [...skipped].sort(), explain(report));
      for (const id of skipped) {
        assert.match(report.checks.find((c) => c.id === id)!.detail, /needs '/, `${id} says which check it waits for`);
      }
      if (why) assert.match(report.checks.find((c) => c.id === failed)!.detail, why);
    });
  }
});

describe("the plugwire check command", { concurrency: 2 }, () => {
  it("prints ✓/✗/- lines, the timings and a verdict, and exits 1 on a failure", async () => {
    const marker = newMarker("cli-human");
    const r = await cli(["check", "--timeout-ms", String(TIMEOUT_MS), "--exit-margin-ms", String(EXIT_MARGIN_MS), "--", process.execPath, BROKEN, "bad-describe", marker]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^plugwire check -- /);
    assert.match(r.stdout, /^✓ cookie: refuses to run without the magic cookie\n {4}exited with code 1 and explained on stderr: "This is a plugwire plugin/m);
    assert.match(r.stdout, /^✗ describe: Describe answers with a valid description\n {4}Describe: name is empty \(return a stable name/m);
    assert.match(r.stdout, /^timings: spawn → handshake \d+ ms, spawn → ready \d+ ms \(first launch\)/m);
    assert.match(r.stdout, /^result: 17 passed, 1 failed, 0 skipped: NOT conformant$/m);
    assert.deepEqual(await processesWith(marker), []);
  });

  it("--json prints the machine-readable report and exits 0 when nothing fails", async () => {
    const marker = newMarker("cli-json");
    const r = await cli(["check", "--json", "--timeout-ms", String(TIMEOUT_MS), "--exit-margin-ms", String(EXIT_MARGIN_MS), "--", process.execPath, example("echo"), marker]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.deepEqual(Object.keys(report).sort(), ["checks", "command", "failed", "passed", "skipped", "timings"]);
    assert.deepEqual(report.checks.map((c) => c.id), ALL);
    for (const c of report.checks) {
      assert.deepEqual(Object.keys(c).sort(), ["detail", "id", "status", "title"]);
      assert.ok(["pass", "skip"].includes(c.status) && c.detail.length > 0, `${c.id}: ${c.status} ${c.detail}`);
    }
    assert.deepEqual([report.passed, report.failed, report.skipped], [13, 0, 5]);
    assert.equal(typeof report.timings.spawnToReadyMs, "number");
    assert.deepEqual(await processesWith(marker), []);
  });

  it("refuses a missing command and a bad --timeout-ms with a usage message", async () => {
    const none = await cli(["check", "--json"]);
    assert.equal(none.code, 1);
    assert.equal(
      none.stderr,
      "plugwire: give the plugin's command after --: plugwire check [--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS...] (e.g. plugwire check -- node my-plugin.js)\n",
    );
    const bad = await cli(["check", "--timeout-ms", "soon", "--", "true"]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, "plugwire: --timeout-ms must be a whole number of milliseconds, at least 1; got 'soon'\n");
  });

  it("reports a command that cannot be started, without hanging", async () => {
    const report = await runCheck({ command: join(repo, "no-such-plugin"), timeoutMs: TIMEOUT_MS });
    assert.deepEqual(ids(report, "fail"), ["cookie", "handshake"], explain(report));
    assert.match(report.checks[0]!.detail, /could not be started \(spawn .*ENOENT\); check the command and its path/);
    assert.match(report.checks[1]!.detail, /could not be started/);
  });
});
