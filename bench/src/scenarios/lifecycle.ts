/**
 * Plugin lifecycle: cold spawn → ready (against a bare `node -e ""` in the
 * same run), SIGKILL → ready with state restored, and snapshot save/restore
 * throughput of a large state.
 */
import { performance } from "node:perf_hooks";
import type { Host, LaunchTimings, SnapshotStore } from "@plugwire/host";
import { MemorySnapshotStore } from "@plugwire/host";
import {
  benchHost,
  COUNTER_PLUGIN,
  launchSplit,
  median,
  killTracked,
  nextEvent,
  nodePlugin,
  now,
  progress,
  pump,
  removeTempDir,
  REPORT_PEER,
  spawnTracked,
  SRC_PEER,
  STATE_PLUGIN,
  tempDir,
  waitForReport,
  withTimeout,
} from "../lib.js";
import type { Ctx, Scenario } from "./types.js";

/** Spawns `node -e ""` and resolves with start → exit in ms. */
export async function bareNodeStartMs(): Promise<number> {
  const t0 = now();
  const child = spawnTracked(process.execPath, ["-e", ""], { stdio: "ignore" });
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      child.once("exit", () => resolve());
      child.once("error", reject);
    }),
    10_000,
    "bare node start",
  ).finally(() => killTracked(child));
  return now() - t0;
}

/** Time of host.start() for one plugin, in ms; the host is stopped afterwards. */
export async function timedStart(make: () => ReturnType<typeof benchHost>, check?: (host: Host) => string | undefined): Promise<{ ms: number; problem?: string }> {
  const bh = make();
  try {
    const t0 = now();
    await withTimeout(bh.host.start(), 60_000, "host.start");
    const ms = now() - t0;
    return { ms, problem: check?.(bh.host) };
  } finally {
    await bh.close();
  }
}

async function seedCounterSnapshot(dataDir: string): Promise<void> {
  const bh = benchHost([nodePlugin("counter", COUNTER_PLUGIN)], { dataDir });
  try {
    await withTimeout(bh.host.start(), 60_000, "host.start");
    await pump(bh.host, ["counter.hit"], new Uint8Array(0), 1000, 1000, 30_000);
    await bh.host.snapshot("counter");
  } finally {
    await bh.close();
  }
}

export const spawnReady: Scenario = {
  name: "spawn",
  describe: "createHost + start() with one TS plugin (counter: Describe, Start, Restore of a small snapshot) vs bare `node -e \"\"`",
  async run(ctx) {
    const dataDir = tempDir("pwspawn-");
    try {
      await seedCounterSnapshot(dataDir);
      const n = ctx.quick ? 4 : 10;
      const spawnMs: number[] = [];
      const bareMs: number[] = [];
      const launches: LaunchTimings[] = [];
      const problems = new Set<string>();
      const make = () => benchHost([nodePlugin("counter", COUNTER_PLUGIN, { warmStandby: false })], { dataDir });
      let restored = 0;
      // One untimed round of each warms the file cache.
      await bareNodeStartMs();
      await timedStart(make);
      for (let i = 0; i < n; i++) {
        bareMs.push(await bareNodeStartMs());
        const bh = make();
        bh.host.on("snapshot:restored", () => restored++);
        try {
          const t0 = now();
          await withTimeout(bh.host.start(), 60_000, "host.start");
          spawnMs.push(now() - t0);
          const launch = bh.host.status()[0]?.lastLaunch;
          if (launch) launches.push(launch);
        } finally {
          await bh.close();
        }
        progress(`  spawn ${i + 1}/${n}: plugin ready ${spawnMs.at(-1)!.toFixed(0)} ms, bare node ${bareMs.at(-1)!.toFixed(0)} ms`);
      }
      if (restored < n) problems.add(`only ${restored}/${n} starts restored the stored snapshot`);
      const split = launchSplit(launches, spawnMs);
      ctx.results.add({
        name: "node_bare_start_ms_p50",
        unit: "ms",
        values: bareMs,
        better: "lower",
        note: "spawn → exit of `node -e \"\"`",
        info: { samples: n },
      });
      ctx.results.add({
        name: "spawn_ready_ms_p50",
        unit: "ms",
        values: spawnMs,
        better: "lower",
        baseline: "node_bare_start_ms_p50",
        note: [...problems].join("; ") || `counter plugin, snapshot restored; ${split.note}`,
        info: { samples: n, plugin: "plugins-example counter (stateful)", timed: "host.start(): spawn, handshake, Describe, Start, load + Restore", splitMs: split.ms },
      });
    } finally {
      removeTempDir(dataDir);
    }
  },
};

