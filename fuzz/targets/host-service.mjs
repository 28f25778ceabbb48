/**
 * Target 1: the plugin-facing HostService of a real host, in a child process.
 * Inputs are gRPC calls (valid and invalid protobuf, lying frames, every kind
 * of token) over node:http2, and raw HTTP/2 connections. The host must not
 * crash, must keep answering a valid call, keep its plugins ready and keep
 * its memory bounded.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  GetSigningSeedRequestSchema,
  HostService,
  LookupNameRequestSchema,
  LookupX25519RequestSchema,
  SendDirectRequestSchema,
  SendRoutedRequestSchema,
  WatchPeersRequestSchema,
  connect,
} from "@plugwire/proto";
import { runInputs } from "../lib/engine.mjs";
import { nodeId, smallBytes, u32, u64 } from "../lib/gen.mjs";
import { SessionPool, lastHang } from "../lib/h2.mjs";
import { Watched, pidAlive } from "../lib/proc.mjs";
import { judgeUnanswered } from "../lib/sockets.mjs";
import { sleep } from "../lib/util.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const S = "/plugwire.v1.HostService/";

/** The in-flight seq of fz, known at send time only: `origin.seq: "inflight"` (±k) is resolved then. */
const originSeq = fc.oneof(
  { weight: 3, arbitrary: u64 },
  { weight: 3, arbitrary: fc.integer({ min: -3, max: 3 }).map((k) => ({ inflight: k })) },
);

export const HOST_METHODS = [
  { name: "LookupX25519", path: `${S}LookupX25519`, kind: "unary", schema: LookupX25519RequestSchema, init: fc.record({ nodeId }) },
  { name: "LookupName", path: `${S}LookupName`, kind: "unary", schema: LookupNameRequestSchema, init: fc.record({ nodeId }) },
  { name: "WatchPeers", path: `${S}WatchPeers`, kind: "server", schema: WatchPeersRequestSchema, init: fc.constant({}) },
  {
    name: "SendDirect",
    path: `${S}SendDirect`,
    kind: "unary",
    schema: SendDirectRequestSchema,
    init: fc.record({ send: fc.option(fc.record({ peer: nodeId, frame: smallBytes(200) }), { nil: undefined }) }),
  },
  {
    name: "SendRouted",
    path: `${S}SendRouted`,
    kind: "unary",
    schema: SendRoutedRequestSchema,
    init: fc.record({ dst: nodeId, frame: smallBytes(200), origin: fc.option(fc.record({ seq: originSeq, index: u32 }), { nil: undefined }) }),
    weight: 14,
  },
  { name: "GetSigningSeed", path: `${S}GetSigningSeed`, kind: "unary", schema: GetSigningSeedRequestSchema, init: fc.constant({}) },
];

