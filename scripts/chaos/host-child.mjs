#!/usr/bin/env node
// The first host of the host-restart scenario, in a process of its own so
// the scenario can SIGKILL it. It runs counter, echo and presence, and
// dispatches counter hits whose senders come from prng(seed), one draw per
// dispatch, so the scenario can rebuild the exact sequence. Over IPC it
// reports its plugin pids, its progress every 20 ms, and every counter
// snapshot it stored (with how many dispatches had resolved by then).
//
//   node scripts/chaos/host-child.mjs '<json options>'   (started by scenarios/host-restart.mjs)
//
// It never ends by itself before maxMs; it is meant to be killed.
import { join } from "node:path";
import { pino } from "pino";
import { pluginConfig } from "./lib/plugins.mjs";
import { node, prng } from "./lib/util.mjs";

const o = JSON.parse(process.argv[2] ?? "{}");
if (!process.send || !o.repo) {
  console.error("host-child: started by the host-restart chaos scenario, over IPC, with its options as JSON");
  process.exit(2);
}
const lib = await import(join(o.repo, "host", "dist", "src", "index.js"));
const logger = pino({ level: "info" }, pino.destination({ dest: o.logPath, sync: false }));
const directory = new lib.MemoryPeerDirectory();
const peers = Array.from({ length: 16 }, (_, i) => node(i + 1));
const host = lib.createHost({
  dataDir: o.dataDir,
  logger,
  snapshotIntervalMs: o.snapshotIntervalMs,
  plugins: ["counter", "echo", "presence"].map((name) => pluginConfig(o.repo, o.run, name, { hostTag: "1" })),
  ports: {
    peers: directory,
    control: { sendDirect: () => undefined, sendRouted: () => false },
    identity: { signingSeed: () => new Uint8Array(32) },
  },
});

let dispatched = 0;
let acked = 0;
let rejected = 0;
/** Dispatches 0..ackedPrefix-1 have all resolved. */
let ackedPrefix = 0;
let resolved = new Uint8Array(1 << 16);
const pids = () => host.status().map((s) => s.pid).filter(Boolean);
const report = (type, extra = {}) => process.send({ type, dispatched, acked, rejected, ackedPrefix, pids: pids(), ...extra });

host.on("snapshot:taken", (e) => {
  if (e.plugin === "counter") report("snapshot", { appliedSeq: e.appliedSeq });
});
await host.start();
report("ready");
setInterval(() => report("progress"), 20);
setTimeout(() => process.exit(3), o.maxMs).unref();
// Should the scenario die first, do not outlive it (the plugins follow through stdin EOF).
process.on("disconnect", () => process.exit(4));

const random = prng(o.seed);
let wake;
const deadline = Date.now() + o.maxMs;
while (Date.now() < deadline) {
  if (dispatched - acked - rejected >= o.maxOutstanding) {
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, 250);
    });
    continue;
  }
  const i = dispatched++;
  const src = peers[Math.floor(random() * peers.length)];
  if (i >= resolved.length) {
    const next = new Uint8Array(resolved.length * 2);
    next.set(resolved);
    resolved = next;
  }
  host.dispatch(src, "counter.hit", new Uint8Array([1])).then(
    () => {
      acked++;
      resolved[i] = 1;
      while (resolved[ackedPrefix]) ackedPrefix++;
      wake?.();
    },
    () => {
      rejected++;
      wake?.();
    },
  );
  if (i % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
}
