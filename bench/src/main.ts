#!/usr/bin/env node
/**
 * plugwire benchmarks. `npm run bench` from the repository root.
 *
 *   npm run bench                       every scenario, full length (< 10 min on 2 cores)
 *   npm run bench -- --quick            fewer and shorter repetitions (< 90 s)
 *   npm run bench -- --only dispatch,spawn
 *   npm run bench -- --json bench.json
 *
 * Every metric is the median of at least 3 repetitions, printed with min and
 * max, and where it has one, its ratio to a baseline measured in the same run
 * (the raw unix-socket figures, a bare node start, a bare node's RSS).
 * Progress goes to stderr; the table (markdown) goes to stdout.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { cleanupAll, progress, repo } from "./lib.js";
import { goals, goalsTable, Results, table } from "./report.js";
import { dispatch, hostCall, hostGc, latency } from "./scenarios/delivery.js";
import { go } from "./scenarios/go.js";
import { polyglot } from "./scenarios/polyglot.js";
import { crash, snapshot, spawnReady, upgrade } from "./scenarios/lifecycle.js";
import { hostRss, rss } from "./scenarios/memory.js";
import { raw } from "./scenarios/raw.js";
import { scale } from "./scenarios/scale.js";
import { attach } from "./scenarios/attach.js";
import type { Ctx, Scenario } from "./scenarios/types.js";

const SCENARIOS: Scenario[] = [raw, dispatch, hostGc, latency, hostCall, spawnReady, crash, upgrade, snapshot, rss, hostRss, scale, go, attach];
// The four languages' example counters side by side (issue 13).
SCENARIOS.push(polyglot);

interface Args {
  quick: boolean;
  only: string[] | undefined;
  json: string | undefined;
  reps: number | undefined;
}

function usage(): string {
  return [
    "usage: npm run bench -- [--quick] [--only NAME[,NAME]] [--json FILE] [--reps N]",
    "",
    "  --quick        fewer, shorter repetitions (3 reps; 16 plugins for scale, 20 MB snapshots)",
    "  --only LIST    run a subset; the raw baseline is added when a chosen scenario needs it",
    "  --json FILE    also write every metric (with each repetition's value) as JSON",
    "  --reps N       repetitions per metric (at least 3; default 5, or 3 with --quick; snapshot, host-rss and scale use 3)",
    "",
    "scenarios:",
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(10)} ${s.describe}`),
  ].join("\n");
}

function parseArgs(argv: string[]): Args {
  const args: Args = { quick: false, only: undefined, json: undefined, reps: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : argv[++i];
      if (v === undefined || v === "") throw new Error(`${a} needs a value\n\n${usage()}`);
      return v;
    };
    if (a === "--quick") args.quick = true;
    else if (a === "--only" || a.startsWith("--only=")) args.only = value().split(",").map((s) => s.trim()).filter(Boolean);
    else if (a === "--json" || a.startsWith("--json=")) args.json = value();
    else if (a === "--reps" || a.startsWith("--reps=")) args.reps = Number(value());
    else if (a === "--help" || a === "-h") {
      process.stdout.write(`${usage()}\n`);
      process.exit(0);
    } else throw new Error(`unknown argument '${a}'\n\n${usage()}`);
  }
  if (args.reps !== undefined && (!Number.isInteger(args.reps) || args.reps < 3 || args.reps > 50)) {
    throw new Error("--reps must be a whole number from 3 to 50");
  }
  if (args.only) {
    const known = new Set(SCENARIOS.map((s) => s.name));
    const unknown = args.only.filter((n) => !known.has(n));
    if (unknown.length) throw new Error(`unknown scenario(s) ${unknown.join(", ")}; known: ${[...known].join(", ")}`);
  }
  return args;
}

function gitRaw(args: string[]): string | undefined {
  try {
    return execFileSync("git", args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
  } catch {
    return undefined;
  }
}

function git(args: string[]): string | undefined {
  return gitRaw(args)?.trim();
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  const changed = (gitRaw(["status", "--porcelain", "--untracked-files=no"]) ?? "")
    .split("\n")
    .map((l) => l.slice(3))
    .filter((p) => p && !p.startsWith("bench/") && p !== "docs/performance.md" && p !== "package.json" && p !== "package-lock.json");
  return {
    commit: git(["rev-parse", "--short", "HEAD"]),
    uncommittedChanges: changed,
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    cpu: cpus[0]?.model,
    cores: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAvgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
    date: new Date().toISOString(),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const chosen = args.only ? SCENARIOS.filter((s) => args.only!.includes(s.name)) : SCENARIOS;
  if (chosen.some((s) => s.needsRaw) && !chosen.includes(raw)) chosen.unshift(raw);
  const results = new Results();
  const ctx: Ctx = { quick: args.quick, reps: args.reps ?? (args.quick ? 3 : 5), heavyReps: args.reps ?? 3, results };
  const meta = machine();
  progress(`plugwire bench (${args.quick ? "quick" : "full"}, ${ctx.reps} reps, ${ctx.heavyReps} for snapshot/host-rss/scale) at ${meta.commit}${(meta.uncommittedChanges as string[]).length ? " + uncommitted changes" : ""}: ${chosen.map((s) => s.name).join(", ")}`);
  const started = performance.now();
  const failures: string[] = [];
  const durations: Record<string, number> = {};
  for (const scenario of chosen) {
    const t0 = performance.now();
    progress(`${scenario.name}: ${scenario.describe}`);
    try {
      await scenario.run(ctx);
    } catch (e) {
      const message = `scenario '${scenario.name}' failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
      failures.push(message);
      results.note(message.split("\n")[0]!);
      progress(message);
      await cleanupAll();
    }
    durations[scenario.name] = Math.round((performance.now() - t0) / 100) / 10;
    progress(`${scenario.name}: done in ${durations[scenario.name]} s`);
  }
  await cleanupAll();
  results.computeRatios();
  const totalS = Math.round((performance.now() - started) / 100) / 10;
  const goalList = goals(results);

  const out: string[] = [];
  out.push(`plugwire bench — ${args.quick ? "quick" : "full"} run, ${ctx.reps} repetitions (${ctx.heavyReps} for snapshot, host-rss, scale), ${totalS} s`);
  out.push(`commit ${meta.commit}${(meta.uncommittedChanges as string[]).length ? ` + uncommitted changes in ${(meta.uncommittedChanges as string[]).join(", ")}` : ""}`);
  out.push(`${meta.cpu} × ${meta.cores}, ${meta.memGiB} GiB, ${meta.platform}, node ${meta.node}; load average ${(meta.loadAvgAtStart as number[])[0]} at start, ${os.loadavg()[0]!.toFixed(2)} at end`);
  out.push("");
  out.push(table(results));
  out.push("");
  out.push(goalsTable(goalList));
  if (results.notes.length) {
    out.push("");
    for (const n of results.notes) out.push(`note: ${n}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);

  if (args.json) {
    const json = {
      meta: { ...meta, loadAvgAtEnd: os.loadavg().map((l) => Math.round(l * 100) / 100), mode: args.quick ? "quick" : "full", reps: ctx.reps, heavyReps: ctx.heavyReps, totalSeconds: totalS, scenarioSeconds: durations },
      metrics: [...results.metrics.values()],
      goals: goalList,
      notes: results.notes,
    };
    writeFileSync(args.json, `${JSON.stringify(json, null, 2)}\n`);
    progress(`wrote ${args.json}`);
  }
  if (failures.length) process.exitCode = 1;
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    progress(`${signal}: stopping hosts and children`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

main().catch(async (e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  await cleanupAll();
  process.exit(2);
});