/** Kills the plugin's process and resolves with kill → ready in ms, plus the restore event. */
async function killAndTime(
  host: Host,
  plugin: string,
  timeoutMs: number,
): Promise<{ ms: number; exitSeenMs?: number; launch?: LaunchTimings; restored?: { replayed: number; sizeBytes: number; at: number } }> {
  const pid = host.status().find((s) => s.name === plugin)?.pid;
  if (!pid) throw new Error(`plugin '${plugin}' has no pid`);
  let restored: { replayed: number; sizeBytes: number; at: number } | undefined;
  let exitSeenAt: number | undefined;
  const onRestored = (e: { plugin: string; replayed: number; sizeBytes: number }): void => {
    if (e.plugin === plugin) restored = { replayed: e.replayed, sizeBytes: e.sizeBytes, at: performance.timeOrigin + performance.now() };
  };
  const onExit = (e: { plugin: string; pid: number }): void => {
    if (e.plugin === plugin && e.pid === pid) exitSeenAt ??= now();
  };
  host.on("snapshot:restored", onRestored);
  host.on("plugin:exit", onExit);
  const ready = nextEvent<{ plugin: string; state: string }>(host, "plugin:state", (e) => e.plugin === plugin && e.state === "ready", timeoutMs);
  try {
    const t0 = now();
    process.kill(pid, "SIGKILL");
    await ready;
    const ms = now() - t0;
    return { ms, exitSeenMs: exitSeenAt === undefined ? undefined : exitSeenAt - t0, launch: host.status().find((s) => s.name === plugin)?.lastLaunch, restored };
  } finally {
    host.off("snapshot:restored", onRestored);
    host.off("plugin:exit", onExit);
  }
}

/** Medians of where crash → ready went: the exit seen, the relaunch's phases, and what lies between. */
function crashSplit(runs: readonly { ms: number; exitSeenMs?: number; launch?: LaunchTimings }[]): { note: string; ms: Record<string, number> } {
  const full = runs.filter((r) => r.exitSeenMs !== undefined && r.launch !== undefined) as { ms: number; exitSeenMs: number; launch: LaunchTimings }[];
  if (full.length === 0) return { note: "", ms: {} };
  const m = (f: (r: (typeof full)[number]) => number): number => Math.round(median(full.map(f)) * 10) / 10;
  const ms = {
    exitSeen: m((r) => r.exitSeenMs),
    toLaunch: m((r) => r.ms - r.exitSeenMs - r.launch.totalMs),
    launch: m((r) => r.launch.totalMs),
    process: m((r) => r.launch.processMs),
    start: m((r) => r.launch.startMs),
    restore: m((r) => r.launch.restoreMs),
    deliver: m((r) => r.launch.deliverMs),
  };
  return {
    note: `p50 split: exit seen ${ms.exitSeen}, exit → relaunch ${ms.toLaunch}, relaunch ${ms.launch} (process ${ms.process}, Start ${ms.start}, Restore ${ms.restore}, Deliver ${ms.deliver}) ms`,
    ms,
  };
}

/** Waits until the plugin's warm standby spare is waiting to be promoted (bounded). */
async function spareWaiting(host: Host, plugin: string, timeoutMs: number): Promise<number> {
  const deadline = now() + timeoutMs;
  for (let i = 0; now() < deadline && i < 100_000; i++) {
    const standby = host.status().find((s) => s.name === plugin)?.standby;
    if (standby?.state === "waiting" && standby.pid) return standby.pid;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`plugin '${plugin}' has no warm standby spare waiting after ${timeoutMs} ms`);
}

async function crashRun(
  ctx: Ctx,
  standby: boolean,
): Promise<{ values: number[]; replayed: number[]; notRestored: number; notPromoted: number; restarts: number; split: ReturnType<typeof crashSplit> }> {
  const bh = benchHost([nodePlugin("counter", COUNTER_PLUGIN, { warmStandby: standby })]);
  try {
    await withTimeout(bh.host.start(), 60_000, "host.start");
    const empty = new Uint8Array(0);
    await pump(bh.host, ["counter.hit"], empty, 1000, 1000, 30_000);
    const kills = ctx.quick ? 5 : 10;
    const values: number[] = [];
    const runs: Awaited<ReturnType<typeof killAndTime>>[] = [];
    const replayed: number[] = [];
    let notRestored = 0;
    let notPromoted = 0;
    for (let k = 0; k <= kills; k++) {
      await pump(bh.host, ["counter.hit"], empty, 100, 100, 30_000);
      await bh.host.snapshot("counter");
      await pump(bh.host, ["counter.hit"], empty, 100, 100, 30_000);
      // A crash some time after the last one: the spare has been replenished.
      const sparePid = standby ? await spareWaiting(bh.host, "counter", 30_000) : undefined;
      const r = await killAndTime(bh.host, "counter", 30_000);
      if (sparePid !== undefined && bh.host.status()[0]!.pid !== sparePid) notPromoted++;
      if (k === 0) continue; // warm-up kill
      values.push(r.ms);
      runs.push(r);
      if (!r.restored) notRestored++;
      else replayed.push(r.restored.replayed);
      progress(`  crash${standby ? " (warm standby)" : ""} ${k}/${kills}: ready again in ${r.ms.toFixed(1)} ms${r.restored ? `, ${r.restored.replayed} replayed` : " (no restore event!)"}`);
    }
    return { values, replayed, notRestored, notPromoted, restarts: bh.host.status()[0]!.restarts, split: crashSplit(runs) };
  } finally {
    await bh.close();
  }
}

