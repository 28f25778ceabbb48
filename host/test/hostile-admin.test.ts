/**
 * Hostile-input battery, admin API family (issue 12, items 0.3 and part 3).
 *
 * The host under test is `plugwire run` in a process of its own (through the
 * committed bin shim), with a config in a temp dir: the echo example and the
 * hostile-admin-snoop fixture. Its memory is read from /proc/<pid>/status
 * (VmHWM, reset through /proc/<pid>/clear_refs before a case). After every
 * case the host must still answer with its token, echo must still ack a
 * payload, and no plugin may have been stopped or restarted.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { createGzip } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { PlugwireError } from "@plugwire/proto";
import { adminClient, type AdminClient } from "../src/admin/client.js";
import { fromConnectError } from "../src/admin/errors.js";
import { alive, assertGone, example, fixture } from "./helpers.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");
const SNOOP = fixture("hostile-admin-snoop");
const SRC = "01".repeat(32);
const MIB = 1024 * 1024;
const TEST_TIMEOUT_MS = 90_000;
/** Peak RSS growth a refused request may cause; an inflated bomb or a buffered body would be hundreds of MiB. */
const RSS_BOUND = 100 * MIB;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion. */
function plugwire(args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const env = { ...process.env, ...options.env };
    if (options.env && "PLUGWIRE_ADMIN_TOKEN" in options.env && options.env.PLUGWIRE_ADMIN_TOKEN === undefined) delete env.PLUGWIRE_ADMIN_TOKEN;
    execFile(process.execPath, [BIN, ...args], { cwd: options.cwd ?? repo, timeout: 30_000, env }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

/** A config with the echo example and the snoop fixture, data dir `dir/data`; returns its path. */
function writeConfig(dir: string): string {
  const path = join(dir, "plugwire.yaml");
  writeFileSync(
    path,
    [
      `dataDir: ${join(dir, "data")}`,
      "snapshotIntervalMs: 0",
      "plugins:",
      "  - name: echo",
      `    command: ${process.execPath}`,
      `    args: [${example("echo")}]`,
      "    capabilities: [control]",
      "  - name: snoop",
      `    command: ${process.execPath}`,
      `    args: [${SNOOP}]`,
      "    capabilities: [control]",
      "",
    ].join("\n"),
  );
  return path;
}

interface RunningHost {
  child: ChildProcess;
  config: string;
  dataDir: string;
  socket: string;
  port: number | undefined;
  token: string;
  /** Plugin pids once ready. */
  pids: Map<string, number>;
}

/** Resolves with the first JSON log line whose msg is `msg`; rejects on exit or after the timeout. */
function logLine(child: ChildProcess, msg: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const done = (): void => {
      clearTimeout(timer);
      lines.close();
      child.off("exit", onExit);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no '${msg}' log line within ${timeoutMs} ms`));
    }, timeoutMs);
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`plugwire run exited (${code}) before logging '${msg}'`));
    };
    lines.on("line", (line) => {
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg !== msg) return;
        done();
        resolve(record);
      } catch {
        // not a log line
      }
    });
    child.once("exit", onExit);
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/** Starts `plugwire run` with `args`; resolves once its admin API listens and every plugin is ready. */
async function startHost(dir: string, args: string[] = [], tls?: { ca: Buffer; cert: Buffer; key: Buffer }): Promise<RunningHost> {
  const config = existsSync(join(dir, "plugwire.yaml")) ? join(dir, "plugwire.yaml") : writeConfig(dir);
  // A token in the host's own environment must not reach a plugin either.
  const env = { ...process.env, PLUGWIRE_ADMIN_TOKEN: "token-in-the-host-environment" };
  const child = spawn(process.execPath, [BIN, "run", "--config", config, ...args], { cwd: repo, env, stdio: ["ignore", "pipe", "inherit"] });
  try {
    const listening = await logLine(child, "admin API listening; try 'plugwire status'");
    const dataDir = join(dir, "data");
    const token = readFileSync(join(dataDir, "admin.token"), "utf8").trim();
    const port = typeof listening.adminPort === "number" ? listening.adminPort : undefined;
    const running: RunningHost = { child, config, dataDir, socket: String(listening.admin), port, token, pids: new Map() };
    const client = tls && port !== undefined ? adminClient(`https://127.0.0.1:${port}`, { token, tls }) : adminClient(running.socket, { token });
    const { plugins } = await client.listPlugins({});
    for (const p of plugins) {
      assert.equal(p.state, "ready", `${p.name} is ready`);
      running.pids.set(p.name, p.pid);
    }
    return running;
  } catch (e) {
    await killHost(child);
    throw e;
  }
}

async function killHost(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await exited(child);
  }
}

/** SIGTERM, a clean exit, and no plugin left. */
async function stopHost(h: RunningHost): Promise<void> {
  try {
    h.child.kill("SIGTERM");
    assert.equal(await exited(h.child), 0);
    assertGone(h.pids.values());
    assert.equal(existsSync(dirname(h.socket)), false, "the admin socket's private dir is removed");
  } finally {
    await killHost(h.child);
    for (const pid of h.pids.values()) if (alive(pid)) process.kill(pid, "SIGKILL");
  }
}

/** The host still serves: its token works, echo acks a payload, and no plugin was stopped or restarted. */
async function assertServes(h: RunningHost, client: AdminClient = adminClient(h.socket, { token: h.token })): Promise<void> {
  assert.equal(h.child.exitCode, null, "the host process is still running");
  const reply = await client.dispatch({ plugin: "echo", src: Buffer.from(SRC, "hex"), body: new TextEncoder().encode("still-there") });
  assert.equal(reply.plugin, "echo");
  assert.equal(reply.effects.length, 1);
  const effect = reply.effects[0]!.effect;
  assert.equal(effect.case, "sendDirect");
  assert.equal(Buffer.from(effect.value!.frame).toString(), "pong:still-there");
  const { plugins } = await client.listPlugins({});
  assert.deepEqual(
    plugins.map((p) => [p.name, p.state, p.pid, p.restarts]),
    [...h.pids].map(([name, pid]) => [name, "ready", pid, 0]),
  );
}

interface RawReply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

type Target = { socketPath: string } | { port: number };

/** One raw HTTP request to the admin API; `body` may be a Buffer or an async source of chunks (sent chunked). */
function raw(
  target: Target,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | (() => AsyncIterable<Buffer>); method?: string } = {},
): Promise<RawReply & { sent: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const req = httpRequest(
      {
        ...("socketPath" in target ? { socketPath: target.socketPath } : { host: "127.0.0.1", port: target.port }),
        path,
        method: options.method ?? "POST",
        headers: { "content-type": "application/json", ...options.headers },
        timeout: 60_000,
        agent: false,
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c.length + body.length > 1_000_000 ? "" : c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, sent }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("no answer within 60 s")));
    let answered = false;
    req.on("response", () => (answered = true));
    // A write still queued when the host closes the connection fails on the socket itself, after the request let go of it.
    req.on("socket", (socket) => socket.on("error", () => undefined));
    req.on("error", (e) => {
      const code = (e as NodeJS.ErrnoException).code;
      // The host closed the connection while the body was still being sent: an answer, if any, is on its way.
      if (answered && (code === "EPIPE" || code === "ECONNRESET")) return;
      // No answer: status -1 and the socket error.
      if (code === "EPIPE" || code === "ECONNRESET") resolve({ status: -1, headers: {}, body: code, sent });
      else reject(e);
    });
    const body = options.body;
    if (body === undefined || Buffer.isBuffer(body)) {
      if (body) sent = body.byteLength;
      req.end(body);
      return;
    }
    void (async () => {
      for await (const chunk of body()) {
        if (answered || req.destroyed || req.writableEnded || req.socket?.destroyed) break;
        sent += chunk.byteLength;
        if (!req.write(chunk)) {
          await new Promise<void>((done) => {
            const finish = (): void => {
              req.off("drain", finish);
              req.off("close", finish);
              done();
            };
            req.on("drain", finish);
            req.on("close", finish);
          });
        }
      }
      if (!req.destroyed && !req.writableEnded) req.end();
    })();
  });
}

