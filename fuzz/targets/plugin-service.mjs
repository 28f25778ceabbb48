/**
 * Target 2: the SDK's PluginService as a plugin serves it. Real example
 * plugins (echo, counter) are spawned with the environment a host gives
 * them; the fuzzer connects to their sockets and sends gRPC calls (valid and
 * invalid protobuf, every kind of token) and raw HTTP/2. A plugin may answer
 * with an error or exit cleanly after an authenticated Shutdown; any other
 * exit is a crash. Exited plugins are relaunched and the run goes on.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import {
  DescribeRequestSchema,
  DeliverRequestSchema,
  ENV,
  MAGIC_COOKIE_VALUE,
  PluginService,
  TOKEN_LINE_PREFIX,
  RestoreRequestSchema,
  ShutdownRequestSchema,
  SnapshotRequestSchema,
  StartRequestSchema,
  connect,
  health,
} from "@plugwire/proto";
import { runInputs } from "../lib/engine.mjs";
import { auth, i32, nodeId, smallBytes, text, u32, u64 } from "../lib/gen.mjs";
import { SessionPool, closeRawConnections, lastHang } from "../lib/h2.mjs";
import { Watched } from "../lib/proc.mjs";
import { judgeUnanswered } from "../lib/sockets.mjs";
import { SessionGate, sleep } from "../lib/util.mjs";

const here = dirname(fileURLToPath(import.meta.url));
/** Where echo.js and counter.js are; FUZZ_PLUGIN_DIR points at other builds (e.g. with an open bug patched out, to look past it). */
const examples = process.env.FUZZ_PLUGIN_DIR ?? join(here, "..", "..", "plugins-example", "dist");
const P = "/plugwire.v1.PluginService/";
const H = "/grpc.health.v1.Health/";
const utf8 = new TextEncoder();

const kind = fc.oneof({ weight: 3, arbitrary: fc.constantFrom("echo.ping", "counter.hit") }, { weight: 1, arbitrary: text });
const seq = fc.oneof({ weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 5000n }) }, { weight: 1, arbitrary: u64 });
const item = fc.record({
  seq,
  redelivered: fc.boolean(),
  item: fc.oneof(
    { weight: 6, arbitrary: fc.record({ case: fc.constant("payload"), value: fc.record({ src: nodeId, kind, body: smallBytes(256) }) }) },
    { weight: 2, arbitrary: fc.record({ case: fc.constant("peerForgotten"), value: fc.record({ nodeId }) }) },
    { weight: 1, arbitrary: fc.constant({ case: undefined }) },
  ),
});
/** Items with increasing seqs from a base, the way a host sends them. */
const orderedItems = fc
  .tuple(fc.bigInt({ min: 1n, max: 5000n }), fc.array(item, { minLength: 1, maxLength: 40 }))
  .map(([base, items]) => items.map((it, i) => ({ ...it, seq: base + BigInt(i) })));

const configJson = fc.oneof(
  { weight: 4, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 2, arbitrary: text },
  { weight: 1, arbitrary: fc.constantFrom("{}", "", "null", "[]", "1e999", '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"x":1}}}', "{".repeat(10)) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 200_000 }).map((n) => "[".repeat(n) + "]".repeat(n)) },
);

const counts = fc.dictionary(fc.stringMatching(/^[0-9a-f]{0,64}$/), fc.oneof(fc.nat(), fc.double(), fc.constant(-1)), { maxKeys: 8 });
/** A Restore stream that holds together: header with the right size, then the bytes in chunks. */
const coherentRestore = fc
  .record({
    id: fc.oneof({ weight: 4, arbitrary: fc.constant("example.counter") }, { weight: 1, arbitrary: text }),
    version: fc.oneof({ weight: 4, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: u32 }),
    appliedSeq: fc.oneof(fc.bigInt({ min: 0n, max: 5000n }), u64),
    body: fc.oneof(counts.map((c) => utf8.encode(JSON.stringify(c))), fc.uint8Array({ maxLength: 300 })),
    sizeDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0n) }, { weight: 1, arbitrary: fc.bigInt({ min: -3n, max: 3n }) }),
    chunk: fc.integer({ min: 1, max: 64 }),
    extraHeader: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  })
  .map((r) => {
    const header = { part: { case: "header", value: { id: r.id, version: r.version, appliedSeq: r.appliedSeq, sizeBytes: BigInt(r.body.length) + r.sizeDelta < 0n ? 0n : BigInt(r.body.length) + r.sizeDelta } } };
    const chunks = [];
    for (let i = 0; i < r.body.length; i += r.chunk) chunks.push({ part: { case: "chunk", value: r.body.subarray(i, i + r.chunk) } });
    return r.extraHeader ? [header, ...chunks, header] : [header, ...chunks];
  });

