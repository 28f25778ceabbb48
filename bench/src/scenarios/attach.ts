/**
 * Attach mode (docs/remote-plugins.md) over loopback TCP with mutual TLS,
 * beside the same plugins spawned on a unix socket in the same run:
 * dispatch throughput (256 B, every payload acked), the host-call round trip
 * (lookupName from a handler; HostService over remoteHostService) and
 * SIGKILL → ready with the snapshot restored. The attached plugins run under
 * a supervisor loop of this process that starts them again at once when they
 * exit (Kubernetes would add its own restart delay). Certificates come from
 * the openssl CLI.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import type { Host, PluginConfig } from "@plugwire/host";
import {
  benchHost,
  COUNTER_PLUGIN,
  killTracked,
  nextEvent,
  nodePlugin,
  now,
  progress,
  pump,
  removeTempDir,
  REPORT_PEER,
  SINK_PLUGIN,
  spawnTracked,
  SRC_PEER,
  tempDir,
  waitForReport,
  withTimeout,
} from "../lib.js";
import { DISPATCH_256_COUNT, measureDispatch } from "./delivery.js";
import type { Scenario } from "./types.js";

interface Certs {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

function makeCerts(dir: string): Certs {
  const openssl = (args: string[]): void => void execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  const key = (name: string): void => openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${name}.key`]);
  key("ca");
  openssl(["req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2", "-subj", "/CN=bench-ca", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", "-out", "ca.pem"]);
  // Each side also plays the other role: the host serves HostService (remoteHostService) and the plugin calls it.
  for (const [name, usage, extra] of [
    ["server", "serverAuth,clientAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
    ["client", "clientAuth,serverAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
  ] as const) {
    key(name);
    openssl(["req", "-new", "-key", `${name}.key`, "-subj", `/CN=bench-${name}`, "-out", `${name}.csr`]);
    writeFileSync(join(dir, `${name}.ext`), `basicConstraints=critical,CA:FALSE\nextendedKeyUsage=${usage}\n${extra}\n`);
    openssl(["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", name === "server" ? "2" : "3", "-days", "2", "-extfile", `${name}.ext`, "-out", `${name}.pem`]);
  }
  return { ca: join(dir, "ca.pem"), serverCert: join(dir, "server.pem"), serverKey: join(dir, "server.key"), clientCert: join(dir, "client.pem"), clientKey: join(dir, "client.key") };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Runs `script` in attach mode, started again at once whenever it exits, until stopped. */
class Supervised {
  child: ChildProcess | undefined;
  private stopped = false;
  private listening: (() => void)[] = [];

  constructor(
    private readonly script: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {
    this.start();
  }

  private start(): void {
    if (this.stopped) return;
    const child = spawnTracked(process.execPath, [this.script], { env: this.env, stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    child.stderr!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("serving attach mode")) for (const resolve of this.listening.splice(0)) resolve();
    });
    child.once("exit", () => this.start());
  }

  /** Resolves once the current process says it serves. */
  serving(ms: number): Promise<void> {
    return withTimeout(new Promise<void>((resolve) => this.listening.push(resolve)), ms, "attached plugin listening");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.child) await killTracked(this.child);
  }
}

function attachEnv(port: number, certs: Certs, hostServicePort?: number): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    ...(hostServicePort ? { PLUGWIRE_HOST_ADDRESS: `tcp://127.0.0.1:${hostServicePort}`, PLUGWIRE_HOST_SERVER_NAME: "localhost" } : {}),
    PLUGWIRE_LISTEN: `tcp://127.0.0.1:${port}`,
    PLUGWIRE_TLS_CERT: certs.serverCert,
    PLUGWIRE_TLS_KEY: certs.serverKey,
    PLUGWIRE_TLS_CLIENT_CA: certs.ca,
  };
}

function attached(name: string, port: number, certs: Certs, extra: Partial<PluginConfig> = {}): PluginConfig {
  const { command: _command, args: _args, ...limits } = nodePlugin(name, "");
  // An attached plugin is reconnected to under the same backoff; a little of it keeps the retries from spinning.
  return {
    ...limits,
    attach: { address: `tcp://127.0.0.1:${port}`, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }, serverName: "localhost" },
    backoffInitialMs: 10,
    backoffMaxMs: 20,
    handshakeTimeoutMs: 5_000,
    ...extra,
  } as unknown as PluginConfig;
}

