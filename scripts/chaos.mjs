#!/usr/bin/env node
// The chaos matrix: named fault patterns on real plugin processes. Each
// scenario runs in a process of its own (scripts/chaos/run-scenario.mjs) and
// reports payloads dispatched, lost, duplicated, stuck (not settled 10 s after
// the last fault), whether the stateful plugin's state is exact, orphan plugin
// processes after stop, and leaked descriptors. Exits 1 when any scenario fails.
//
//   node scripts/chaos.mjs                       every scenario, --duration-s 15 each
//   node scripts/chaos.mjs --scenario NAME[,NAME] --duration-s 60
//   node scripts/chaos.mjs --list
//   options: --seed N (default 1), --kill-every-ms N (scenarios with periodic
//            kills; each has its own default), --max-payloads N (per scenario),
//            --keep-logs (keep the host logs even when every scenario passes)
//
// Run after a build (`npm run chaos` builds first). Bounded: a scenario runs
// for its duration plus its checks, and is killed after its duration + 150 s.
// The scenarios and what "exact" means in each: docs/guarantees.md, "Chaos matrix".
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SCENARIOS } from "./chaos/scenarios/index.mjs";
import { markedProcesses, sigkill, sleep } from "./chaos/lib/util.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const repo = join(here, "..");
const DEFAULT_DURATION_S = 15;
/** A scenario process still running this long after its duration is killed. */
const HARD_LIMIT_EXTRA_MS = 150_000;

let parsed;
try {
  parsed = parseArgs({
    options: {
      scenario: { type: "string" },
      "duration-s": { type: "string", default: String(DEFAULT_DURATION_S) },
      seed: { type: "string", default: "1" },
      "kill-every-ms": { type: "string" },
      "max-payloads": { type: "string", default: "3000000" },
      list: { type: "boolean", default: false },
      "keep-logs": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
} catch (e) {
  console.error(`chaos: ${e.message}; see --help`);
  process.exit(2);
}
const argv = parsed.values;

if (argv.help) {
  console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 17).map((l) => l.replace(/^\/\/ ?/, "")).join("\n"));
  process.exit(0);
}
if (argv.list) {
  for (const s of SCENARIOS) console.log(`${s.name.padEnd(22)} ${s.summary}`);
  process.exit(0);
}

const numbers = { "duration-s": argv["duration-s"], seed: argv.seed, "max-payloads": argv["max-payloads"], "kill-every-ms": argv["kill-every-ms"] };
for (const [name, value] of Object.entries(numbers)) {
  if (value === undefined) continue;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (name !== "seed" && n <= 0)) {
    console.error(`chaos: --${name} must be a positive number, not '${value}'`);
    process.exit(2);
  }
}
const names = argv.scenario ? argv.scenario.split(",").map((s) => s.trim()).filter(Boolean) : SCENARIOS.map((s) => s.name);
const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
if (unknown.length > 0) {
  console.error(`chaos: no scenario named ${unknown.map((n) => `'${n}'`).join(", ")}; scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`);
  process.exit(2);
}
if (!existsSync(join(repo, "host", "dist", "src", "index.js"))) {
  console.error("chaos: host/dist is missing; run `npm run build` first (`npm run chaos` builds for you)");
  process.exit(2);
}

const durationMs = Number(argv["duration-s"]) * 1000;
const runId = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const logDir = mkdtempSync(join(tmpdir(), "pw-chaos-logs-"));
console.log(`chaos: ${names.length} scenarios, ${durationMs / 1000} s each, seed ${argv.seed}; host logs in ${logDir}`);

/** Runs one scenario in its own process; returns its result row. */
async function runScenario(name) {
  const run = `${runId}-${name}`;
  const resultPath = join(logDir, `${name}.result.json`);
  const args = [
    join(here, "chaos", "run-scenario.mjs"),
    "--scenario", name,
    "--duration-s", argv["duration-s"],
    "--seed", argv.seed,
    "--max-payloads", argv["max-payloads"],
    "--run", run,
    "--log", join(logDir, `${name}.log`),
    "--result", resultPath,
    ...(argv["kill-every-ms"] ? ["--kill-every-ms", argv["kill-every-ms"]] : []),
  ];
  const started = Date.now();
  const child = spawn(process.execPath, args, { stdio: "inherit" });
  const exit = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      console.log(`chaos: ${name} still running ${(durationMs + HARD_LIMIT_EXTRA_MS) / 1000} s after it started; killing it`);
      sigkill(child.pid);
    }, durationMs + HARD_LIMIT_EXTRA_MS);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  let result;
  try {
    result = JSON.parse(readFileSync(resultPath, "utf8"));
  } catch (e) {
    const how = exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
    result = {
      scenario: name,
      verdict: "FAIL",
      payloads: "?",
      lost: "?",
      dup: "?",
      stuck: "?",
      exact: "?",
      orphans: 0,
      fds: "?",
      seconds: (Date.now() - started) / 1000,
      failures: [`the scenario process ${how} without a result (${e.code ?? e.message})`],
      notes: [],
      log: join(logDir, `${name}.log`),
    };
  }
  // Anything of this scenario still alive once its process is gone is an orphan.
  let left = markedProcesses(run);
  for (let waited = 0; left.length > 0 && waited < 5_000; waited += 100) {
    await sleep(100);
    left = markedProcesses(run);
  }
  if (left.length > 0) {
    for (const p of left) sigkill(p.pid);
    result.orphans = (Number(result.orphans) || 0) + left.length;
    result.verdict = "FAIL";
    result.failures.push(`${left.length} plugin processes alive after the scenario process ended: ${left.map((p) => `${p.plugin} ${p.pid}`).join(", ")}`);
  }
  return result;
}

const results = [];
for (const name of names) {
  console.log(`\n== ${name}`);
  results.push(await runScenario(name));
}

// ---------------------------------------------------------------- report
const columns = ["scenario", "payloads", "lost", "dup", "stuck", "exact", "orphans", "fds", "verdict"];
const rows = results.map((r) => [r.scenario, r.payloads, r.lost, r.dup, r.stuck, r.exact, r.orphans, r.fds, r.verdict].map(String));
const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ")} |`;
console.log(`\nchaos results (seed ${argv.seed}, ${durationMs / 1000} s per scenario)`);
console.log(line(columns));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
for (const r of results) {
  if (r.failures.length === 0 && r.notes.length === 0 && !r.skipped) continue;
  console.log(`\n${r.scenario} (${r.verdict}, ${Number(r.seconds).toFixed(1)} s)`);
  if (r.skipped) console.log(`  skipped: ${r.skipped}`);
  for (const f of r.failures) console.log(`  FAIL: ${f}`);
  for (const n of r.notes) console.log(`  ${n}`);
}
const failed = results.filter((r) => r.verdict === "FAIL");
if (failed.length === 0) {
  if (argv["keep-logs"]) console.log(`\nhost logs kept in ${logDir}`);
  else rmSync(logDir, { recursive: true, force: true });
  console.log(`\nchaos: PASS (${results.filter((r) => r.verdict === "SKIP").length} skipped)`);
} else {
  console.log(`\nchaos: FAIL: ${failed.map((r) => r.scenario).join(", ")}; host logs kept in ${logDir}`);
}
process.exit(failed.length === 0 ? 0 : 1);