/** Shutdown ends the process: it carries a valid token rarely, so the plugins are not relaunched all the time. */
const shutdownAuth = fc.oneof({ weight: 1, arbitrary: fc.constant("valid") }, { weight: 12, arbitrary: auth.filter((a) => a !== "valid") });

export const PLUGIN_METHODS = [
  { name: "Describe", path: `${P}Describe`, kind: "unary", schema: DescribeRequestSchema, init: fc.record({ protocolVersion: u32 }) },
  {
    name: "Start",
    path: `${P}Start`,
    kind: "unary",
    schema: StartRequestSchema,
    init: fc.record({ dataDir: text, instanceId: text, configJson, capabilities: fc.array(i32, { maxLength: 6 }) }),
  },
  {
    name: "Deliver",
    path: `${P}Deliver`,
    kind: "bidi",
    schema: DeliverRequestSchema,
    init: fc.record({ items: fc.array(item, { maxLength: 16 }) }),
    sequence: fc.array(orderedItems.map((items) => ({ items })), { minLength: 1, maxLength: 5 }),
    weight: 16,
  },
  { name: "Snapshot", path: `${P}Snapshot`, kind: "server", schema: SnapshotRequestSchema, init: fc.constant({}), weight: 8 },
  {
    name: "Restore",
    path: `${P}Restore`,
    kind: "client",
    schema: RestoreRequestSchema,
    init: fc.record({
      part: fc.oneof(
        fc.record({
          case: fc.constant("header"),
          value: fc.record({ id: fc.oneof(fc.constant("example.counter"), text), version: fc.oneof(fc.constant(1), u32), appliedSeq: u64, sizeBytes: fc.oneof(fc.bigInt({ min: 0n, max: 300n }), u64) }),
        }),
        fc.record({ case: fc.constant("chunk"), value: smallBytes(200) }),
        fc.constant({ part: { case: undefined } }).map(() => ({ case: undefined })),
      ),
    }),
    sequence: coherentRestore,
    weight: 12,
  },
  { name: "Shutdown", path: `${P}Shutdown`, kind: "unary", schema: ShutdownRequestSchema, init: fc.record({ deadlineMs: fc.oneof(fc.nat(50), u32) }), auth: shutdownAuth, weight: 2 },
  { name: "Health.Check", path: `${H}Check`, kind: "unary", schema: health.HealthCheckRequestSchema, init: fc.record({ service: text }), weight: 6 },
  { name: "Health.Watch", path: `${H}Watch`, kind: "server", schema: health.HealthCheckRequestSchema, init: fc.record({ service: text }), weight: 3 },
];

const PLUGINS = ["echo", "counter", "echo"];

/** Sockets a plugin may still hold once the fuzzer closed every connection (its listener, a host-client dial). */
const MAX_SOCKETS_AFTER = 8;

/** Unix/TCP socket fds of a process (/proc/<pid>/fd); 0 once it is gone. */
function socketFds(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:");
      } catch {
        return false;
      }
    }).length;
  } catch {
    return 0;
  }
}

/** One plugin process slot: launched, watched, relaunched after an exit. */
class Slot {
  constructor(index, work, failures, log) {
    this.index = index;
    this.example = PLUGINS[index % PLUGINS.length];
    this.dir = join(work, `s${index}`);
    mkdirSync(this.dir, { mode: 0o700 });
    this.failures = failures;
    this.log = log;
    this.launches = 0;
    this.cleanExits = 0;
    this.peakRssKb = 0;
    this.recent = [];
    this.tokens = { valid: undefined, other: undefined, old: undefined };
    this.shutdownSent = false;
    this.ready = undefined;
  }

