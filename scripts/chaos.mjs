#!/usr/bin/env node
// Chaos run: the counter, echo and presence example plugins under steady,
// bounded load while a seeded PRNG SIGKILLs a random ready plugin every
// --kill-every-ms. At the end it checks what the delivery guarantees promise:
// nothing lost, no effect duplicated, the counter's state exact, no plugin
// process left, no file descriptor leaked. Exits 1 when any check fails.
//
//   node scripts/chaos.mjs [--duration-s 60] [--kill-every-ms 2000] [--seed N]
//                          [--max-payloads 3000000]
//
// Run after a build (`npm run chaos` builds first). Bounded: load stops at
// --duration-s or --max-payloads, draining is given 60 s, stopping 30 s.
import { readdirSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { pino } from "pino";

const repo = join(fileURLToPath(import.meta.url), "..", "..");
const { createHost, MemoryPeerDirectory, hex } = await import(join(repo, "host", "dist", "src", "index.js"));

const { values: argv } = parseArgs({
  options: {
    "duration-s": { type: "string", default: "60" },
    "kill-every-ms": { type: "string", default: "2000" },
    seed: { type: "string", default: "1" },
    "max-payloads": { type: "string", default: "3000000" },
  },
});
const durationMs = Number(argv["duration-s"]) * 1000;
const killEveryMs = Number(argv["kill-every-ms"]);
const seed = Number(argv.seed) >>> 0;
const maxPayloads = Number(argv["max-payloads"]);
for (const [name, value] of Object.entries({ durationMs, killEveryMs, maxPayloads })) {
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`chaos: ${name} must be a positive number`);
    process.exit(2);
  }
}

/** Drain and stop deadlines. */
const DRAIN_MS = 60_000;
const STOP_MS = 30_000;
const PROGRESS_EVERY_MS = 5_000;
/**
 * Descriptors allowed to stay open after stop. Node opens a few
 * process-lifetime descriptors lazily, on first use (for example a /dev/null
 * handle after the first child process), and they are not per launch. Every
 * launch opens several (sockets, stdio pipes), so a leak per launch would
 * grow with the dozens of launches of a run and blow far past 2. Runs so far
 * measured 0 or 1.
 */
const FD_TOLERANCE = 2;

/** mulberry32: a small seeded PRNG. */
function prng(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const killRandom = prng(seed);
const loadRandom = prng(seed ^ 0x9e3779b9);

const fdCount = () => readdirSync("/proc/self/fd").length;
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code !== "ESRCH";
  }
};
const node = (id) => new Uint8Array(32).fill(id);
const withTimeout = (promise, ms, what) => {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
};

// ---------------------------------------------------------------- host setup
const fdsBefore = fdCount();
const dataDir = mkdtempSync(join(tmpdir(), "pw-chaos-"));
const logStats = { replayed: 0, redelivered: 0, relaunches: 0, errors: new Map() };
const logger = pino(
  { level: "info" },
  {
    write(line) {
      // Parse only what the report needs; plugin log lines are many.
      if (line.includes('"payloads replayed to the new launch"')) {
        const l = JSON.parse(line);
        logStats.replayed += l.replayed ?? 0;
        logStats.redelivered += l.redelivered ?? 0;
        logStats.relaunches++;
      } else if (line.startsWith('{"level":50') || line.startsWith('{"level":60')) {
        const msg = JSON.parse(line).msg;
        logStats.errors.set(msg, (logStats.errors.get(msg) ?? 0) + 1);
      }
    },
  },
);