const method = (name: string): string => `/plugwire.admin.v1.AdminService/${name}`;
const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** The Connect error of a reply: its code and message, and the plugwire code header. */
function connectError(reply: RawReply): { code: string; message: string; plugwire: string | undefined } {
  const json = JSON.parse(reply.body) as { code: string; message: string };
  return { code: json.code, message: json.message, plugwire: reply.headers["plugwire-error-code"] as string | undefined };
}

/** Peak RSS of a process since the last reset, in bytes. */
function peakRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status);
  assert.ok(kb, "VmHWM in /proc/PID/status");
  return Number(kb[1]) * 1024;
}

/** Resets the peak RSS to the current RSS; returns that baseline. */
function resetPeak(pid: number): number {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
  return peakRss(pid);
}

/** 1 GiB of zeros, gzipped (about 1 MiB), made without holding the GiB. */
async function gzipBomb(inflated = 1024 * MIB): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gzip.on("data", (c: Buffer) => out.push(c));
  const zeros = Buffer.alloc(MIB);
  for (let written = 0; written < inflated; written += zeros.byteLength) {
    if (!gzip.write(zeros)) await new Promise((r) => gzip.once("drain", r));
  }
  await new Promise<void>((resolve, reject) => {
    gzip.once("end", resolve);
    gzip.once("error", reject);
    gzip.end();
  });
  return Buffer.concat(out);
}

