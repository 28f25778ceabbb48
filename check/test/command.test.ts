/** The kit's own command, plugwire-check: output, --json, exit codes and argument errors. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runCheck, type CheckReport } from "../src/index.js";
import { ALL, BROKEN, EXIT_MARGIN_MS, STATEFUL, TIMEOUT_MS, cli, example, explain, ids, newMarker, processesWith, repo } from "./helpers.js";

describe("the plugwire-check command", { concurrency: 2 }, () => {
  it("prints ✓/✗/- lines, the timings and a verdict, and exits 1 on a failure", async () => {
    const marker = newMarker("cli-human");
    const r = await cli(["--timeout-ms", String(TIMEOUT_MS), "--exit-margin-ms", String(EXIT_MARGIN_MS), "--", process.execPath, BROKEN, "bad-describe", marker]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^plugwire-check -- /);
    assert.match(r.stdout, /^✓ cookie: refuses to run without the magic cookie\n {4}exited with code 1 and explained on stderr: "This is a plugwire plugin/m);
    assert.match(r.stdout, /^✗ describe: Describe answers with a valid description\n {4}Describe: name is empty \(return a stable name/m);
    assert.match(r.stdout, /^timings: spawn → handshake \d+ ms, spawn → ready \d+ ms \(first launch\)/m);
    assert.match(r.stdout, new RegExp(`^result: ${ALL.length - 1} passed, 1 failed, 0 skipped: NOT conformant$`, "m"));
    assert.deepEqual(await processesWith(marker), []);
  });

  it("--json prints the machine-readable report and exits 0 when nothing fails", async () => {
    const marker = newMarker("cli-json");
    const r = await cli(["--json", "--timeout-ms", String(TIMEOUT_MS), "--exit-margin-ms", String(EXIT_MARGIN_MS), "--", process.execPath, example("echo"), marker]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as CheckReport;
    assert.deepEqual(Object.keys(report).sort(), ["checks", "command", "failed", "passed", "skipped", "timings"]);
    assert.deepEqual(report.checks.map((c) => c.id), ALL);
    for (const c of report.checks) {
      assert.deepEqual(Object.keys(c).sort(), ["detail", "id", "status", "title"]);
      assert.ok(["pass", "skip"].includes(c.status) && c.detail.length > 0, `${c.id}: ${c.status} ${c.detail}`);
    }
    assert.deepEqual([report.passed, report.failed, report.skipped], [ALL.length - STATEFUL.length, 0, STATEFUL.length]);
    assert.equal(typeof report.timings.spawnToReadyMs, "number");
    assert.deepEqual(await processesWith(marker), []);
  });

  it("refuses a missing command and a bad --timeout-ms with a usage message", async () => {
    const none = await cli(["--json"]);
    assert.equal(none.code, 1);
    assert.equal(
      none.stderr,
      "plugwire-check: give the plugin's command after --: plugwire-check [--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS...] (e.g. plugwire-check -- node my-plugin.js)\n",
    );
    const bad = await cli(["--timeout-ms", "soon", "--", "true"]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, "plugwire-check: --timeout-ms must be a whole number of milliseconds, at least 1; got 'soon'\n");
  });

  it("reports a command that cannot be started, without hanging", async () => {
    const report = await runCheck({ command: join(repo, "no-such-plugin"), timeoutMs: TIMEOUT_MS });
    assert.deepEqual(ids(report, "fail"), ["cookie", "handshake"], explain(report));
    assert.match(report.checks[0]!.detail, /could not be started \(spawn .*ENOENT\); check the command and its path/);
    assert.match(report.checks[1]!.detail, /could not be started/);
  });
});
