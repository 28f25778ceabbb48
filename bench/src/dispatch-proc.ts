#!/usr/bin/env node
/**
 * A host in its own process measuring plain host.dispatch() of 256 B payloads
 * to the TS sink, for comparing node flags for the host process (the
 * `host-gc` scenario). Started by the bench with fork():
 *
 *   node [flags] dispatch-proc.js '{"count":200000,"reps":5}'
 *
 * Sends {rates, cpuUs} (one per repetition, after an untimed warm-up of half
 * the count) to the
 * parent, then stops its host and exits.
 */
import { benchHost, cleanupAll, nodePlugin, pump, SINK_PLUGIN } from "./lib.js";

interface Args {
  count: number;
  reps: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? "{}") as Args;
  const count = Math.max(1_000, Math.min(1_000_000, args.count | 0));
  const reps = Math.max(1, Math.min(20, args.reps | 0));
  const bh = benchHost([nodePlugin("sink", SINK_PLUGIN)]);
  const body = new Uint8Array(256).fill(0x5a);
  try {
    await bh.host.start();
    await pump(bh.host, ["bench.sink"], body, Math.ceil(count / 2), 8_000, 60_000);
    const rates: number[] = [];
    const cpuUs: number[] = [];
    for (let rep = 0; rep < reps; rep++) {
      const cpu0 = process.cpuUsage();
      const r = await pump(bh.host, ["bench.sink"], body, count, 8_000, 90_000);
      const cpu = process.cpuUsage(cpu0);
      if (r.failed || r.timedOut) throw new Error(`rep ${rep + 1}: ${r.failed} failed${r.timedOut ? ", time bound hit" : ""} (${r.firstError ?? ""})`);
      rates.push(r.count / (r.elapsedMs / 1000));
      cpuUs.push((cpu.user + cpu.system) / r.count);
    }
    process.send?.({ rates, cpuUs });
  } catch (e) {
    process.send?.({ error: e instanceof Error ? e.message : String(e) });
  } finally {
    await bh.close();
    await cleanupAll();
  }
}

void main().then(() => process.exit(0));