export const crash: Scenario = {
  name: "crash",
  describe: "SIGKILL of the counter plugin → 'ready' again with its snapshot restored and 100 payloads replayed: cold spawn, and with a warm standby spare promoted",
  async run(ctx) {
    const kills = ctx.quick ? 5 : 10;
    const cold = await crashRun(ctx, false);
    ctx.results.add({
      name: "crash_ready_ms_p50",
      unit: "ms",
      values: cold.values,
      better: "lower",
      baseline: "spawn_ready_ms_p50",
      note: cold.notRestored ? `BUG? ${cold.notRestored} restarts emitted no snapshot:restored` : `no warm standby (cold spawn); backoff 0; ${cold.split.note}`,
      info: { kills, replayBufferAtKill: cold.replayed, restarts: cold.restarts, splitMs: cold.split.ms, config: { backoffInitialMs: 0, restart: "permanent", warmStandby: false } },
    });
    const warm = await crashRun(ctx, true);
    const problems = [
      warm.notRestored ? `BUG? ${warm.notRestored} restarts emitted no snapshot:restored` : "",
      warm.notPromoted ? `${warm.notPromoted} kills were not served by the waiting spare` : "",
    ].filter(Boolean);
    ctx.results.add({
      name: "crash_ready_standby_ms_p50",
      unit: "ms",
      values: warm.values,
      better: "lower",
      baseline: "crash_ready_ms_p50",
      note: problems.join("; ") || `warm standby spare promoted (Start, Restore, replay); backoff 0; ${warm.split.note}`,
      info: { kills, replayBufferAtKill: warm.replayed, restarts: warm.restarts, splitMs: warm.split.ms, config: { backoffInitialMs: 0, restart: "permanent", warmStandby: true } },
    });
  },
};

interface StateReport {
  kind: "state";
  size: number;
  checksum: number;
  pid: number;
  startDoneAt?: number;
  restoreCalledAt?: number;
  restoreDoneAt?: number;
}

async function stateReport(bh: ReturnType<typeof benchHost>): Promise<StateReport> {
  const before = bh.reports.length;
  const body = new TextEncoder().encode(JSON.stringify({ reportTo: Buffer.from(REPORT_PEER).toString("hex") }));
  await withTimeout(bh.host.dispatch(SRC_PEER, "bench.state.report", body), 60_000, "state report");
  return (await waitForReport(bh.reports, before, 10_000)) as StateReport;
}

async function snapshotRun(ctx: Ctx, sizeBytes: number, store: SnapshotStore | undefined, label: string): Promise<{ save: number[]; restore: number[]; problems: string[] }> {
  // No spare: the restore is measured after a cold spawn, and a spare would hold a second copy of a large state's process.
  const bh = benchHost([nodePlugin("state", STATE_PLUGIN, { capabilities: ["control"], maxInFlight: 64, warmStandby: false })], store ? { store } : {});
  const save: number[] = [];
  const restore: number[] = [];
  const problems: string[] = [];
  try {
    await withTimeout(bh.host.start(), 60_000, "host.start");
    const fill = new TextEncoder().encode(JSON.stringify({ size: sizeBytes, seed: 42 }));
    await withTimeout(bh.host.dispatch(SRC_PEER, "bench.state.fill", fill), 60_000, "state fill");
    const original = await stateReport(bh);
    if (original.size !== sizeBytes) problems.push(`state is ${original.size} bytes, expected ${sizeBytes}`);
    const mb = sizeBytes / 1e6;
    for (let rep = 0; rep < ctx.heavyReps; rep++) {
      const t0 = now();
      const record = await withTimeout(bh.host.snapshot("state"), 180_000, "host.snapshot");
      const saveMs = now() - t0;
      if (record?.bytes.byteLength !== sizeBytes) problems.push(`snapshot record is ${record?.bytes.byteLength} bytes`);
      save.push(mb / (saveMs / 1000));
      const killed = await killAndTime(bh.host, "state", 180_000);
      const after = await stateReport(bh);
      if (!killed.restored || after.startDoneAt === undefined) {
        problems.push("a restart did not restore the snapshot");
        continue;
      }
      if (after.checksum !== original.checksum || after.size !== original.size) problems.push(`BUG: restored state differs (checksum ${after.checksum} vs ${original.checksum})`);
      // From the end of the plugin's Start to the host's snapshot:restored:
      // store load (read + verify), chunked Restore stream, the restore hook.
      const restoreMs = killed.restored.at - after.startDoneAt;
      restore.push(mb / (restoreMs / 1000));
      progress(
        `  snapshot ${label} rep ${rep + 1}/${ctx.heavyReps}: save ${saveMs.toFixed(0)} ms (${save.at(-1)!.toFixed(0)} MB/s), restore ${restoreMs.toFixed(0)} ms (${restore.at(-1)!.toFixed(0)} MB/s), kill → ready ${killed.ms.toFixed(0)} ms`,
      );
    }
  } finally {
    await bh.close();
  }
  return { save, restore, problems };
}

