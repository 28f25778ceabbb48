#!/usr/bin/env node
// Runs one chaos scenario in this process and writes its result row as JSON
// to --result. Started by scripts/chaos.mjs, one process per scenario, so
// that descriptor counts, crashes and leftovers of one scenario never bleed
// into the next.
//
//   node scripts/chaos/run-scenario.mjs --scenario NAME --duration-s N --seed S
//        --run MARKER --log FILE --result FILE [--kill-every-ms N] [--max-payloads N]
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Harness } from "./lib/harness.mjs";
import { withTimeout } from "./lib/util.mjs";
import { SCENARIOS } from "./scenarios/index.mjs";

const repo = join(fileURLToPath(import.meta.url), "..", "..", "..");
const { values: argv } = parseArgs({
  options: {
    scenario: { type: "string" },
    "duration-s": { type: "string" },
    seed: { type: "string" },
    "kill-every-ms": { type: "string" },
    "max-payloads": { type: "string" },
    run: { type: "string" },
    log: { type: "string" },
    result: { type: "string" },
  },
});
const scenario = SCENARIOS.find((s) => s.name === argv.scenario);
if (!scenario || !argv.run || !argv.log || !argv.result) {
  console.error("run-scenario: started by scripts/chaos.mjs; see `node scripts/chaos.mjs --help`");
  process.exit(2);
}
const args = {
  durationMs: Number(argv["duration-s"]) * 1000,
  seed: Number(argv.seed) >>> 0,
  killEveryMs: argv["kill-every-ms"] === undefined ? undefined : Number(argv["kill-every-ms"]),
  maxPayloads: Number(argv["max-payloads"]),
};
/** The scenario's own part is cut off this long after its duration; finish() has its own bounds. */
const SCENARIO_GRACE_MS = 90_000;

const lib = await import(join(repo, "host", "dist", "src", "index.js"));
const t = new Harness({ scenario: scenario.name, args, lib, repo, run: argv.run, logPath: argv.log });
try {
  await withTimeout(scenario.run(t), args.durationMs + SCENARIO_GRACE_MS, `scenario ${scenario.name}`);
} catch (e) {
  t.fail(`scenario error: ${e?.stack ?? e}`);
}
const result = await t.finish();
writeFileSync(argv.result, JSON.stringify(result));
// Whatever the scenario left (a timed-out load, a pending wait) must not keep us alive.
process.exit(0);
