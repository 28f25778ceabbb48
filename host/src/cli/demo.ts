/**
 * `plugwire demo` (npm start): a simulated mesh daemon drives the example
 * plugins for about 15 s: peers appear, payloads of several kinds arrive, a
 * peer is forgotten, one plugin is killed with SIGKILL and recovers with its
 * state restored, and a final summary checks the counts are exact.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createHost, type Host } from "../host.js";
import type { PluginConfig } from "../config.js";
import { MemoryPeerDirectory, hex, type HostPorts, type PeerEvent } from "../ports.js";
import type { PluginStatus } from "../supervisor/runner.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..");

export interface DemoOptions {
  durationMs: number;
  /** From the start: past it the demo reports what is stuck and exits 1. */
  deadlineMs: number;
  out: NodeJS.WriteStream;
}

/** How long the deadline report waits for the host to stop before exiting anyway. */
const DEADLINE_STOP_MS = 5_000;

interface DemoPeer {
  name: string;
  id: Uint8Array;
  x25519: Uint8Array;
}

function makePeer(name: string): DemoPeer {
  return {
    name,
    id: createHash("sha256").update(`node:${name}`).digest(),
    x25519: createHash("sha256").update(`x25519:${name}`).digest(),
  };
}

/** The example plugins, plus the Python, Go and Rust ones when they are built. */
function demoPlugins(say: (line: string) => void): PluginConfig[] {
  const ts = (name: string, capabilities: PluginConfig["capabilities"]): PluginConfig => ({
    name,
    command: process.execPath,
    args: [join(repo, "plugins-example", "dist", `${name}.js`)],
    capabilities,
  });
  const plugins = [ts("echo", ["control"]), ts("counter", []), ts("presence", ["peers"])];
  const python = join(repo, "plugins-example", "python", ".venv", "bin", "python");
  const pyPlugin = join(repo, "plugins-example", "python", "counter.py");
  if (existsSync(python) && existsSync(pyPlugin)) {
    plugins.push({ name: "counter-py", command: python, args: [pyPlugin], capabilities: ["control"] });
  } else {
    say("  (skipping the Python example: run scripts/setup-polyglot.sh first; it needs python3)");
  }
  const goBinary = join(repo, "plugins-example", "go", "bin", "presence-go");
  if (existsSync(goBinary)) {
    plugins.push({ name: "presence-go", command: goBinary, args: [], capabilities: ["peers", "control"] });
  } else {
    say("  (skipping the Go example: run scripts/setup-polyglot.sh first; it needs go)");
  }
  const rustBinary = join(repo, "target", "release", "counter-rust");
  if (existsSync(rustBinary)) {
    plugins.push({ name: "counter-rust", command: rustBinary, args: [], capabilities: ["control"] });
  } else {
    say("  (skipping the Rust example: run scripts/setup-polyglot.sh first; it needs cargo)");
  }
  return plugins;
}