interface LookupReport {
  p50Us: number;
  p99Us: number;
  count: number;
  name?: string;
}

/** Sequential ctx.peers.lookupName round trips timed inside the sink's handler, one report per rep. */
async function lookupRtt(bh: ReturnType<typeof benchHost>, reps: number, n: number, label: string): Promise<{ p50: number[]; p99: number[]; name?: string }> {
  const p50: number[] = [];
  const p99: number[] = [];
  let name: string | undefined;
  for (let rep = 1; rep <= reps; rep++) {
    const body = new TextEncoder().encode(JSON.stringify({ n, warmup: rep === 1 ? 300 : 30, maxMs: 20_000, reportTo: Buffer.from(REPORT_PEER).toString("hex") }));
    const before = bh.reports.length;
    await withTimeout(bh.host.dispatch(SRC_PEER, "bench.lookup", body), 60_000, "bench.lookup dispatch");
    const report = (await waitForReport(bh.reports, before, 10_000)) as LookupReport;
    name = report.name;
    p50.push(report.p50Us);
    p99.push(report.p99Us);
    progress(`  ${label} rep ${rep}/${reps}: p50 ${report.p50Us.toFixed(0)} µs, p99 ${report.p99Us.toFixed(0)} µs over ${report.count} calls`);
  }
  return { p50, p99, name };
}

/** SIGKILLs `pid` and resolves with kill → ready in ms. */
async function killToReady(host: Host, plugin: string, pid: number): Promise<number> {
  const ready = nextEvent<{ plugin: string; state: string }>(host, "plugin:state", (e) => e.plugin === plugin && e.state === "ready", 30_000);
  const t0 = now();
  process.kill(pid, "SIGKILL");
  await ready;
  return now() - t0;
}

