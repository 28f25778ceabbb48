#!/usr/bin/env node
/**
 * plugwire fuzzers (issue 12, part 2). `npm run fuzz` runs every target with
 * at least 100,000 inputs each; `npm run fuzz -- --quick` runs a few thousand
 * per target, for CI. See fuzz/README.md.
 *
 *   --quick                 a few thousand inputs per target (about a minute in all on a quiet machine; the time limits leave room for a loaded one)
 *   --seed N                the run's seed (default: a fixed one; printed)
 *   --inputs N              inputs per target (default 100000; quick 2500)
 *   --target a,b            host-service, plugin-service, handshake, snapshot (default all)
 *   --time-limit-s N        per target; a target that runs out stops early and fails
 *   --concurrency N         gRPC inputs in flight at once (default 16)
 *   --only INDEX            replay one input of a gRPC target (with its --seed and --target)
 *   --show INDEX            print one input of a gRPC target and exit
 *   --json FILE             also write the results as JSON
 *   --max-host-rss-mb N     fail when the host's peak RSS exceeds this (default 1024)
 */
import { writeFileSync } from "node:fs";
import { describeInput } from "./lib/engine.mjs";
import { mb, table } from "./lib/util.mjs";
import { fuzzHandshake } from "./targets/handshake.mjs";
import { HOST_METHODS, fuzzHostService } from "./targets/host-service.mjs";
import { PLUGIN_METHODS, fuzzPluginService } from "./targets/plugin-service.mjs";
import { fuzzSnapshotStore } from "./targets/snapshot-store.mjs";

const DEFAULT_SEED = 20_251_129;
const args = process.argv.slice(2);
const flag = (name) => args.includes(`--${name}`);
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const known = new Set(["quick", "seed", "inputs", "target", "time-limit-s", "concurrency", "only", "show", "json", "max-host-rss-mb"]);
for (const a of args) {
  if (a.startsWith("--") && !known.has(a.slice(2))) {
    console.error(`unknown option ${a}; see the top of fuzz/main.mjs`);
    process.exit(2);
  }
}

const quick = flag("quick");
const seed = Number(option("seed", DEFAULT_SEED));
const count = Number(option("inputs", quick ? 2500 : 100_000));
const concurrency = Number(option("concurrency", 16));
const maxHostRssMb = Number(option("max-host-rss-mb", 1024));
const only = option("only") === undefined ? undefined : Number(option("only"));
const TARGETS = {
  "host-service": { run: fuzzHostService, methods: HOST_METHODS, limitS: quick ? 60 : 1200 },
  "plugin-service": { run: fuzzPluginService, methods: PLUGIN_METHODS, limitS: quick ? 60 : 1200 },
  handshake: { run: fuzzHandshake, limitS: quick ? 30 : 120 },
  snapshot: { run: fuzzSnapshotStore, limitS: quick ? 30 : 600 },
};
const names = option("target", Object.keys(TARGETS).join(",")).split(",");
for (const n of names) {
  if (!TARGETS[n]) {
    console.error(`unknown target ${n}; targets: ${Object.keys(TARGETS).join(", ")}`);
    process.exit(2);
  }
}

if (option("show") !== undefined) {
  for (const n of names) if (TARGETS[n].methods) console.log(`${n} #${option("show")}: ${describeInput(seed, Number(option("show")), TARGETS[n].methods, 0.2)}`);
  process.exit(0);
}

console.log(`plugwire fuzz: seed ${seed}, ${count} inputs per target${quick ? " (quick)" : ""}, targets ${names.join(", ")}`);
const results = [];
for (const name of names) {
  const t = TARGETS[name];
  const timeLimitMs = Number(option("time-limit-s", t.limitS)) * 1000;
  console.log(`\n== ${name}`);
  const started = performance.now();
  let result;
  try {
    result = await t.run({ seed, count, timeLimitMs, concurrency, only, log: (line) => console.log(`   ${line}`) });
  } catch (e) {
    result = { target: name, failures: [{ kind: "setup", detail: e.stack ?? String(e) }], inputs: 0 };
  }
  result.seconds = (performance.now() - started) / 1000;
  if (only === undefined && result.inputs < count && result.failures.length === 0) {
    result.failures.push({ kind: "short", detail: `ran ${result.inputs} of ${count} inputs within the ${timeLimitMs / 1000} s limit` });
  }
  if (result.fuzzerErrors?.length) result.failures.push({ kind: "fuzzer-error", detail: result.fuzzerErrors.map((e) => `#${e.index}: ${e.error}`).join("\n") });
  if (name === "host-service" && result.peakRssKb > maxHostRssMb * 1024) {
    result.failures.push({ kind: "memory", detail: `host peak RSS ${mb(result.peakRssKb)} is over the ${maxHostRssMb} MB bound` });
  }
  results.push(result);
  console.log(`   ${result.inputs} inputs in ${result.seconds.toFixed(1)} s; peak RSS ${mb(result.peakRssKb)}`);
  if (result.tally) console.log(`   outcomes: ${result.tally.format(14)}`);
  if (result.kinds) console.log(`   inputs by kind: ${result.kinds.format(14)}`);
  for (const k of ["eventLoopDelayMaxMs", "livenessMaxMs", "dispatches", "launches", "cleanExits", "pluginSocketsAfter"]) if (result[k] !== undefined) console.log(`   ${k}: ${result[k]}`);
  if (result.clientStalls?.length) console.log(`   fuzzer client stalls (the fuzzer's node:http2 session stopped reading; dropped and redialled): ${result.clientStalls.length}: ${result.clientStalls.slice(0, 5).join("; ")}`);
  for (const f of result.failures) {
    console.log(`   FAILURE ${f.kind}${f.index !== undefined ? ` at input #${f.index}` : ""}: ${f.detail}`);
    if (f.recent) console.log(`     inputs sent to it just before (replay each with --target ${name} --seed ${seed} --only N): ${f.recent.join(" ")}`);
    if (f.stderr) console.log(`     stderr tail:\n${f.stderr.slice(-3000).replace(/^/gm, "       ")}`);
  }
  if (result.failures.length) console.log(`   reproduce: npm run fuzz -- --target ${name} --seed ${seed} --inputs ${count}`);
}

const crashes = (r) => r.failures.filter((f) => f.kind === "crash").length;
console.log("\n== summary");
console.log(
  table(
    ["target", "inputs", "crashes", "failures", "peak RSS", "seconds", "errors by kind (top 6)"],
    results.map((r) => [
      r.target,
      r.inputs,
      crashes(r),
      r.failures.length,
      r.target === "host-service" ? `${mb(r.peakRssKb)} (host)` : r.target === "plugin-service" ? `${mb(r.peakRssKb)} (plugin)` : `${mb(r.peakRssKb)} (in-process)`,
      r.seconds.toFixed(1),
      r.tally ? r.tally.format(6) : "",
    ]),
  ),
);
if (option("json")) {
  writeFileSync(option("json"), JSON.stringify(results.map(({ rssSamplesKb, ...r }) => ({ ...r, tally: r.tally?.toJSON(), kinds: r.kinds?.toJSON() })), null, 2));
}
const failed = results.filter((r) => r.failures.length > 0);
console.log(failed.length ? `\nFAILED: ${failed.map((r) => r.target).join(", ")} (seed ${seed})` : `\nall targets passed (seed ${seed})`);
process.exit(failed.length ? 1 : 0);