describe("hostile admin API: one plugwire run host", () => {
  let dir: string;
  let h: RunningHost;
  let client: AdminClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "pwt-hadm-"));
    h = await startHost(dir, ["--admin-port", "0"]);
    client = adminClient(h.socket, { token: h.token });
  });

  after(async () => {
    try {
      if (h) await stopHost(h);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("H-ADMIN-01: StopPlugin and ListPlugins on the unix socket with no token -> unauthenticated naming the token file, nothing stopped", { timeout: TEST_TIMEOUT_MS }, async () => {
    for (const name of ["StopPlugin", "ListPlugins", "Dispatch"]) {
      const reply = await raw({ socketPath: h.socket }, method(name), { body: Buffer.from(JSON.stringify({ name: "echo" })) });
      assert.equal(reply.status, 401);
      assert.deepEqual(connectError(reply), {
        code: "unauthenticated",
        plugwire: "unauthenticated",
        message:
          `the admin API needs its token: send 'authorization: Bearer <token>'. It is in ${join(h.dataDir, "admin.token")} (readable by its owner only): ` +
          "plugwire commands read it from the data dir of the config they are given (-c FILE), or pass --admin-token-file FILE or set PLUGWIRE_ADMIN_TOKEN.",
      });
    }
    // The typed client without a token gets the typed error.
    const err = await adminClient(h.socket).stopPlugin({ name: "echo" }).then(
      () => assert.fail("a tokenless StopPlugin succeeded"),
      (e: unknown) => e,
    );
    const typed = fromConnectError(err as never);
    assert.ok(typed instanceof PlugwireError);
    assert.equal(typed.code, "unauthenticated");
    await assertServes(h, client);
  });

  test("H-ADMIN-02: requests on the TCP port with no token (raw and plugwire status --admin URL) -> unauthenticated, nothing stopped", { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.ok(h.port !== undefined);
    const reply = await raw({ port: h.port }, method("StopPlugin"), { body: Buffer.from('{"name":"echo"}') });
    assert.equal(reply.status, 401);
    assert.equal(connectError(reply).code, "unauthenticated");
    assert.match(connectError(reply).message, /^the admin API needs its token: send 'authorization: Bearer <token>'\. It is in /);
    // Without a config or a token the CLI cannot find one, and says where to look.
    const cwd = mkdtempSync(join(tmpdir(), "pwt-hadm-cwd-"));
    try {
      const status = await plugwire(["stop", "echo", "--admin", `http://127.0.0.1:${h.port}`], { cwd, env: { PLUGWIRE_ADMIN_TOKEN: undefined } });
      assert.equal(status.code, 1);
      assert.match(status.stderr, /^plugwire: the admin API needs its token: send 'authorization: Bearer <token>'\. It is in .*admin\.token .*--admin-token-file FILE or set PLUGWIRE_ADMIN_TOKEN\.\n$/);
      // The same command with the config finds the token in its data dir.
      const ok = await plugwire(["status", "--json", "--admin", `http://127.0.0.1:${h.port}`, "-c", h.config], { cwd, env: { PLUGWIRE_ADMIN_TOKEN: undefined } });
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual((JSON.parse(ok.stdout) as Array<{ name: string }>).map((p) => p.name), ["echo", "snoop"]);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
    await assertServes(h, client);
  });

  test("H-ADMIN-03: a wrong token (same length, other length, other scheme) on socket and TCP -> unauthenticated, nothing stopped", { timeout: TEST_TIMEOUT_MS }, async () => {
    const sameLength = h.token.slice(0, -1) + (h.token.endsWith("A") ? "B" : "A");
    const wrong = [`Bearer ${sameLength}`, `Bearer ${h.token}x`, `Basic ${Buffer.from(`x:${h.token}`).toString("base64")}`, `Bearer`, `${h.token}`];
    for (const target of [{ socketPath: h.socket }, { port: h.port! }]) {
      for (const authorization of wrong) {
        const reply = await raw(target, method("StopPlugin"), { headers: { authorization }, body: Buffer.from('{"name":"echo"}') });
        assert.equal(reply.status, 401, authorization);
        const err = connectError(reply);
        assert.equal(err.code, "unauthenticated");
        assert.match(err.message, /^the admin API refused the token given: send 'authorization: Bearer <token>'\. It is in /);
      }
    }
    // A wrong PLUGWIRE_ADMIN_TOKEN is refused; --admin-token-file beats it.
    const bad = await plugwire(["stop", "echo", "-c", h.config], { env: { PLUGWIRE_ADMIN_TOKEN: sameLength } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^plugwire: the admin API refused the token given/);
    const good = await plugwire(["status", "-c", h.config, "--admin-token-file", join(h.dataDir, "admin.token")], { env: { PLUGWIRE_ADMIN_TOKEN: sameLength } });
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /^PLUGIN +STATE/);
    await assertServes(h, client);
  });

  test("H-ADMIN-04: a plugin searches its socket dir and env for the admin API, then posts StopPlugin to the real socket -> nothing found, refused", { timeout: TEST_TIMEOUT_MS }, async () => {
    const reply = await client.dispatch({ plugin: "snoop", src: Buffer.from(SRC, "hex"), body: Buffer.from(JSON.stringify({ adminSocket: h.socket })) });
    assert.equal(reply.effects.length, 1);
    const frame = Buffer.from(reply.effects[0]!.effect.value!.frame as Uint8Array).toString();
    assert.ok(frame.startsWith("snoop:"), frame);
    const report = JSON.parse(frame.slice("snoop:".length)) as {
      socketDir: string;
      entries: string[];
      adminInSocketDir: boolean;
      env: Record<string, string>;
      stop: { status: number; body: string };
    };
    assert.notEqual(report.socketDir, "");
    assert.notEqual(dirname(h.socket), report.socketDir, "the admin socket is not in the plugins' socket dir");
    assert.equal(report.adminInSocketDir, false, `socket dir holds ${report.entries.join(", ")}`);
    assert.ok(report.entries.every((e) => e.endsWith(".sock") && !e.startsWith("admin")), report.entries.join(", "));
    // Nothing in its environment names the admin socket, its dir, the token or the token file.
    const leaks = Object.entries(report.env).filter(
      ([key, value]) => /ADMIN/i.test(key) || [dirname(h.socket), h.token, join(h.dataDir, "admin")].some((secret) => value.includes(secret)),
    );
    assert.deepEqual(leaks, []);
    assert.equal(statSync(dirname(h.socket)).mode & 0o777, 0o700, "the admin socket's dir is private");
    // Even told where the socket is, a plugin without the token stops nobody.
    assert.equal(report.stop.status, 401);
    assert.equal((JSON.parse(report.stop.body) as { code: string }).code, "unauthenticated");
    await assertServes(h, client);
  });

  test("H-ADMIN-05: a gzip bomb (1 GiB of zeros, ~1 MiB on the wire) to ListPlugins and Dispatch -> resource_exhausted at the cap, host peak RSS bounded", { timeout: TEST_TIMEOUT_MS }, async () => {
    const bomb = await gzipBomb();
    assert.ok(bomb.byteLength < MIB, `the bomb is ${bomb.byteLength} bytes on the wire`);
    const pid = h.child.pid!;
    for (const [name, cap] of [
      ["ListPlugins", MIB],
      ["Dispatch", 16 * MIB],
    ] as const) {
      const base = resetPeak(pid);
      const reply = await raw({ socketPath: h.socket }, method(name), { headers: { ...bearer(h.token), "content-encoding": "gzip" }, body: bomb });
      const grew = peakRss(pid) - base;
      assert.equal(reply.status, 429, reply.body);
      assert.deepEqual(JSON.parse(reply.body), { code: "resource_exhausted", message: `message is larger than configured readMaxBytes ${cap} after decompression` });
      assert.ok(grew < RSS_BOUND, `${name}: host peak RSS grew by ${(grew / MIB).toFixed(1)} MiB`);
    }
    // Unauthenticated, the bomb is not even read: a 401 and the connection closed (the client may see only the close).
    const base = resetPeak(pid);
    const stranger = await raw({ socketPath: h.socket }, method("ListPlugins"), { headers: { "content-encoding": "gzip" }, body: bomb });
    assert.ok(stranger.status === 401 || (stranger.status === -1 && /EPIPE|ECONNRESET/.test(stranger.body)), `${stranger.status} ${stranger.body}`);
    assert.ok(peakRss(pid) - base < RSS_BOUND);
    await assertServes(h, client);
  });

  test("H-ADMIN-06: oversized bodies (2 MiB ListPlugins, 20 MiB Dispatch, 48 MiB and 256 MiB streamed with no length) -> payload_too_large, not buffered, the endless one cut off", { timeout: TEST_TIMEOUT_MS }, async () => {
    const pid = h.child.pid!;
    const declared = await raw({ socketPath: h.socket }, method("ListPlugins"), { headers: bearer(h.token), body: Buffer.alloc(2 * MIB, 0x20) });
    assert.equal(declared.status, 429);
    assert.deepEqual(connectError(declared), {
      code: "resource_exhausted",
      plugwire: "payload_too_large",
      message: `admin request ${method("ListPlugins")} has a ${2 * MIB}-byte body, over the 1 MiB limit; it was not used (raise the limit with --admin-max-body-bytes if you must)`,
    });
    const dispatch = await raw({ socketPath: h.socket }, method("Dispatch"), { headers: bearer(h.token), body: Buffer.alloc(20 * MIB, 0x20) });
    assert.equal(dispatch.status, 429);
    assert.deepEqual(connectError(dispatch), {
      code: "resource_exhausted",
      plugwire: "payload_too_large",
      message: `admin request ${method("Dispatch")} has a ${20 * MIB}-byte body, over the 16 MiB limit; it was not used (a payload must fit one Deliver message)`,
    });
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const stream = (total: number) =>
      async function* (): AsyncIterable<Buffer> {
        for (let sent = 0; sent < total; sent += chunk.byteLength) yield chunk;
      };
    // No content-length: the body is counted as it arrives, dropped past the cap, and refused at its end.
    let base = resetPeak(pid);
    const streamed = await raw({ socketPath: h.socket }, method("Dispatch"), { headers: bearer(h.token), body: stream(48 * MIB) });
    let grew = peakRss(pid) - base;
    assert.equal(streamed.status, 429, streamed.body);
    assert.deepEqual(connectError(streamed), {
      code: "resource_exhausted",
      plugwire: "payload_too_large",
      message: `admin request ${method("Dispatch")} has a body, over the 16 MiB limit; it was not used (a payload must fit one Deliver message)`,
    });
    assert.ok(grew < RSS_BOUND, `48 MiB streamed: host peak RSS grew by ${(grew / MIB).toFixed(1)} MiB`);
    // 256 MiB: the host stops reading 64 MiB past the cap and closes the connection (the answer may be lost in the reset).
    base = resetPeak(pid);
    const total = 256 * MIB;
    const endless = await raw({ socketPath: h.socket }, method("Dispatch"), { headers: bearer(h.token), body: stream(total) });
    grew = peakRss(pid) - base;
    assert.ok(endless.status === 429 || (endless.status === -1 && /EPIPE|ECONNRESET/.test(endless.body)), `${endless.status} ${endless.body}`);
    assert.ok(endless.sent < total, `the client pushed all ${endless.sent} bytes: the host kept reading`);
    assert.ok(grew < RSS_BOUND, `256 MiB streamed: host peak RSS grew by ${(grew / MIB).toFixed(1)} MiB`);
    await assertServes(h, client);
  });

  test("H-ADMIN-07: unknown methods and paths -> unimplemented naming the methods (with the token), unauthenticated without it", { timeout: TEST_TIMEOUT_MS }, async () => {
    const methods = "ListPlugins, RestartPlugin, StopPlugin, SnapshotNow, ListDeadLetters, ReplayDeadLetter, Dispatch, Upgrade";
    for (const [verb, path] of [
      ["POST", method("DeleteEverything")],
      ["POST", "/plugwire.v1.HostService/SendRouted"],
      ["GET", "/"],
      ["POST", `/${"x".repeat(10_000)}`],
    ] as const) {
      const body = verb === "GET" ? undefined : Buffer.from("{}");
      const reply = await raw({ socketPath: h.socket }, path, { method: verb, headers: bearer(h.token), body });
      assert.equal(reply.status, 501, path.slice(0, 80));
      assert.deepEqual(connectError(reply), {
        code: "unimplemented",
        plugwire: "invalid_argument",
        message: `the admin API has no method ${verb} ${path.slice(0, 200)}; it serves POST /plugwire.admin.v1.AdminService/METHOD with METHOD one of ${methods}`,
      });
      const stranger = await raw({ socketPath: h.socket }, path, { method: verb, body });
      assert.equal(stranger.status, 401);
      assert.equal(connectError(stranger).code, "unauthenticated");
    }
    await assertServes(h, client);
  });
});

test("H-ADMIN-08: --admin-host 0.0.0.0 (and a LAN-wide ::) without TLS -> refused before any plugin starts, naming --admin-tls-cert", { timeout: TEST_TIMEOUT_MS }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "pwt-hadm-bind-"));
  try {
    const config = writeConfig(dir);
    for (const host of ["0.0.0.0", "::", "192.0.2.1"]) {
      const r = await plugwire(["run", "--config", config, "--admin-host", host, "--admin-port", "0"]);
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        `plugwire: refusing to serve the admin API on ${host} without TLS: anyone on the network could read the token and every request. ` +
          "Pass --admin-tls-cert FILE and --admin-tls-key FILE (and --admin-tls-ca FILE to require client certificates), or bind a loopback address (--admin-host 127.0.0.1)\n",
      );
      assert.equal(r.stdout, "", "nothing was started (no log line)");
    }
    assert.equal(existsSync(join(dir, "data", "admin.address")), false);
    const caOnly = await plugwire(["run", "--config", config, "--admin-port", "0", "--admin-tls-ca", config]);
    assert.equal(caOnly.code, 1);
    assert.match(caOnly.stderr, /^plugwire: --admin-tls-ca needs --admin-tls-cert FILE and --admin-tls-key FILE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A CA, a server certificate for 127.0.0.1 and a client certificate, from openssl; plus a client certificate of another CA. */
function makeCerts(dir: string): Record<"ca" | "serverCert" | "serverKey" | "clientCert" | "clientKey" | "otherCert" | "otherKey", string> {
  const p = (name: string): string => join(dir, name);
  const ssl = (...args: string[]): void => {
    execFileSync("openssl", args, { stdio: "ignore", timeout: 30_000 });
  };
  const ca = (name: string): void => ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p(`${name}.key`), "-out", p(`${name}.pem`), "-days", "2", "-subj", `/CN=${name}`);
  const leaf = (name: string, signer: string, ext: string): void => {
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", p(`${name}.key`), "-out", p(`${name}.csr`), "-subj", `/CN=${name}`);
    writeFileSync(p(`${name}.ext`), ext);
    ssl("x509", "-req", "-in", p(`${name}.csr`), "-CA", p(`${signer}.pem`), "-CAkey", p(`${signer}.key`), "-CAcreateserial", "-out", p(`${name}.pem`), "-days", "2", "-extfile", p(`${name}.ext`));
  };
  ca("ca");
  ca("otherca");
  leaf("server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  leaf("client", "ca", "extendedKeyUsage=clientAuth\n");
  leaf("other", "otherca", "extendedKeyUsage=clientAuth\n");
  return {
    ca: p("ca.pem"),
    serverCert: p("server.pem"),
    serverKey: p("server.key"),
    clientCert: p("client.pem"),
    clientKey: p("client.key"),
    otherCert: p("other.pem"),
    otherKey: p("other.key"),
  };
}

/** A raw HTTPS request; resolves with the status, or with the TLS/socket error code when the handshake is refused. */
function tlsRequest(port: number, options: { ca: Buffer; cert?: Buffer; key?: Buffer; token?: string }): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      {
        host: "127.0.0.1",
        port,
        path: method("ListPlugins"),
        method: "POST",
        ca: options.ca,
        cert: options.cert,
        key: options.key,
        headers: { "content-type": "application/json", ...(options.token ? bearer(options.token) : {}) },
        timeout: 20_000,
        agent: false,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    req.end("{}");
  });
}

