#!/usr/bin/env node
/**
 * A host in its own process, for measuring the host's memory per supervised
 * plugin. Started with fork() by the bench:
 *
 *   node --expose-gc host-proc.js '{"plugins":16,"idleMs":2000}'
 *
 * Starts a host with that many bench sink plugins, waits until all are ready,
 * stays idle for idleMs, collects garbage when it can, and sends
 * {rssMiB, heapUsedMiB, pids} to the parent. On the parent's "stop" message
 * (or when the parent goes away) it stops the host and exits.
 */
import { benchHost, nodePlugin, rssMiB, sleep, SINK_PLUGIN, cleanupAll } from "./lib.js";

interface Args {
  plugins: number;
  idleMs: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? "{}") as Args;
  const n = Math.max(1, Math.min(256, args.plugins | 0));
  const plugins = Array.from({ length: n }, (_, i) => nodePlugin(`sink-${i}`, SINK_PLUGIN, { env: { BENCH_KIND_SUFFIX: `.${i}` } }));
  const bh = benchHost(plugins);
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    try {
      await bh.close();
    } finally {
      await cleanupAll();
      process.exit(code);
    }
  };
  process.on("message", (m) => {
    if (m === "stop") void stop(0);
  });
  process.on("disconnect", () => void stop(0));
  try {
    await bh.host.start();
    await sleep(Math.max(0, Math.min(60_000, args.idleMs)));
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) {
      gc();
      await sleep(100);
      gc();
    }
    const pids = bh.host.status().map((s) => s.pid);
    process.send?.({ rssMiB: rssMiB(process.pid), heapUsedMiB: process.memoryUsage().heapUsed / 1048576, pids });
  } catch (e) {
    process.send?.({ error: e instanceof Error ? e.message : String(e) });
    await stop(1);
  }
}

void main();