function until(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function demo(options: DemoOptions): Promise<number> {
  const { out } = options;
  const say = (line: string): void => void out.write(`${line}\n`);
  const dataDir = mkdtempSync(join(tmpdir(), "plugwire-demo-"));
  const logFile = join(dataDir, "host.log");
  const logger = pino({ name: "plugwire", level: "info" }, pino.destination({ dest: logFile, sync: false }));
  say("plugwire demo: a simulated mesh daemon with out-of-process plugins");
  say(`  data dir ${dataDir} (host log: ${logFile})`);
  const plugins = demoPlugins(say);

  const directory = new MemoryPeerDirectory();
  let sends = 0;
  const ports: HostPorts = {
    peers: directory,
    control: {
      sendDirect: () => {
        sends++;
      },
      sendRouted: (dst) => directory.lookupName(dst) !== undefined,
    },
    identity: { signingSeed: () => new Uint8Array(32) },
  };
  const createDemoHost = (list: PluginConfig[]): Host =>
    createHost({ plugins: list, ports, dataDir, logger, snapshotIntervalMs: 3_000 });

  const host = createDemoHost(plugins);
  let dispatched = 0;
  let acked = 0;
  let failed = 0;
  let outstanding = 0;
  let phase = "starting the plugins";
  // The demo must always finish: past the deadline, say what is stuck and exit 1.
  let expired = false;
  let statusTimer: NodeJS.Timeout | undefined;
  const watchdog = setTimeout(() => {
    expired = true;
    clearInterval(statusTimer);
    say("");
    say(`plugwire demo: DEADLINE: not finished after ${Math.round(options.deadlineMs / 1000)} s, while ${phase}.`);
    say(`  dispatches not settled: ${outstanding} of ${dispatched}`);
    for (const s of host.status()) {
      const stuck = s.queued + s.inFlight > 0 || s.state !== "ready";
      say(
        `  ${stuck ? "STUCK" : "ok   "} ${s.name.padEnd(12)} state ${s.state}, ${s.inFlight} in flight, ${s.queued} queued, ` +
          `acked through seq ${s.lastAcked}, restarts ${s.restarts}${s.lastError ? `, last error: ${s.lastError}` : ""}`,
      );
    }
    say(`  the host log has the details: ${logFile}`);
    logger.flush();
    const stopped = host.stop().catch(() => undefined);
    const bound = new Promise((resolve) => setTimeout(resolve, DEADLINE_STOP_MS).unref());
    void Promise.race([stopped, bound]).finally(() => process.exit(1));
  }, options.deadlineMs);
  watchdog.unref();
  const readyAt = new Map<string, number>();
  const restarts = new Map<string, number>();
  let crashReadyMs: number | undefined;
  let killedAt = 0;
  let restored: { appliedSeq: number; replayed: number } | undefined;
  const t0 = performance.now();
  host.on("plugin:state", ({ plugin, state }) => {
    if (expired) return;
    if (state === "ready" && !readyAt.has(plugin)) readyAt.set(plugin, performance.now() - t0);
    if (state === "ready" && killedAt > 0 && crashReadyMs === undefined && plugin === "counter") crashReadyMs = performance.now() - killedAt;
    if (!out.isTTY || state !== "ready") say(`  [${elapsed()}] ${plugin} → ${state}`);
  });
  host.on("plugin:restart", ({ plugin }) => restarts.set(plugin, (restarts.get(plugin) ?? 0) + 1));
  host.on("snapshot:restored", ({ plugin, appliedSeq, replayed }) => {
    if (plugin === "counter") restored = { appliedSeq, replayed };
  });
  const elapsed = (): string => `${((performance.now() - t0) / 1000).toFixed(1)}s`;

  await host.start();
  phase = "dispatching payloads";
  say(`  ${plugins.length} plugins ready in ${Math.round(performance.now() - t0)} ms: ${[...readyAt].map(([p, ms]) => `${p} ${Math.round(ms)} ms`).join(", ")}`);

  const peers = ["alice", "bob", "carol", "dave", "erin", "frank"].map(makePeer);
  const online: DemoPeer[] = [];
  const expected = new Map<string, number>();
  const kinds = host.status().flatMap((s) => s.kinds);
  const send = (peer: DemoPeer, kind: string, body: Uint8Array): void => {
    if (!kinds.includes(kind)) return;
    dispatched++;
    outstanding++;
    if (kind === "counter.hit") expected.set(hex(peer.id), (expected.get(hex(peer.id)) ?? 0) + 1);
    host.dispatch(peer.id, kind, body).then(
      () => {
        acked++;
        outstanding--;
      },
      (e: unknown) => {
        failed++;
        outstanding--;
        if (!expired) say(`  [${elapsed()}] dispatch failed: ${(e as Error).message}`);
      },
    );
  };
  const publish = (event: PeerEvent): void => {
    directory.apply(event);
    host.publishPeerEvent(event);
  };

  let lines = 0;
  const render = (): void => {
    const rows = host.status().map((s: PluginStatus) =>
      `  ${s.name.padEnd(12)} ${s.state.padEnd(10)} pid ${String(s.pid ?? "-").padEnd(7)} handled ${String(s.lastAcked).padStart(7)}  queued ${String(s.queued).padStart(5)}  restarts ${s.restarts}`,
    );
    const head = `  [${elapsed()}] dispatched ${dispatched}, acked ${acked}, failed ${failed}, peers online ${online.length}, sends ${sends}`;
    if (out.isTTY) {
      if (lines > 0) out.write(`\x1b[${lines}A`);
      out.write([head, ...rows].map((l) => `\x1b[2K${l}`).join("\n") + "\n");
      lines = rows.length + 1;
    } else {
      say([head, ...rows].join("\n"));
    }
  };
  statusTimer = setInterval(render, out.isTTY ? 250 : 3_000);

  const body = new Uint8Array(256);
  const duration = options.durationMs;
  const start = performance.now();
  let nextPeer = 0;
  let forgotten = false;
  let killed = false;
  while (performance.now() - start < duration && !expired) {
    const t = performance.now() - start;
    if (nextPeer < peers.length && t >= nextPeer * 600) {
      const p = peers[nextPeer++]!;
      online.push(p);
      publish({ type: "seen", nodeId: p.id, x25519Pub: p.x25519, name: p.name, source: nextPeer % 2 ? "direct" : "routed" });
      if (out.isTTY) lines = 0;
      say(`  [${elapsed()}] peer ${p.name} seen`);
    }
    if (!forgotten && t >= duration * 0.45) {
      forgotten = true;
      const erin = online.find((p) => p.name === "erin");
      if (erin) {
        online.splice(online.indexOf(erin), 1);
        // The forget is a sequenced item of each plugin's stream, after every
        // payload dispatched so far: no need to wait for them. The kill below
        // comes before the next snapshot, so counter's recovery replays it.
        const told = await host.peerForgotten(erin.id);
        publish({ type: "forgotten", nodeId: erin.id });
        expected.delete(hex(erin.id));
        if (out.isTTY) lines = 0;
        say(`  [${elapsed()}] peer erin forgotten: ${told.ok.length} plugins told, ${told.failed.length} failed`);
      }
    }
    if (!killed && t >= duration * 0.55) {
      killed = true;
      const pid = host.status().find((s) => s.name === "counter")?.pid;
      if (pid) {
        if (out.isTTY) lines = 0;
        say(`  [${elapsed()}] killing counter (pid ${pid}) with SIGKILL`);
        killedAt = performance.now();
        process.kill(pid, "SIGKILL");
      }
    }
    if (online.length > 0 && outstanding < 4_000) {
      for (let i = 0; i < 400; i++) send(online[i % online.length]!, "counter.hit", body);
      const p = online[Math.floor(Math.random() * online.length)]!;
      send(p, "echo.ping", new TextEncoder().encode(`ping from ${p.name}`));
      send(p, "presence.who", new Uint8Array());
      send(p, "counter-py.hit", body);
      send(p, "counter-py.ping", new TextEncoder().encode("hi"));
      send(p, "echo-go.ping", new TextEncoder().encode("hi"));
      send(p, "presence-go.who", new Uint8Array());
      send(p, "rust.hit", body);
      send(p, "rust.ping", new TextEncoder().encode("hi"));
    }
    await until(20);
  }
  // Past the deadline the watchdog reports and exits; nothing more to say here.
  if (expired) return new Promise<number>(() => undefined);
  phase = "waiting for every dispatch to settle";
  while (outstanding > 0) await until(10);
  const wall = (performance.now() - start) / 1000;
  clearInterval(statusTimer);
  render();

  phase = "taking the final snapshot";
  const final = await host.snapshotAll();
  const counterSnap = final.ok.find((o) => o.plugin === "counter")?.value;
  const counts = counterSnap ? (JSON.parse(Buffer.from(counterSnap.bytes).toString()) as Record<string, number>) : {};
  const exact = [...expected].every(([peer, n]) => counts[peer] === n) && Object.keys(counts).length === expected.size;
  const statuses = host.status();
  await host.stop();

  // A second host on the same data dir restores counter's snapshot.
  phase = "restoring the final snapshot in a fresh host";
  const again = createDemoHost(plugins.filter((p) => p.name === "counter"));
  let restoredAgain: number | undefined;
  again.on("snapshot:restored", ({ appliedSeq }) => {
    restoredAgain = appliedSeq;
  });
  await again.start();
  const after = (await again.snapshotAll()).ok[0]?.value;
  const countsAfter = after ? (JSON.parse(Buffer.from(after.bytes).toString()) as Record<string, number>) : {};
  await again.stop();
  const sameAfterRestart = JSON.stringify(countsAfter) === JSON.stringify(counts);

  say("");
  say("summary");
  say(`  payloads: ${dispatched} dispatched, ${acked} acked, ${failed} failed in ${wall.toFixed(1)} s (${Math.round(acked / wall)}/s)`);
  for (const s of statuses) {
    say(`  ${s.name.padEnd(12)} handled ${String(s.lastAcked).padStart(7)}  restarts ${s.restarts}  ready in ${Math.round(readyAt.get(s.name) ?? 0)} ms`);
  }
  say(`  effects sent through the control port: ${sends}`);
  if (killedAt > 0) {
    say(`  counter was killed with SIGKILL and was ready again after ${crashReadyMs === undefined ? "?" : Math.round(crashReadyMs)} ms` +
      (restored ? `, restored from its snapshot at seq ${restored.appliedSeq} and replayed the payloads after it` : ""));
  }
  say(`  counter's counts equal what was dispatched: ${exact ? "yes" : "NO"} (${Object.values(counts).reduce((a, b) => a + b, 0)} hits over ${Object.keys(counts).length} peers)`);
  say(`  snapshot restored by a fresh host at seq ${restoredAgain ?? "?"}: counts identical ${sameAfterRestart ? "yes" : "NO"}`);
  clearTimeout(watchdog);
  logger.flush();
  return exact && sameAfterRestart && failed === 0 ? 0 : 1;
}