test("H-ADMIN-09: mTLS on 0.0.0.0: a client without a certificate, or with another CA's -> refused in the handshake; with one but no token -> unauthenticated; with both -> served", { timeout: TEST_TIMEOUT_MS }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "pwt-hadm-tls-"));
  let h: RunningHost | undefined;
  try {
    const certs = makeCerts(dir);
    const pem = (path: string): Buffer => readFileSync(path);
    const tls = { ca: pem(certs.ca), cert: pem(certs.clientCert), key: pem(certs.clientKey) };
    h = await startHost(
      dir,
      ["--admin-host", "0.0.0.0", "--admin-port", "0", "--admin-tls-cert", certs.serverCert, "--admin-tls-key", certs.serverKey, "--admin-tls-ca", certs.ca],
      tls,
    );
    const port = h.port!;
    const none = await tlsRequest(port, { ca: tls.ca, token: h.token });
    assert.ok("error" in none, `a client without a certificate was answered: ${JSON.stringify(none)}`);
    assert.match(none.error, /ECONNRESET|ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED|ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE|EPIPE/);
    const foreign = await tlsRequest(port, { ca: tls.ca, cert: pem(certs.otherCert), key: pem(certs.otherKey), token: h.token });
    assert.ok("error" in foreign, `a client with another CA's certificate was answered: ${JSON.stringify(foreign)}`);
    // Plain HTTP to the TLS port gets nothing useful either.
    const plain = await raw({ port }, method("ListPlugins"), { headers: bearer(h.token), body: Buffer.from("{}") }).catch((e: Error) => ({ status: -1, body: e.message }));
    assert.notEqual(plain.status, 200);
    assert.deepEqual(await tlsRequest(port, { ...tls }), { status: 401 });
    assert.deepEqual(await tlsRequest(port, { ...tls, token: h.token }), { status: 200 });
    // The CLI without its client certificate is told which flags to pass.
    const noCert = await plugwire(["status", "--admin", `https://127.0.0.1:${port}`, "--admin-tls-ca", certs.ca, "-c", h.config]);
    assert.equal(noCert.code, 1);
    assert.match(noCert.stderr, /^plugwire: the TLS connection to the host's admin API failed \(.+\); pass --admin-tls-ca FILE to trust its certificate, and --admin-tls-cert FILE --admin-tls-key FILE when it requires a client certificate\n$/);
    // The CLI over mTLS, token from the config's data dir.
    const status = await plugwire([
      "status",
      "--admin",
      `https://127.0.0.1:${port}`,
      "--admin-tls-ca",
      certs.ca,
      "--admin-tls-cert",
      certs.clientCert,
      "--admin-tls-key",
      certs.clientKey,
      "-c",
      h.config,
    ]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /\necho +ready/);
    await assertServes(h, adminClient(`https://127.0.0.1:${port}`, { token: h.token, tls }));
  } finally {
    try {
      if (h) await stopHost(h);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("H-ADMIN-10: the admin token is made 0600 in a 0700 data dir on the first run and reused; a group-readable or symlinked token -> run refused saying what to do", { timeout: TEST_TIMEOUT_MS }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "pwt-hadm-token-"));
  let h: RunningHost | undefined;
  try {
    mkdirSync(join(dir, "data"), { mode: 0o700 });
    const tokenPath = join(dir, "data", "admin.token");
    h = await startHost(dir);
    assert.equal(statSync(tokenPath).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, "data")).mode & 0o777, 0o700);
    const first = h.token;
    assert.match(first, /^[A-Za-z0-9_-]{43}$/, "32 random bytes, base64url");
    await assertServes(h);
    await stopHost(h);
    h = undefined;
    assert.equal(readFileSync(tokenPath, "utf8").trim(), first, "the token outlives the run");

    h = await startHost(dir);
    assert.equal(h.token, first, "the second run reuses it");
    const status = await plugwire(["status", "-c", h.config], { env: { PLUGWIRE_ADMIN_TOKEN: undefined } });
    assert.equal(status.code, 0, status.stderr);
    await assertServes(h);
    await stopHost(h);
    h = undefined;

    chmodSync(tokenPath, 0o640);
    const refused = await plugwire(["run", "--config", join(dir, "plugwire.yaml")]);
    assert.equal(refused.code, 1);
    assert.equal(
      refused.stderr,
      `plugwire: the admin token ${tokenPath} is readable by other users (mode 640); run 'chmod 600 ${tokenPath}' (or remove it and start 'plugwire run' again to make a new token)\n`,
    );
    assert.equal(refused.stdout, "", "nothing was started");

    // A symlink in its place (to a token someone else controls) is refused too.
    rmSync(tokenPath);
    writeFileSync(join(dir, "planted"), "planted-token-planted-token\n", { mode: 0o600 });
    symlinkSync(join(dir, "planted"), tokenPath);
    const planted = await plugwire(["run", "--config", join(dir, "plugwire.yaml")]);
    assert.equal(planted.code, 1);
    assert.equal(
      planted.stderr,
      `plugwire: the admin token ${tokenPath} is not a regular file (a symlink or directory is refused); remove it and start 'plugwire run' again to make a new one\n`,
    );
  } finally {
    try {
      if (h) await stopHost(h);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