const directory = new MemoryPeerDirectory();
const echoSeen = []; // echoSeen[i] = times the frame of echo payload i was sent
let effectsEmitted = 0;
let foreignEffects = 0;
const decoder = new TextDecoder();
const examples = join(repo, "plugins-example", "dist");
// Kills every 2 s would trip the crash-loop quarantine (5 restarts / 60 s)
// and push the backoff towards 30 s; chaos wants the plugins back quickly.
const chaosPolicy = { maxRestarts: 10_000, backoffMaxMs: 500 };
const host = createHost({
  dataDir,
  logger,
  snapshotIntervalMs: 1_000,
  admin: false,
  plugins: [
    { name: "counter", command: process.execPath, args: [join(examples, "counter.js")], ...chaosPolicy },
    { name: "echo", command: process.execPath, args: [join(examples, "echo.js")], capabilities: ["control"], ...chaosPolicy },
    { name: "presence", command: process.execPath, args: [join(examples, "presence.js")], capabilities: ["peers"], ...chaosPolicy },
  ],
  ports: {
    peers: directory,
    control: {
      sendDirect(_peer, frame) {
        effectsEmitted++;
        const text = decoder.decode(frame);
        const match = /^pong:e-(\d+)$/.exec(text);
        if (!match) {
          foreignEffects++;
          return;
        }
        const i = Number(match[1]);
        echoSeen[i] = (echoSeen[i] ?? 0) + 1;
      },
      sendRouted: () => false,
    },
    identity: { signingSeed: () => new Uint8Array(32) },
  },
});

const pids = new Set();
const notePids = () => {
  for (const s of host.status()) if (s.pid) pids.add(s.pid);
};
host.on("plugin:state", notePids);
host.on("plugin:exit", (e) => pids.add(e.pid));
let deadLettered = 0;
host.on("plugin:dead-letter", () => deadLettered++);