  launch() {
    this.launches++;
    const token = randomBytes(32).toString("base64url");
    if (this.tokens.valid) this.tokens.old = this.tokens.valid;
    this.tokens.valid = token;
    this.shutdownSent = false;
    const instanceId = `${this.example}-${this.index}-${this.launches}`;
    const env = {
      PATH: process.env.PATH,
      [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
      [ENV.protocolVersions]: "1",
      [ENV.socketDir]: this.dir,
      // The token goes on stdin, as a host passes it (docs/protocol.md §6).
      [ENV.authTokenSource]: "stdin",
      [ENV.instanceId]: instanceId,
      [ENV.hostAddress]: `unix://${join(this.dir, "host.sock")}`,
      [ENV.pluginName]: this.example,
    };
    let onHandshake;
    const handshake = new Promise((resolve) => (onHandshake = resolve));
    const proc = new Watched(process.execPath, [join(examples, `${this.example}.js`)], {
      env,
      onLine: (line) => {
        if (typeof line === "string" && line.startsWith("PLUGWIRE_HANDSHAKE ")) onHandshake(/address=(\S+)/.exec(line)?.[1]);
      },
    });
    proc.child.stdin.write(`${TOKEN_LINE_PREFIX} ${token}\n`);
    this.proc = proc;
    this.ready = (async () => {
      const address = await Promise.race([handshake, proc.exited.then(() => undefined), sleep(10_000).then(() => undefined)]);
      if (!address) throw new Error(`plugin ${this.example} (slot ${this.index}) gave no handshake: ${JSON.stringify(proc.exit)} ${proc.stderrTail}`);
      this.socketPath = address;
      this.sessions?.close();
      // One session: a plugin serves one connection, its host's (docs/protocol.md §6); a second one's calls are refused.
      this.sessions = new SessionPool(address, 1);
      this.gate = new SessionGate();
      // As a host would: Describe and Start, with the control capability.
      const conn = connect(PluginService, `unix://${address}`, { token });
      try {
        await conn.client.describe({ protocolVersion: 1 }, { deadlineMs: 10_000 });
        await conn.client.start({ dataDir: this.dir, instanceId, configJson: "{}", capabilities: [2] }, { deadlineMs: 10_000 });
      } finally {
        conn.close();
      }
      return this;
    })();
    this.ready.catch(() => undefined);
    void proc.exited.then((exit) => this.exited(proc, exit));
  }

  exited(proc, exit) {
    this.peakRssKb = Math.max(this.peakRssKb, proc.hwmKb);
    if (proc.expectedExit) return;
    if (exit.code === 0 && !exit.signal && this.shutdownSent) {
      this.cleanExits++;
    } else {
      this.failures.push({
        kind: exit.code === 0 ? "unexpected-exit" : "crash",
        detail: `plugin ${this.example} (slot ${this.index}, pid ${proc.pid}) exited ${JSON.stringify({ code: exit.code, signal: exit.signal })}${exit.code === 0 ? " without an authenticated Shutdown" : ""}`,
        recent: this.recent.slice(-16),
        stderr: proc.stderrTail,
      });
    }
    if (!this.closing) this.launch();
  }

  async close() {
    this.closing = true;
    this.sessions?.close();
    const proc = this.proc;
    proc.sample();
    this.peakRssKb = Math.max(this.peakRssKb, proc.hwmKb);
    if (!proc.alive) return;
    const exit = await proc.close(5000);
    if (exit.signal === "SIGKILL") this.failures.push({ kind: "stop", detail: `plugin ${this.example} (slot ${this.index}) did not exit within 5 s of stdin closing` });
    else if (exit.code !== 0) this.failures.push({ kind: "crash", detail: `plugin ${this.example} (slot ${this.index}) exited ${JSON.stringify(exit)} when stdin closed`, stderr: proc.stderrTail });
  }
}

/** True when the input may make the plugin shut down: a Shutdown call (gRPC or raw) carrying the valid token. */
function mayShutDown(input, shutdownIndex) {
  if (input.type === "grpc") return input.method === shutdownIndex && input.auth === "valid";
  return input.frames.some(({ frame: f }) => (f.t === "headers" || f.t === "continuation" || f.t === "push") && f.block.kind === "grpc" && f.block.method === shutdownIndex && f.block.auth === "valid");
}

export async function fuzzPluginService({ seed, count, timeLimitMs, concurrency, only, log }) {
  const work = mkdtempSync(join(tmpdir(), "pwfz-sdk-"));
  const failures = [];
  const result = { target: "plugin-service", failures };
  const slots = PLUGINS.map((_, i) => new Slot(i, work, failures, log));
  const shutdownIndex = PLUGIN_METHODS.findIndex((m) => m.name === "Shutdown");
  /** Fuzzer connections whose client side stalled (see onHang); reported, not failures. */
  const clientStalls = [];
  result.clientStalls = clientStalls;
  try {
    for (const s of slots) s.launch();
    await Promise.all(slots.map((s) => s.ready));
    log(`plugins: ${slots.map((s) => `${s.example} pid ${s.proc.pid}`).join(", ")}`);
    const { InputSource } = await import("../lib/util.mjs");
    const { targetInput } = await import("../lib/gen.mjs");
    const inputs = new InputSource(targetInput(PLUGIN_METHODS, 0.2), seed);
    const run = await runInputs({
      seed,
      count,
      timeLimitMs,
      concurrency,
      only,
      methods: PLUGIN_METHODS,
      progress: (n, ms) => log(`${n} inputs, ${(ms / 1000).toFixed(0)} s`),
      rawShare: 0.2,
      fallbackSchema: SnapshotRequestSchema,
      endpoint: async (index) => {
        const slot = slots[index % slots.length];
        let ready;
        for (let tries = 0; ; tries++) {
          try {
            ready = await slot.ready;
            break;
          } catch (e) {
            // A relaunch that failed is a failure of its own; try the next launch.
            if (tries > 3) throw e;
            await sleep(200);
          }
        }
        if (mayShutDown(inputs.get(index), shutdownIndex)) slot.shutdownSent = true;
        const other = slots[(index + 1) % slots.length].tokens.valid;
        return { socketPath: ready.socketPath, sessions: ready.sessions, gate: ready.gate, tokens: { ...slot.tokens, other }, recent: slot.recent };
      },
      resolve: (init) => init,
      // A crashed plugin is relaunched and the run goes on (the crashes are counted), up to 50 of them.
      failed: () => failures.filter((f) => f.kind === "crash" || f.kind === "unexpected-exit").length > 50 || failures.some((f) => !["crash", "unexpected-exit"].includes(f.kind)),
      onHang: async (index) => {
        const slot = slots[index % slots.length];
        const { session, detail } = lastHang;
        const judged = await judgeUnanswered(session, { server: `plugin ${slot.example}`, processes: { [`plugin ${slot.example}`]: slot.proc?.pid, fuzzer: process.pid } });
        if (judged.stall) {
          // The fuzzer's own node:http2 session stopped reading (fuzz/lib/sockets.mjs): a stall of the
          // client, not of the plugin. Do what a host does with a connection that stopped answering:
          // drop it and dial again. The plugin must serve the new connection (the next inputs, and
          // the liveness check at the end).
          clientStalls.push(`#${index}: ${judged.detail}`);
          session?.destroy();
          return;
        }
        failures.push({ kind: "hang", index, detail: `a complete unary call got no answer in 10 s (${detail}); ${judged.detail}` });
      },
    });
    Object.assign(result, run);
    // Every plugin still answers a valid health check. A plugin serves one
    // connection, its host's (docs/protocol.md §6), and any connection of the
    // fuzzer that made a call with the valid token may be it: every one is
    // closed first (sessions of every pool, replaced ones still draining
    // included, and raw connections), so the check's own connection is the
    // only one left.
    closeRawConnections();
    for (const s of slots) s.sessions?.close();
    for (const s of slots) {
      try {
        // Until the plugin has seen those connections close, a call on another one is refused
        // (UNAUTHENTICATED; a dead one is dropped after a 2 s ping, docs/protocol.md §6.3), and a
        // Shutdown sent near the end may end the plugin during the check (it is relaunched):
        // retry, each time on a new connection to the current launch, for up to 10 s.
        for (let tries = 0; ; tries++) {
          const proc = s.proc;
          const ready = await s.ready;
          ready.sessions?.close();
          const conn = connect(health.Health, `unix://${ready.socketPath}`, { token: s.tokens.valid });
          try {
            await conn.client.check({}, { deadlineMs: 10_000 });
            break;
          } catch (e) {
            // A launch sent an authenticated Shutdown removes its socket, then exits within 0.5 s.
            const ending = s.proc !== proc || !proc.alive || s.shutdownSent;
            if (tries >= 100 || !(e?.code === "unauthenticated" || ending)) throw e;
          } finally {
            conn.close();
          }
          await sleep(100);
        }
      } catch (e) {
        failures.push({ kind: "liveness", detail: `plugin ${s.example} (slot ${s.index}) failed a valid health check after the run: ${e.message}` });
      }
    }
    // Every fuzzer connection is closed now: the plugins must let go of theirs too, the ones
    // node:http2 sent GOAWAY(PROTOCOL_ERROR) on and stopped reading included (the SDK drops a
    // connection that is not the host's after 5 s idle). Before that fix ~130 stayed per plugin.
    const counts = [];
    for (const s of slots) {
      let n = socketFds(s.proc.pid);
      for (let tries = 0; n > MAX_SOCKETS_AFTER && tries < 200 && s.proc.alive; tries++) {
        await sleep(100);
        n = socketFds(s.proc.pid);
      }
      counts.push(`${s.example} ${n}`);
      if (n > MAX_SOCKETS_AFTER) failures.push({ kind: "leak", detail: `plugin ${s.example} (slot ${s.index}) still holds ${n} sockets 20 s after the fuzzer closed all its connections (at most ${MAX_SOCKETS_AFTER})` });
    }
    result.pluginSocketsAfter = counts.join(", ");
  } catch (e) {
    failures.push({ kind: "setup", detail: e.stack ?? String(e) });
  } finally {
    await Promise.all(slots.map((s) => s.close()));
    result.peakRssKb = Math.max(...slots.map((s) => s.peakRssKb));
    result.launches = slots.reduce((n, s) => n + s.launches, 0);
    result.cleanExits = slots.reduce((n, s) => n + s.cleanExits, 0);
    if (failures.length === 0) rmSync(work, { recursive: true, force: true });
    else result.workDir = work;
  }
  return result;
}