export const snapshot: Scenario = {
  name: "snapshot",
  describe: "save (host.snapshot: take + store) and restore (after SIGKILL) of a large state, file store and memory store",
  needsRaw: true,
  async run(ctx) {
    const sizeMB = ctx.quick ? 20 : 100;
    const size = sizeMB * 1_000_000;
    for (const variant of [
      { suffix: "", store: undefined, what: "FileSnapshotStore (fsync)" },
      { suffix: "_memstore", store: new MemorySnapshotStore(), what: "MemorySnapshotStore" },
    ]) {
      const r = await snapshotRun(ctx, size, variant.store, variant.suffix ? "memstore" : "file");
      const note = [...new Set(r.problems)].join("; ") || (ctx.quick ? `${sizeMB} MB state (quick mode)` : `${sizeMB} MB state`);
      const info = { sizeBytes: size, store: variant.what, quick: ctx.quick };
      ctx.results.add({ name: `snapshot_${sizeMB}mb_save${variant.suffix}_mb_per_s`, unit: "MB/s", values: r.save, better: "higher", baseline: "raw_uds_64k_mb_per_s", note, info });
      ctx.results.add({ name: `snapshot_${sizeMB}mb_restore${variant.suffix}_mb_per_s`, unit: "MB/s", values: r.restore, better: "higher", baseline: "raw_uds_64k_mb_per_s", note, info });
    }
  },
};

/** The counter's total count over every peer, from a fresh snapshot. */
async function counterTotal(host: Host): Promise<number> {
  const record = await host.snapshot("counter");
  const counts = JSON.parse(Buffer.from(record!.bytes).toString("utf8")) as Record<string, number>;
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

export const upgrade: Scenario = {
  name: "upgrade",
  describe: "hot upgrade (host.upgrade) of the counter plugin to the same build under a stream of payloads: how long delivery is held",
  async run(ctx) {
    const bh = benchHost([nodePlugin("counter", COUNTER_PLUGIN, { warmStandby: false })]);
    try {
      await withTimeout(bh.host.start(), 60_000, "host.start");
      const empty = new Uint8Array(0);
      await pump(bh.host, ["counter.hit"], empty, 1000, 1000, 30_000);
      let dispatched = 1000;
      const n = ctx.quick ? 5 : 10;
      const pauses: number[] = [];
      const totals: number[] = [];
      const problems = new Set<string>();
      for (let i = 0; i <= n; i++) {
        // Payloads keep arriving while the build is replaced.
        const load = pump(bh.host, ["counter.hit"], empty, 2000, 64, 60_000);
        const t0 = now();
        const r = await withTimeout(bh.host.upgrade("counter"), 60_000, "host.upgrade");
        const totalMs = now() - t0;
        const pumped = await load;
        dispatched += 2000;
        if (pumped.failed || pumped.timedOut) problems.add(`BUG? ${pumped.failed} payloads failed during an upgrade (${pumped.firstError ?? "timed out"})`);
        if (i === 0) continue; // warm-up
        pauses.push(r.pauseMs);
        totals.push(totalMs);
        progress(`  upgrade ${i}/${n}: delivery held ${r.pauseMs.toFixed(1)} ms (upgrade in all ${totalMs.toFixed(0)} ms, pid ${r.fromPid} → ${r.toPid})`);
      }
      const total = await counterTotal(bh.host);
      if (total !== dispatched) problems.add(`BUG: the counter counts ${total} payloads, ${dispatched} were dispatched`);
      ctx.results.add({
        name: "upgrade_pause_ms_p50",
        unit: "ms",
        values: pauses,
        better: "lower",
        note: [...problems].join("; ") || `delivery held from the batch boundary to the new build's Deliver stream (drain, snapshot, Restore while it is stored; Start ran before); state exact (${total} counted)`,
        info: { upgrades: n, totalMs: totals, state: "counter: one peer's count (small)", load: "2000 payloads, 64 in flight, during each upgrade" },
      });
    } finally {
      await bh.close();
    }
  },
};
