#!/usr/bin/env node
/**
 * A plugwire host in a process of its own, for the HostService fuzzer: the
 * fuzzer watches it for a crash and reads its peak RSS from /proc.
 *
 * argv[2]: JSON { dataDir, runDirParent, logFile, tokenFile, holdMs, dispatchEveryMs, publishEveryMs }
 *
 * Plugins: `fz` (capabilities peers, control, identity) and `fz-nocap` (none),
 * both fuzz/fuzz-plugin.mjs. `fz-nocap` is restarted once so that a token of
 * a previous launch is known. While it runs, the host dispatches `fz.hold`
 * payloads (so seqs are in flight) and publishes peer events (so WatchPeers
 * streams get writes).
 *
 * stdout, one JSON object a line: {type:"ready", tokens, pluginPids}, then
 * {type:"hint", seq} (the newest dispatched seq of fz), {type:"status", ...}
 * on request, {type:"stopped"}. stdin commands: "status", "stop".
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createHost, MemoryPeerDirectory } from "../host/dist/src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const opts = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const directory = new MemoryPeerDirectory();
const plugin = (name, capabilities) => ({
  name,
  command: process.execPath,
  args: [join(here, "fuzz-plugin.mjs")],
  config: { tokenFile: opts.tokenFile, holdMs: opts.holdMs },
  capabilities,
  maxInFlight: 64,
});
const host = createHost({
  plugins: [plugin("fz", ["peers", "control", "identity"]), plugin("fz-nocap", [])],
  dataDir: opts.dataDir,
  runDirParent: opts.runDirParent,
  logger: pino({ level: "warn" }, pino.destination({ dest: opts.logFile, sync: false })),
  snapshotIntervalMs: 0,
  ports: {
    peers: directory,
    control: {
      sendDirect: () => undefined,
      sendRouted: (dst) => dst[0] === 1,
    },
    identity: { signingSeed: () => new Uint8Array(32).fill(7) },
  },
});

/** Tokens by plugin name: from the host's token map when visible, else from what the plugins wrote. */
function tokensByName() {
  const byName = {};
  const map = host.tokens;
  if (map instanceof Map) for (const [token, caller] of map) byName[caller.name] = token;
  if (!byName.fz || !byName["fz-nocap"]) {
    for (const line of readFileSync(opts.tokenFile, "utf8").split("\n").filter(Boolean)) {
      const { name, token } = JSON.parse(line);
      if (token) byName[name] = token;
    }
  }
  return byName;
}

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();

await host.start();
const before = tokensByName();
await host.restart("fz-nocap");
const after = tokensByName();
out({
  type: "ready",
  pid: process.pid,
  runDir: host.runDirectory,
  tokens: { valid: after.fz, other: after["fz-nocap"], old: before["fz-nocap"] !== after["fz-nocap"] ? before["fz-nocap"] : undefined },
  pluginPids: host.status().map((s) => s.pid),
});

let dispatched = 0;
let dispatchedOk = 0;
let dispatchErrors = 0;
let inFlight = 0;
const src = new Uint8Array(32).fill(9);
const dispatchTimer = setInterval(() => {
  if (inFlight >= 32) return;
  inFlight++;
  dispatched++;
  host.dispatch(src, "fz.hold", Buffer.from(String(dispatched))).then(
    () => {
      inFlight--;
      dispatchedOk++;
    },
    () => {
      inFlight--;
      dispatchErrors++;
    },
  );
}, opts.dispatchEveryMs);
const hintTimer = setInterval(() => out({ type: "hint", seq: dispatched }), 50);

let peerCounter = 0;
const publishTimer = setInterval(() => {
  const n = peerCounter++ % 256;
  const nodeId = new Uint8Array(32).fill(n);
  const event =
    peerCounter % 5 === 0
      ? { type: "forgotten", nodeId }
      : { type: "seen", nodeId, x25519Pub: new Uint8Array(32).fill(255 - n), name: `peer-${n}`, source: n % 2 ? "direct" : "routed" };
  directory.apply(event);
  host.publishPeerEvent(event);
}, opts.publishEveryMs);

function status() {
  // With --expose-gc: the heap that is still reachable, not garbage not yet collected.
  globalThis.gc?.();
  return {
    type: "status",
    memory: process.memoryUsage(),
    watchers: host.service?.watchers?.size,
    eventLoopDelayMaxMs: Math.round(delay.max / 1e6),
    eventLoopDelayP99Ms: Math.round(delay.percentile(99) / 1e6),
    dispatched,
    dispatchedOk,
    dispatchErrors,
    plugins: host.status().map((s) => ({ name: s.name, state: s.state, pid: s.pid, restarts: s.restarts, lastExit: s.lastExit, lastError: s.lastError })),
  };
}

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(dispatchTimer);
  clearInterval(hintTimer);
  clearInterval(publishTimer);
  const pids = host.status().map((s) => s.pid).filter(Boolean);
  await host.stop();
  out({ type: "stopped", pids });
  process.stdout.write("", () => process.exit(0));
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (line === "status") out(status());
  else if (line === "reset") delay.reset();
  else if (line === "stop") void stop();
});
rl.on("close", () => void stop());