// ---------------------------------------------------------------- load
/** One bounded-concurrency load generator per plugin. */
function loadGenerator(name, kind, maxOutstanding, payload) {
  const stats = { name, dispatched: 0, acked: 0, rejected: new Map(), outstanding: 0, ackedIds: [] };
  let wake;
  let idle;
  const idleWaiters = [];
  const settled = () => {
    stats.outstanding--;
    const w = wake;
    wake = undefined;
    w?.();
    if (stats.outstanding === 0) for (const r of idleWaiters.splice(0)) r();
  };
  return {
    stats,
    async run(shouldStop) {
      while (!shouldStop()) {
        if (stats.outstanding >= maxOutstanding) {
          await new Promise((resolve) => {
            wake = resolve;
            // Re-check the stop flag now and then even when nothing settles.
            setTimeout(resolve, 250).unref();
          });
          continue;
        }
        const id = stats.dispatched++;
        const { src, body, onAck } = payload(id);
        stats.outstanding++;
        host.dispatch(src, kind, body).then(
          () => {
            stats.acked++;
            onAck?.();
            settled();
          },
          (e) => {
            const code = e?.code ?? "error";
            stats.rejected.set(code, (stats.rejected.get(code) ?? 0) + 1);
            settled();
          },
        );
        // Yield now and then so acks, kills and progress get their turn.
        if (id % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
      }
    },
    drained() {
      if (stats.outstanding === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}

const counterPeers = Array.from({ length: 16 }, (_, i) => node(i + 1));
const counterExpected = new Map(); // peer hex -> acked hits
const counterLoad = loadGenerator("counter", "counter.hit", 2_000, () => {
  const src = counterPeers[Math.floor(loadRandom() * counterPeers.length)];
  return {
    src,
    body: new Uint8Array([1]),
    onAck: () => counterExpected.set(hex(src), (counterExpected.get(hex(src)) ?? 0) + 1),
  };
});
const echoAcked = []; // echoAcked[i] = true once echo payload i is acked
const echoLoad = loadGenerator("echo", "echo.ping", 2_000, (id) => ({
  src: node(0x40),
  body: new TextEncoder().encode(`e-${id}`),
  onAck: () => (echoAcked[id] = true),
}));
const presenceLoad = loadGenerator("presence", "presence.who", 64, (id) => ({ src: node(1 + (id % 16)), body: new Uint8Array() }));
const loads = [counterLoad, echoLoad, presenceLoad];
const totalDispatched = () => loads.reduce((n, l) => n + l.stats.dispatched, 0);
const totalAcked = () => loads.reduce((n, l) => n + l.stats.acked, 0);

// ---------------------------------------------------------------- run
console.log(
  `chaos: ${durationMs / 1000} s, SIGKILL every ${killEveryMs} ms, seed ${seed}, at most ${maxPayloads} payloads; data dir ${dataDir}`,
);
const t0 = Date.now();
await withTimeout(host.start(), 30_000, "host start");
notePids();

// A few peers, so presence has names to look up and events to watch.
for (let i = 1; i <= 16; i++) {
  const event = { type: "seen", nodeId: node(i), x25519Pub: new Uint8Array(32).fill(i), name: `peer-${i}`, source: "direct" };
  directory.apply(event);
  host.publishPeerEvent(event);
}

const kills = [];
const killTimer = setInterval(() => {
  const ready = host.status().filter((s) => s.state === "ready" && s.pid);
  if (ready.length === 0) return;
  const victim = ready[Math.floor(killRandom() * ready.length)];
  pids.add(victim.pid);
  try {
    process.kill(victim.pid, "SIGKILL");
    kills.push({ plugin: victim.name, pid: victim.pid, inFlight: victim.inFlight, at: Date.now() - t0 });
  } catch (e) {
    console.log(`chaos: could not kill ${victim.name} (${victim.pid}): ${e.message}`);
  }
}, killEveryMs);

let lastAcked = 0;
const progressTimer = setInterval(() => {
  const acked = totalAcked();
  const states = host
    .status()
    .map((s) => `${s.name}=${s.state}/r${s.restarts}/q${s.queued}/f${s.inFlight}`)
    .join(" ");
  console.log(
    `[${((Date.now() - t0) / 1000).toFixed(0).padStart(3)} s] dispatched ${totalDispatched()}, acked ${acked} ` +
      `(+${Math.round((acked - lastAcked) / (PROGRESS_EVERY_MS / 1000))}/s), kills ${kills.length}, ${states}`,
  );
  lastAcked = acked;
}, PROGRESS_EVERY_MS);

const deadline = t0 + durationMs;
const shouldStop = () => Date.now() >= deadline || totalDispatched() >= maxPayloads;
await Promise.all(loads.map((l) => l.run(shouldStop)));
clearInterval(killTimer);
console.log(`chaos: load stopped after ${((Date.now() - t0) / 1000).toFixed(1)} s; draining`);

let drainError;
try {
  await withTimeout(Promise.all(loads.map((l) => l.drained())), DRAIN_MS, "every dispatch to settle");
} catch (e) {
  drainError = e.message;
}
clearInterval(progressTimer);

// The counter's state, taken from the plugin itself.
let counterExact = false;
let counterDetail = "";
try {
  const record = await withTimeout(host.snapshot("counter"), 30_000, "the final counter snapshot");
  const counts = JSON.parse(decoder.decode(record.bytes));
  const expected = Object.fromEntries(counterExpected);
  const keys = new Set([...Object.keys(counts), ...Object.keys(expected)]);
  const diffs = [...keys].filter((k) => counts[k] !== expected[k]).map((k) => `${k.slice(0, 8)}: state ${counts[k]} vs acked ${expected[k]}`);
  counterExact = diffs.length === 0;
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  counterDetail = counterExact
    ? `${total} hits over ${keys.size} peers, applied_seq ${record.appliedSeq}`
    : diffs.slice(0, 5).join("; ");
} catch (e) {
  counterDetail = `could not check: ${e.message}`;
}

const metrics = await host.metrics.registry.getMetricsAsJSON();
const metricSum = (name) =>
  (metrics.find((m) => m.name === name)?.values ?? []).reduce((n, v) => n + v.value, 0);
const restarts = metricSum("plugwire_plugin_restarts_total");
notePids();
let stopError;
try {
  await withTimeout(host.stop(), STOP_MS, "host stop");
} catch (e) {
  stopError = e.message;
}
rmSync(dataDir, { recursive: true, force: true });

// Processes and fds: give the kernel and libuv a moment to close what stop closed.
let orphans = [...pids].filter(alive);
let fdsAfter = fdCount();
for (let waited = 0; (orphans.length > 0 || fdsAfter - fdsBefore > FD_TOLERANCE) && waited < 3_000; waited += 100) {
  await new Promise((resolve) => setTimeout(resolve, 100));
  orphans = [...pids].filter(alive);
  fdsAfter = fdCount();
}

// ---------------------------------------------------------------- report
const dispatched = totalDispatched();
const acked = totalAcked();
const rejected = loads.reduce((n, l) => n + [...l.stats.rejected.values()].reduce((a, b) => a + b, 0), 0);
const lost = dispatched - acked - rejected;
let duplicated = 0;
let missingEffects = 0;
for (let i = 0; i < echoLoad.stats.dispatched; i++) {
  const seen = echoSeen[i] ?? 0;
  if (seen > 1) duplicated += seen - 1;
  if (echoAcked[i] && seen === 0) missingEffects++;
}
const fdLeak = fdsAfter - fdsBefore;

const row = (label, value) => console.log(`  ${label.padEnd(34)} ${value}`);
console.log("\nchaos report");
row("duration", `${((Date.now() - t0) / 1000).toFixed(1)} s (seed ${seed})`);
row("kills (SIGKILL)", `${kills.length} (${["counter", "echo", "presence"].map((p) => `${p} ${kills.filter((k) => k.plugin === p).length}`).join(", ")})`);
row("restarts (metric)", restarts);
row("payloads dispatched", dispatched);
for (const l of loads) {
  const rej = [...l.stats.rejected].map(([c, n]) => `${c} ${n}`).join(", ") || "none";
  row(`  ${l.stats.name}`, `dispatched ${l.stats.dispatched}, acked ${l.stats.acked}, rejected: ${rej}`);
}
row("handled (acked)", acked);
row("redelivered after crashes", logStats.redelivered);
row("replayed after restores", logStats.replayed);
row("dead-lettered", `${deadLettered} (metric ${metricSum("plugwire_dead_letters_total")})`);
row("rejected", rejected);
row("lost (dispatched-acked-rejected)", lost);
row("effects emitted (echo)", `${effectsEmitted}${foreignEffects ? ` (${foreignEffects} not echo frames)` : ""}`);
row("effects duplicated", duplicated);
row("effects missing (acked, not sent)", missingEffects);
row("counter state exact", `${counterExact ? "yes" : "NO"}: ${counterDetail}`);
row("plugin pids seen", pids.size);
row("orphan processes", orphans.length ? orphans.join(", ") : "none");
row("fds before / after", `${fdsBefore} / ${fdsAfter} (leak ${fdLeak}, tolerance ${FD_TOLERANCE})`);
if (logStats.errors.size > 0) {
  row("host error log lines", [...logStats.errors].map(([m, n]) => `${n}x "${m}"`).join("; "));
}
if (drainError) row("drain", drainError);
if (stopError) row("stop", stopError);

const failures = [];
if (lost !== 0) failures.push(`${lost} payloads lost`);
if (duplicated !== 0) failures.push(`${duplicated} effects duplicated`);
if (missingEffects !== 0) failures.push(`${missingEffects} effects missing`);
if (foreignEffects !== 0) failures.push(`${foreignEffects} unexpected effects`);
if (!counterExact) failures.push("counter state not exact");
if (orphans.length > 0) failures.push(`${orphans.length} orphan processes`);
if (fdLeak > FD_TOLERANCE) failures.push(`${fdLeak} fds leaked`);
if (drainError) failures.push(drainError);
if (stopError) failures.push(stopError);
console.log(failures.length === 0 ? "\nchaos: PASS" : `\nchaos: FAIL: ${failures.join("; ")}`);
process.exit(failures.length === 0 ? 0 : 1);