export async function fuzzHostService({ seed, count, timeLimitMs, concurrency, only, log, filter }) {
  const work = mkdtempSync(join(tmpdir(), "pwfz-host-"));
  const tokenFile = join(work, "tokens.jsonl");
  writeFileSync(tokenFile, "");
  let ready;
  let hint = 0;
  const readyLine = new Promise((resolve) => (ready = resolve));
  const host = new Watched(
    process.execPath,
    [
      "--expose-gc",
      join(here, "..", "host-child.mjs"),
      JSON.stringify({ dataDir: join(work, "data"), runDirParent: work, logFile: join(work, "host.log"), tokenFile, holdMs: 20, dispatchEveryMs: 15, publishEveryMs: 40 }),
    ],
    {
      onLine: (o) => {
        if (o.type === "ready") ready(o);
        else if (o.type === "hint") hint = o.seq;
        else if (o.type === "status") statusWaiter?.(o);
      },
    },
  );
  let statusWaiter;
  const askStatus = () =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 5000);
      statusWaiter = (o) => {
        clearTimeout(timer);
        resolve(o);
      };
      host.send("status");
    });
  const failures = [];
  const result = { target: "host-service", failures };
  /** Fuzzer connections whose client side stalled (see onHang); reported, not failures. */
  const clientStalls = [];
  result.clientStalls = clientStalls;
  try {
    const info = await Promise.race([readyLine, host.exited.then((e) => Promise.reject(new Error(`host exited before ready: ${JSON.stringify(e)}\n${host.stderrTail}`)))]);
    const socketPath = join(info.runDir, "host.sock");
    const tokens = info.tokens;
    if (!tokens.valid || !tokens.other) throw new Error(`could not learn the plugins' tokens: ${JSON.stringify(tokens)}`);
    log(`host pid ${info.pid}, socket ${socketPath}, plugin pids ${info.pluginPids.join(", ")}${tokens.old ? ", old token known" : ""}`);
    const sessions = new SessionPool(socketPath, 4);
    const recent = [];
    const endpoint = async () => ({ socketPath, sessions, tokens, recent });
    const resolve = (init) => {
      if (init?.origin?.seq && typeof init.origin.seq === "object") {
        const seq = Math.max(0, hint + init.origin.seq.inflight);
        return { ...init, origin: { ...init.origin, seq: BigInt(seq) } };
      }
      return init;
    };

    // A valid call that must keep working, and an unauthenticated one that must keep failing cleanly.
    const client = connect(HostService, `unix://${socketPath}`, { token: tokens.valid });
    const liveness = async () => {
      try {
        const seed = await client.client.getSigningSeed({}, { deadlineMs: 10_000 });
        if (seed.seed.length !== 32) return `GetSigningSeed answered ${seed.seed.length} bytes`;
      } catch (e) {
        return `a valid GetSigningSeed failed: ${e.message}`;
      }
      return undefined;
    };
    let nextLiveness = 0;
    const checkEvery = Math.max(500, Math.floor(count / 40));
    const livenessTimes = [];
    const run = await runInputs({
      seed,
      count,
      timeLimitMs,
      concurrency,
      only,
      methods: HOST_METHODS,
      progress: (n, ms) => log(`${n} inputs, ${(ms / 1000).toFixed(0)} s`),
      rawShare: 0.2,
      fallbackSchema: WatchPeersRequestSchema,
      endpoint: async (index) => {
        if (index >= nextLiveness && only === undefined) {
          nextLiveness = index + checkEvery;
          const t = performance.now();
          const problem = await liveness();
          livenessTimes.push(performance.now() - t);
          if (problem) failures.push({ kind: "liveness", index, detail: problem });
        }
        return endpoint();
      },
      resolve,
      filter,
      failed: () => !host.alive || failures.length > 0,
      onHang: async (index) => {
        const { session, detail } = lastHang;
        const judged = await judgeUnanswered(session, { server: "the host", processes: { host: info.pid, fuzzer: process.pid } });
        if (judged.stall) {
          // The fuzzer's own node:http2 session stopped reading (fuzz/lib/sockets.mjs); the host had
          // read everything and answered. Drop the connection and dial again, as a plugin's client
          // does; the host must go on serving, which a valid call on its own connection checks now.
          clientStalls.push(`#${index}: ${judged.detail}`);
          session?.destroy();
          const problem = await liveness();
          if (problem) failures.push({ kind: "liveness", index, detail: `after a fuzzer client stall: ${problem}` });
          return;
        }
        failures.push({ kind: "hang", index, detail: `a complete unary call got no answer in 10 s (${detail}); ${judged.detail}` });
      },
    });
    sessions.close();
    await sleep(200);
    Object.assign(result, run);
    result.livenessMaxMs = Math.round(Math.max(0, ...livenessTimes));
    if (!host.alive) {
      failures.push({ kind: "crash", detail: `host exited ${JSON.stringify(host.exit)} during the run`, recent: recent.slice(-16), stderr: host.stderrTail });
    } else {
      const problem = await liveness();
      if (problem) failures.push({ kind: "liveness", detail: `after the run: ${problem}` });
      const status = await askStatus();
      host.sample();
      result.status = status;
      if (!status) failures.push({ kind: "hang", detail: "the host did not answer a status request in 5 s" });
      else {
        const notReady = status.plugins.filter((p) => p.state !== "ready");
        if (notReady.length) failures.push({ kind: "plugins", detail: `plugins not ready after the run: ${JSON.stringify(notReady)}` });
        result.eventLoopDelayMaxMs = status.eventLoopDelayMaxMs;
        result.dispatches = `${status.dispatchedOk} ok, ${status.dispatchErrors} failed`;
        if (status.dispatchErrors > 0) failures.push({ kind: "delivery", detail: `${status.dispatchErrors} of the host's own dispatches failed during the run` });
      }
    }
    client.close();
  } catch (e) {
    failures.push({ kind: "setup", detail: e.stack ?? String(e), stderr: host.stderrTail });
  } finally {
    host.sample();
    result.peakRssKb = host.hwmKb;
    result.rssSamplesKb = host.samples;
    const pids = result.status?.plugins?.map((p) => p.pid).filter(Boolean) ?? [];
    const exit = await host.close(20_000);
    if (exit.signal === "SIGKILL") failures.push({ kind: "stop", detail: "the host did not stop within 20 s of stdin closing" });
    else if (exit.code !== 0) failures.push({ kind: "crash", detail: `host exited ${JSON.stringify(exit)} on stop`, stderr: host.stderrTail });
    await sleep(100);
    const left = pids.filter(pidAlive);
    if (left.length) {
      failures.push({ kind: "leftover", detail: `plugin processes left behind: ${left.join(", ")}` });
      for (const pid of left) process.kill(pid, "SIGKILL");
    }
    result.logFile = join(work, "host.log");
    if (failures.length === 0) rmSync(work, { recursive: true, force: true });
    else result.workDir = work;
  }
  return result;
}