export const attach: Scenario = {
  name: "attach",
  describe: "attach mode over loopback TCP + mutual TLS vs the same plugin spawned on a unix socket: dispatch 256 B, host-call RTT, SIGKILL → ready (snapshot restored)",
  async run(ctx) {
    const dir = tempDir("pwattach-");
    const supervised: Supervised[] = [];
    try {
      const certs = makeCerts(dir);
      const count = ctx.quick ? DISPATCH_256_COUNT.quick : DISPATCH_256_COUNT.full;

      // Dispatch: spawned (unix socket) then attached (TCP + TLS), one host each.
      const lookups = ctx.quick ? 500 : 2_000;
      const unix = benchHost([nodePlugin("sink", SINK_PLUGIN, { capabilities: ["peers", "control"] })]);
      let unixRates: number[];
      let unixRtt: Awaited<ReturnType<typeof lookupRtt>>;
      try {
        await withTimeout(unix.host.start(), 60_000, "host.start");
        unixRates = (await measureDispatch(ctx, "attach_unix_dispatch", unix.host, ["bench.sink"], 256, count, 256)).rates;
        unixRtt = await lookupRtt(unix, ctx.reps, lookups, "attach_unix_host_call");
      } finally {
        await unix.close();
      }
      const sinkPort = await freePort();
      const hostServicePort = await freePort();
      const sink = new Supervised(SINK_PLUGIN, attachEnv(sinkPort, certs, hostServicePort));
      supervised.push(sink);
      await sink.serving(30_000);
      const tls = benchHost([attached("sink", sinkPort, certs, { capabilities: ["peers", "control"] })], {
        remoteHostService: { listen: `tcp://127.0.0.1:${hostServicePort}`, tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } },
      });
      try {
        await withTimeout(tls.host.start(), 60_000, "host.start (attach)");
        const r = await measureDispatch(ctx, "attach_tls_dispatch", tls.host, ["bench.sink"], 256, count, 256);
        const rtt = await lookupRtt(tls, ctx.reps, lookups, "attach_tls_host_call");
        const nameNote = (n?: string): string | undefined => (n === "bench-peer" ? undefined : `BUG? lookupName answered ${JSON.stringify(n)}, expected "bench-peer"`);
        ctx.results.add({ name: "attach_unix_host_call_rtt_p50_us", unit: "µs", values: unixRtt.p50, better: "lower", note: nameNote(unixRtt.name) ?? "spawned sink, HostService on the unix socket (same run)", info: { callsPerRep: lookups } });
        ctx.results.add({
          name: "attach_tls_host_call_rtt_p50_us",
          unit: "µs",
          values: rtt.p50,
          better: "lower",
          baseline: "attach_unix_host_call_rtt_p50_us",
          note: nameNote(rtt.name) ?? "attached sink, HostService over loopback TCP + mutual TLS (remoteHostService)",
          info: { callsPerRep: lookups, p99Us: rtt.p99 },
        });
        ctx.results.add({ name: "attach_unix_dispatch_256b_msgs_per_s", unit: "msgs/s", values: unixRates, better: "higher", note: "spawned sink, unix socket (same run)", info: { payloadsPerRep: count } });
        ctx.results.add({
          name: "attach_tls_dispatch_256b_msgs_per_s",
          unit: "msgs/s",
          values: r.rates,
          better: "higher",
          baseline: "attach_unix_dispatch_256b_msgs_per_s",
          note: r.failed ? `${r.failed} failed (${r.firstError})` : "attached sink, loopback TCP + mutual TLS",
          info: { payloadsPerRep: count, transport: "TLS 1.3, ECDSA P-256, grpc-js both sides" },
        });
      } finally {
        await tls.close().catch(() => undefined);
        await sink.stop();
      }

      // SIGKILL → ready: counter with a stored snapshot and 100 payloads to replay.
      const kills = ctx.quick ? 4 : 8;
      const empty = new Uint8Array(0);
      const spawnedMs: number[] = [];
      const spawned = benchHost([nodePlugin("counter", COUNTER_PLUGIN)]);
      try {
        await withTimeout(spawned.host.start(), 60_000, "host.start");
        for (let k = 0; k <= kills; k++) {
          await pump(spawned.host, ["counter.hit"], empty, 100, 100, 30_000);
          await spawned.host.snapshot("counter");
          await pump(spawned.host, ["counter.hit"], empty, 100, 100, 30_000);
          const pid = spawned.host.status()[0]!.pid!;
          const ms = await killToReady(spawned.host, "counter", pid);
          if (k > 0) spawnedMs.push(ms);
        }
      } finally {
        await spawned.close();
      }
      const counterPort = await freePort();
      const counter = new Supervised(COUNTER_PLUGIN, attachEnv(counterPort, certs));
      supervised.push(counter);
      await counter.serving(30_000);
      const remote = benchHost([attached("counter", counterPort, certs)]);
      const attachedMs: number[] = [];
      try {
        await withTimeout(remote.host.start(), 60_000, "host.start (attach)");
        for (let k = 0; k <= kills; k++) {
          await pump(remote.host, ["counter.hit"], empty, 100, 100, 30_000);
          await remote.host.snapshot("counter");
          await pump(remote.host, ["counter.hit"], empty, 100, 100, 30_000);
          const ms = await killToReady(remote.host, "counter", counter.child!.pid!);
          if (k > 0) attachedMs.push(ms);
          progress(`  attach kill ${k}/${kills}: ready again in ${ms.toFixed(0)} ms (unix: ${spawnedMs[Math.max(0, k - 1)]?.toFixed(0) ?? "-"} ms)`);
        }
      } finally {
        await remote.close().catch(() => undefined);
        await counter.stop();
      }
      ctx.results.add({ name: "attach_unix_kill_ready_ms_p50", unit: "ms", values: spawnedMs, better: "lower", note: "spawned counter: SIGKILL → ready (spawn, handshake, Restore, replay 100)", info: { kills } });
      ctx.results.add({
        name: "attach_tls_kill_ready_ms_p50",
        unit: "ms",
        values: attachedMs,
        better: "lower",
        baseline: "attach_unix_kill_ready_ms_p50",
        note: "attached counter: SIGKILL → supervisor restarts it at once → host reconnects (backoff 10-20 ms), TLS, Restore, replay 100",
        info: { kills, backoffInitialMs: 10, backoffMaxMs: 20 },
      });
    } finally {
      for (const s of supervised) await s.stop();
      removeTempDir(dir);
    }
  },
};
