/**
 * Regressions found by the fuzzers (fuzz/, `npm run fuzz`): each case is the
 * smallest input that broke a real process, replayed against real processes.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { ENV, MAGIC_COOKIE_VALUE, PluginService, TOKEN_LINE_PREFIX, connect, health } from "@plugwire/proto";
import { launchEcho, stopEcho } from "./fixtures/echo-direct.js";
import { hasOpenssl, makePki } from "./remote-certs.js";
import { alive, example, fixture, freeLoopbackPort } from "./helpers.js";
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { HostProcess, grpcPrefix, memoryKb, rawAnswer, rawSession, rawStream, rawUnary, type RawAnswer } from "./fixtures/hostile-host-wire.js";

/** Runs the fuzz-host fixture; rejects if it does not exit 0 within `ms` (it is SIGKILLed then). */
function runHost(dataDir: string, op: string, ms = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [fixture("fuzz-host"), dataDir, op], { timeout: ms, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`host '${op}' failed (${error.killed ? `killed after ${ms} ms: it hung` : `exit ${error.code}`}):\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>);
    });
  });
}

/** The fuzzers' HTTP/2 client (fuzz/lib/h2.mjs): its SessionPool and h2Request, as the plugin-service fuzzer uses them. */
interface FuzzH2 {
  PREFACE: Buffer;
  FRAME: Record<string, number>;
  FLAG: Record<string, number>;
  frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer;
  hpackBlock(headers: Array<[string, string]>): Buffer;
  parseFrames(bytes: Buffer): Array<{ type: number; flags: number; streamId: number; payload: Buffer }>;
  SessionPool: new (socketPath: string, size?: number) => { close(): void; open: number };
  h2Request(pool: unknown, headers: Record<string, string>, body: Buffer[], options?: { hangMs?: number }): Promise<string>;
  grpcMessage(payload: Uint8Array): Buffer;
}
const fuzzH2 = (): Promise<FuzzH2> =>
  import(pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "fuzz", "lib", "h2.mjs")).href) as Promise<FuzzH2>;

/** Every `*.snap` file under `dir`, with its directory. */
function snapFiles(dir: string): Array<{ dir: string; name: string }> {
  const found: Array<{ dir: string; name: string }> = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...snapFiles(path));
    else if (/^\d+\.snap$/.test(name)) found.push({ dir, name });
  }
  return found;
}

/**
 * A Health check on a new connection with the token. The plugin serves one connection, its
 * host's: until it has seen the test's previous connection close (its teardown runs a turn
 * later), it refuses the new one as "not the host's". That refusal is retried, bounded
 * (50 × 100 ms); anything else fails at once.
 */
async function probeHealthAsHost(address: string, token: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const probe = connect(health.Health, `unix://${address}`, { token });
    try {
      await probe.client.check({}, { deadlineMs: 10_000 });
      return;
    } catch (e) {
      const refusedAsSecond = e instanceof Error && /another connection is already the host's/.test(e.message);
      if (!refusedAsSecond || attempt >= 50) throw e;
    } finally {
      probe.close();
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe("fuzz regressions", { timeout: 120_000 }, () => {
  test("snapshot loader: a FIFO, a directory or a device in place of the newest generation is skipped, not read (it hung the host, even its exit)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pwt-fuzzreg-"));
    try {
      assert.deepEqual(await runHost(dataDir, "fill:5"), { filled: "5" });
      const snaps = snapFiles(join(dataDir, "snapshots"));
      assert.equal(snaps.length > 0, true, "the first host stored a snapshot");
      const { dir, name } = snaps.sort((a, b) => Number.parseInt(b.name) - Number.parseInt(a.name))[0]!;
      const next = (k: number): string => join(dir, `${String(Number.parseInt(name) + k).padStart(name.length - ".snap".length, "0")}.snap`);
      execFileSync("mkfifo", [next(3)]);
      mkdirSync(next(2));
      symlinkSync("/dev/zero", next(1));
      // Before the fix, the loader's readFile blocked a libuv thread on the FIFO for good: start never finished.
      const state = await runHost(dataDir, "state");
      assert.equal(state.gen, 5, "the intact generation under them is restored");
      assert.equal(state.restoredVersion, 1);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("HostService: 16 MiB requests of millions of tiny fields, sent without a token, are refused cheaply (four of them killed the host out of memory)", async () => {
    const child = spawn(process.execPath, [fixture("host-proc")], { stdio: ["ignore", "pipe", "pipe"] });
    let info: { pids: number[]; runDir: string; dataDir: string } | undefined;
    try {
      info = await new Promise((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!));
        });
        child.once("exit", (code) => reject(new Error(`host exited ${code} before it was ready`)));
      });
      // Field 15, varint 0, repeated: protobuf-es kept each one as an unknown field.
      const body = Buffer.alloc(16 * 1024 * 1024 - 64);
      for (let i = 0; i < body.length; i += 2) body[i] = 0x78;
      const client = new grpc.Client(`unix://${join(info!.runDir, "host.sock")}`, grpc.credentials.createInsecure(), {
        "grpc.max_send_message_length": 16 * 1024 * 1024,
      });
      const call = (path: string, request: Buffer): Promise<grpc.ServiceError | undefined> =>
        new Promise((resolve) => {
          client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err) => resolve(err ?? undefined));
        });
      const started = performance.now();
      const errors = await Promise.all(Array.from({ length: 4 }, () => call("/plugwire.v1.HostService/LookupName", body)));
      for (const e of errors) assert.ok(e && e.code !== grpc.status.UNAVAILABLE, `the host answered each request (got ${e?.code} ${e?.details})`);
      assert.ok(performance.now() - started < 10_000, "refused within 10 s");
      assert.equal(alive(child.pid!), true, "the host is still running");
      const after = await call("/plugwire.v1.HostService/GetSigningSeed", Buffer.alloc(0));
      assert.equal(after?.code, grpc.status.UNAUTHENTICATED, "and still answers");
      client.close();
    } finally {
      child.kill("SIGTERM");
      if (info) {
        rmSync(info.dataDir, { recursive: true, force: true });
        rmSync(info.runDir, { recursive: true, force: true });
      }
    }
  });

  test(
    "SDK: an error whose text is not well-formed UTF-16 (Start with config_json '😀') is answered, not a crash",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "pwt-fz-"));
      const token = randomBytes(24).toString("base64url");
      const child = spawn(process.execPath, [example("echo")], {
        env: {
          PATH: process.env.PATH,
          [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
          [ENV.protocolVersions]: "1",
          [ENV.socketDir]: dir,
          [ENV.authToken]: token,
          [ENV.instanceId]: "echo-fz",
          [ENV.hostAddress]: `unix://${join(dir, "host.sock")}`,
        },
        stdio: ["pipe", "pipe", "pipe"],
      });
      try {
        const address = await new Promise<string>((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (d: Buffer) => {
            out += d.toString();
            const m = /address=(\S+)/.exec(out);
            if (m) resolve(m[1]!);
          });
          child.once("exit", (code) => reject(new Error(`echo exited ${code} before its handshake`)));
        });
        const plugin = connect(PluginService, `unix://${address}`, { token });
        try {
          await assert.rejects(plugin.client.start({ dataDir: dir, instanceId: "echo-fz", configJson: "😀", capabilities: [] }, { deadlineMs: 10_000 }));
        } finally {
          plugin.close();
        }
        await probeHealthAsHost(address, token);
        assert.equal(alive(child.pid!), true, "the plugin is still running");
      } finally {
        child.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
  test("HostService: 100 concurrent 16 MiB request bodies, with a valid token and without one, leave the host's memory bounded (they took it to 2.4 GB)", async (ctx) => {
    const host = await new HostProcess().start();
    try {
      const before = memoryKb(host.info.pid);
      // SendDirect{send{peer, frame}} with a frame just under 16 MiB; one buffer, written 200 times.
      const frame = 16 * 1024 * 1024 - 1024;
      const body = Buffer.alloc(frame + 64);
      let pos = 0;
      const put = (...bytes: number[]): void => void bytes.forEach((b) => (body[pos++] = b));
      const varint = (n: number): void => {
        while (n >= 0x80) {
          put((n & 0x7f) | 0x80);
          n = Math.floor(n / 128);
        }
        put(n);
      };
      const inner = 2 + 32 + 1 + (frame >= 2 ** 21 ? 4 : 3) + frame;
      put(0x0a);
      varint(inner);
      put(0x0a, 32, ...new Array<number>(32).fill(2), 0x12);
      varint(frame);
      const message = body.subarray(0, pos + frame);
      const session = rawSession(host.socketPath);
      const call = (token: string | undefined): Promise<RawAnswer> => {
        const stream = rawStream(session, "/plugwire.v1.HostService/SendDirect", token);
        const answer = rawAnswer(stream);
        stream.write(grpcPrefix(message.length));
        stream.end(message);
        return answer;
      };
      const answers = await Promise.all([
        ...Array.from({ length: 100 }, () => call(host.info.tokens.victim)),
        ...Array.from({ length: 100 }, () => call(undefined)),
      ]);
      session.close();
      const withToken = answers.slice(0, 100);
      const without = answers.slice(100);
      for (const a of without) assert.equal(a.status, grpc.status.UNAUTHENTICATED, JSON.stringify(a));
      for (const a of withToken) {
        assert.ok(
          a.status === grpc.status.OK || (a.status === grpc.status.RESOURCE_EXHAUSTED && a.message.includes("(host option maxHostCallBytes)")),
          `each call with the token succeeds or is refused by maxHostCallBytes: ${JSON.stringify(a)}`,
        );
      }
      assert.ok(withToken.some((a) => a.status === grpc.status.OK), "calls within the limit succeed");
      const grew = (memoryKb(host.info.pid).hwm - before.hwm) / 1024;
      ctx.diagnostic(`host peak RSS grew by ${Math.round(grew)} MB`);
      assert.ok(grew < 300, `peak RSS grew by ${Math.round(grew)} MB`);
      const { status } = await host.ask<{ status: { debug: { requestBytes: Record<string, number> } } }>({ op: "status" });
      assert.equal(status.debug.requestBytes.victim, 0, "every byte counted was given back");
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });

  test("SDK: 16 MiB requests of millions of tiny fields to a plugin (Describe, Deliver, with and without a token) are refused by the field budget before decoding", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-fz-"));
    const token = randomBytes(24).toString("base64url");
    const child = spawn(process.execPath, [example("echo")], {
      env: {
        PATH: process.env.PATH,
        [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
        [ENV.protocolVersions]: "1",
        [ENV.socketDir]: dir,
        [ENV.authToken]: token,
        [ENV.instanceId]: "echo-fz2",
        [ENV.hostAddress]: `unix://${join(dir, "host.sock")}`,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /address=(\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once("exit", (code) => reject(new Error(`echo exited ${code} before its handshake`)));
      });
      const body = Buffer.alloc(16 * 1024 * 1024 - 64);
      for (let i = 0; i < body.length; i += 2) body[i] = 0x78; // field 15, varint 0, again and again
      const session = rawSession(address);
      try {
        const started = performance.now();
        const answers = await Promise.all([
          rawUnary(session, "/plugwire.v1.PluginService/Describe", undefined, body),
          rawUnary(session, "/plugwire.v1.PluginService/Describe", token, body),
          rawUnary(session, "/grpc.health.v1.Health/Check", undefined, body),
        ]);
        for (const a of answers) assert.deepEqual([a.status, a.message], [grpc.status.INTERNAL, "Error deserializing request"]);
        // A Deliver batch of 70 000 empty items is over its budget (65 536 fields) too.
        const deliver = rawStream(session, "/plugwire.v1.PluginService/Deliver", token);
        const answer = rawAnswer(deliver);
        const items = Buffer.alloc(2 * 70_000);
        for (let i = 0; i < items.length; i += 2) items[i] = 0x0a; // items (field 1), length 0
        deliver.write(grpcPrefix(items.length));
        deliver.end(items);
        const d = await answer;
        assert.deepEqual([d.status, d.message], [grpc.status.INTERNAL, "Error deserializing request"]);
        assert.ok(performance.now() - started < 10_000, "refused within 10 s");
      } finally {
        session.close();
      }
      await probeHealthAsHost(address, token);
      assert.equal(alive(child.pid!), true, "the plugin is still running");
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("HostService: a LookupName with a wrong token and a 16 MiB body still being sent is answered UNAUTHENTICATED and reset at once, and the fuzzer's client sees that answer (it judged it a 10 s hang)", async () => {
    // Input #8391 of `fuzz --target host-service --seed 20251129`. The host
    // answered within milliseconds (HEADERS grpc-status 16 + RST_STREAM
    // NO_ERROR), but the fuzzer's node:http2 session had Node's default
    // maxSessionMemory (10 MB), which counts the client's own queued body:
    // its nghttp2 refused the answer's headers (RST_STREAM ENHANCE_YOUR_CALM
    // from the client) and the stream never closed.
    const host = await new HostProcess().start();
    const headers = {
      ":method": "POST",
      ":path": "/plugwire.v1.HostService/LookupName",
      ":scheme": "http",
      ":authority": "localhost",
      "content-type": "application/grpc",
      "grpc-status": "r~P",
      "fs-2": "WM+",
      authorization: "Bearer 6Zt1tBxUjx1bLj0bA0vFtQ1rUeQ5x3nqZf3S1k5bW0c",
    };
    // One message of 16 MiB - 1024 bytes: field 2, length 0, again and again ("repeated-field2").
    const body = Buffer.alloc(16 * 1024 * 1024 - 1024);
    for (let i = 0; i < body.length; i += 2) body[i] = 0x12;
    const message = Buffer.concat([grpcPrefix(body.length), body]);
    try {
      // A raw client: the answer comes while nearly all of the body is still
      // queued on the client's side, and the host never lets more than its
      // 1 MiB stream window of it onto the socket.
      const session = rawSession(host.socketPath);
      try {
        const stream = session.request(headers);
        stream.on("error", () => undefined);
        const answer = rawAnswer(stream);
        stream.end(message);
        const a = await answer;
        assert.equal(a.status, grpc.status.UNAUTHENTICATED, JSON.stringify(a));
        assert.match(a.message, /no valid plugwire auth token/);
        assert.equal(a.dataBytes, 0);
        const written = (session.socket as unknown as { bytesWritten: number }).bytesWritten;
        assert.ok(written < 2 * 1024 * 1024, `the client got ${written} bytes of its 16 MiB body out: the host must not read a refused body past its stream window`);
      } finally {
        session.close();
      }
      // The fuzzer's own client, as it sent input #8391.
      const here = dirname(fileURLToPath(import.meta.url));
      const h2 = (await import(pathToFileURL(join(here, "..", "..", "..", "fuzz", "lib", "h2.mjs")).href)) as {
        SessionPool: new (socketPath: string, size: number) => { close(): void };
        h2Request(pool: unknown, headers: object, body: Buffer[], options: object): Promise<string>;
      };
      const pool = new h2.SessionPool(host.socketPath, 1);
      try {
        const outcome = await h2.h2Request(pool, headers, [message], { endStream: true, waitMs: 5, hangMs: 10_000, streaming: false });
        assert.equal(outcome, "grpc:UNAUTHENTICATED", "the fuzzer sees the host's answer");
      } finally {
        pool.close();
      }
      const { status } = await host.ask<{ status: { debug: { requestBytes: Record<string, number> } } }>({ op: "status" });
      for (const [plugin, bytes] of Object.entries(status.debug.requestBytes)) assert.equal(bytes, 0, `request bytes of '${plugin}' in transfer`);
      assert.equal(alive(host.info.pid), true, "the host is still running");
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });
  test("SDK (plugin-service #31071): 16 MiB wrong-token OPTIONS calls without a content-type, on a second connection while the host's is open, are answered 415 and the host's connection still serves", async () => {
    const { SessionPool, h2Request, grpcMessage } = await fuzzH2();
    const { child, dir, token, address } = await launchEcho("echo-fz31071");
    const pools: Array<{ close(): void }> = [];
    try {
      // Input 31071: Shutdown with a wrong token, :method OPTIONS, no content-type, one 16 MiB
      // "repeated-field2" message. Three at once on one fuzzer session queue 48 MiB, over
      // node:http2's default 10 MB session memory: the fuzzer's own client refused the plugin's
      // 415 (RST_STREAM ENHANCE_YOUR_CALM) and waited for good, a hang counted on the plugin.
      const body = Buffer.alloc(16_776_192);
      for (let i = 0; i < body.length; i += 2) body[i] = 0x12;
      const message = grpcMessage(body);
      const headers = {
        ":method": "OPTIONS",
        ":path": "/plugwire.v1.PluginService/Shutdown",
        ":scheme": "http",
        ":authority": "localhost",
        te: "trailers",
        "grpc-timeout": "0S",
        "q0-eh-t9m2": "aJiN",
        authorization: "Bearer wrong",
      };
      const send3 = (): Promise<string[]> => {
        const pool = new SessionPool(address, 1);
        pools.push(pool);
        return Promise.all([0, 1, 2].map(() => h2Request(pool, headers, [message], { hangMs: 8_000 })));
      };
      // Before the host has connected, only the token check refuses them: grpc-js answers a call
      // without a gRPC content-type with 415, body unread.
      assert.deepEqual(await send3(), ["http:415", "http:415", "http:415"], "every call is answered");
      // The host's connection: the first to call with the token, kept open.
      const host = rawSession(address);
      try {
        const first = await rawUnary(host, "/grpc.health.v1.Health/Check", token, Buffer.alloc(0));
        assert.equal(first.status, grpc.status.OK);
        // Now the second connection is refused: its first call is answered, then the connection
        // is closed (GOAWAY), so the calls past the GOAWAY's last stream are reset, none left waiting.
        const outcomes = await send3();
        assert.equal(outcomes[0], "http:415");
        for (const o of outcomes) assert.match(o, /^(http:415|stream-error:ERR_HTTP2_STREAM_ERROR|rst:7)$/, "answered or reset, not left waiting");
        // The plugin still serves its host on the host's connection, and is alive.
        const again = await rawUnary(host, "/grpc.health.v1.Health/Check", token, Buffer.alloc(0));
        assert.equal(again.status, grpc.status.OK);
        assert.equal(alive(child.pid!), true, "the plugin is still running");
      } finally {
        host.close();
      }
    } finally {
      for (const pool of pools) pool.close();
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("SDK (plugin-service liveness): the host's connection, once node:http2 gave up on it (GOAWAY PROTOCOL_ERROR), is pinged and dropped, so the next connection with the token is served (it locked the plugin out for good)", async () => {
    const { PREFACE, FRAME, FLAG, frame, hpackBlock, parseFrames } = await fuzzH2();
    const { child, dir, token, address } = await launchEcho("echo-fzlive");
    try {
      // A raw connection calls with the token (so it is the host's), then sends DATA on an idle
      // stream: node:http2 answers GOAWAY(PROTOCOL_ERROR) and stops reading it, and never sees it close.
      const raw = netConnect(address);
      raw.on("error", () => undefined);
      let received = Buffer.alloc(0);
      const goaway = new Promise<number>((resolve) => {
        raw.on("data", (d: Buffer) => {
          received = Buffer.concat([received, d]);
          const g = parseFrames(received).find((f) => f.type === FRAME.GOAWAY!);
          if (g) resolve(g.payload.readUInt32BE(4));
        });
      });
      await new Promise<void>((resolve) => raw.once("connect", () => resolve()));
      const block = hpackBlock([
        [":method", "POST"],
        [":path", "/grpc.health.v1.Health/Check"],
        [":scheme", "http"],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ["authorization", `Bearer ${token}`],
      ]);
      raw.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS!, 0, 0), frame(FRAME.HEADERS!, FLAG.END_HEADERS!, 1, block), frame(FRAME.DATA!, 0, 3, Buffer.alloc(10))]));
      assert.equal(await goaway, 1, "GOAWAY with PROTOCOL_ERROR");
      raw.destroy();
      // A host that dials again is served once the guard has pinged the dead connection (2 s):
      // refused (UNAUTHENTICATED, naming the other connection) until then, never for good.
      let last: string | undefined;
      for (let tries = 0; tries < 100; tries++) {
        const probe = connect(health.Health, `unix://${address}`, { token });
        try {
          await probe.client.check({}, { deadlineMs: 10_000 });
          last = "ok";
          break;
        } catch (e) {
          last = (e as { code?: string }).code;
          assert.equal(last, "unauthenticated", String(e));
          assert.match(String((e as Error).message), /another connection is already the host's/);
        } finally {
          probe.close();
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(last, "ok", "a new connection with the token is served within 100 tries");
      assert.equal(alive(child.pid!), true, "the plugin is still running");
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// ---- a connection node:http2 gave up on is closed, both ends (plugin-service #75066) ----

/** The inode of the other end of a unix socket this process holds (`ss -xn`), or undefined. */
function peerInode(socket: import("node:net").Socket): string | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== "number" || fd < 0) return undefined;
  const ours = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  const row = execFileSync("ss", ["-xn"], { encoding: "utf8", timeout: 5000 })
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .find((c) => c.length >= 8 && c[5] === ours);
  return row?.[7];
}

/** Whether process `pid` holds the unix socket with this inode (/proc/<pid>/fd). */
function holdsSocket(pid: number, inode: string): boolean {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return true;
    } catch {
      // closed while listing
    }
  }
  return false;
}

/**
 * On a raw connection to `address`: one complete call with a valid token (`block`, an empty gRPC
 * message) answered, then DATA on an idle stream, then 30,000 PINGs the server would have to read.
 * Returns the GOAWAY code the server sent, whether the server closed the connection within
 * `waitMs` (this end is never closed first), and whether `pid` still holds the server's end
 * after that (looked at for up to 10 s more).
 */
async function protocolErrorAfterValidCall(address: string, pid: number, block: Buffer, waitMs = 20_000): Promise<{ goaway: number | undefined; closedByServer: boolean; serverHoldsEnd: boolean | undefined }> {
  const { PREFACE, FRAME, FLAG, frame, parseFrames } = await fuzzH2();
  const raw = netConnect(address);
  raw.on("error", () => undefined);
  let received = Buffer.alloc(0);
  let onFrames = (): void => undefined;
  raw.on("data", (d: Buffer) => {
    received = Buffer.concat([received, d]);
    onFrames();
  });
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), waitMs);
    raw.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  const until = <T>(pick: (frames: ReturnType<typeof parseFrames>) => T | undefined, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within 10 s`)), 10_000);
      onFrames = () => {
        const found = pick(parseFrames(received));
        if (found !== undefined) {
          clearTimeout(timer);
          resolve(found);
        }
      };
      onFrames();
    });
  try {
    await new Promise<void>((resolve) => raw.once("connect", () => resolve()));
    raw.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS!, 0, 0), frame(FRAME.HEADERS!, FLAG.END_HEADERS!, 1, block), frame(FRAME.DATA!, FLAG.END_STREAM!, 1, Buffer.alloc(5))]));
    await until((fs) => (fs.some((f) => f.streamId === 1 && (f.flags & FLAG.END_STREAM!) !== 0) ? true : undefined), "answer to the valid call");
    const inode = peerInode(raw);
    assert.ok(inode, "the server's end of the connection is found with ss");
    assert.equal(holdsSocket(pid, inode), true, "the server holds its end while the connection serves");
    raw.write(frame(FRAME.DATA!, 0, 3, Buffer.alloc(10)));
    const goaway = await until((fs) => fs.find((f) => f.type === FRAME.GOAWAY!)?.payload.readUInt32BE(4), "GOAWAY");
    // Bytes a server that gave up on the connection never reads: 510,000 B, more than the socket
    // buffers hold, so this end is blocked mid-write as the fuzzer's was (219,264 B unread on the plugin's end).
    raw.write(Buffer.concat(Array.from({ length: 30_000 }, () => frame(FRAME.PING!, 0, 0, Buffer.alloc(8)))));
    const closedByServer = await closed;
    // node:http2 ends the socket (this end sees EOF), then closes its fd a turn later: look until
    // it is gone, at most 100 times over 10 s.
    let serverHoldsEnd = holdsSocket(pid, inode);
    for (let i = 0; i < 100 && serverHoldsEnd; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      serverHoldsEnd = holdsSocket(pid, inode);
    }
    return { goaway, closedByServer, serverHoldsEnd };
  } finally {
    raw.destroy();
  }
}

describe("fuzz regressions: a connection node:http2 gave up on (GOAWAY PROTOCOL_ERROR) is closed", { timeout: 120_000 }, () => {
  test("SDK (plugin-service #75066): the host's connection, after a valid call and then DATA on an idle stream, is closed by the plugin, both ends (it stayed open unread for good)", async () => {
    const { hpackBlock } = await fuzzH2();
    const p = await launchEcho("echo-fzgoaway");
    try {
      const block = hpackBlock([
        [":method", "POST"],
        [":path", "/grpc.health.v1.Health/Check"],
        [":scheme", "http"],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ["authorization", `Bearer ${p.token}`],
      ]);
      const r = await protocolErrorAfterValidCall(p.address, p.child.pid!, block);
      assert.equal(r.goaway, 1, "GOAWAY with PROTOCOL_ERROR");
      assert.equal(r.closedByServer, true, "the plugin closed the connection (no second connection was made: the one-connection guard's ping never ran)");
      assert.equal(r.serverHoldsEnd, false, "the plugin no longer holds its end of the connection");
      // The host dials again and is served (the dead connection is no longer the host's).
      await probeHealthAsHost(p.address, p.token);
      assert.equal(alive(p.child.pid!), true, "the plugin is still running");
    } finally {
      stopEcho(p);
    }
  });

  test("HostService (host.sock): a plugin's connection, after a valid call and then DATA on an idle stream, is closed by the host, both ends (it stayed open unread for good)", async () => {
    const { hpackBlock } = await fuzzH2();
    const host = await new HostProcess().start();
    try {
      const token = Object.values(host.info.tokens)[0]!;
      const block = hpackBlock([
        [":method", "POST"],
        [":path", "/plugwire.v1.HostService/LookupName"],
        [":scheme", "http"],
        [":authority", "localhost"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ["authorization", `Bearer ${token}`],
      ]);
      const r = await protocolErrorAfterValidCall(host.socketPath, host.info.pid, block);
      assert.equal(r.goaway, 1, "GOAWAY with PROTOCOL_ERROR");
      assert.equal(r.closedByServer, true, "the host closed the connection");
      assert.equal(r.serverHoldsEnd, false, "the host no longer holds its end of the connection");
      assert.equal(alive(host.info.pid), true, "the host is still running");
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });
});


/** Whether process `pid` holds a TCP socket whose peer is 127.0.0.1:`peerPort` (`ss -tnp`). */
function holdsTcpFrom(pid: number, peerPort: number): boolean {
  return execFileSync("ss", ["-tnpH"], { encoding: "utf8", timeout: 5000 })
    .split("\n")
    .some((l) => l.includes(`pid=${pid},`) && l.trim().split(/\s+/)[4] === `127.0.0.1:${peerPort}`);
}

describe("fuzz regressions: attach mode (TCP + mutual TLS) closes a connection node:http2 gave up on", { timeout: 120_000, skip: hasOpenssl() ? false : "skipped: the openssl CLI is not installed" }, () => {
  test("SDK attach mode: a host-certified TLS connection that sends DATA on an idle stream gets GOAWAY(PROTOCOL_ERROR) and is closed by the plugin, both ends", async () => {
    const { PREFACE, FRAME, frame, parseFrames } = await fuzzH2();
    const dir = mkdtempSync(join(tmpdir(), "pwt-fzattach-"));
    const pki = makePki(join(dir, "pki"));
    const serverPair = pki.issue("plugin", { cn: "counter", san: ["127.0.0.1", "localhost"], usage: "server" });
    const clientPair = pki.issue("host", { cn: "plugwire-host", usage: "client" });
    const port = await freeLoopbackPort();
    const child = spawn(process.execPath, [example("counter")], {
      env: { PATH: process.env.PATH, PLUGWIRE_LISTEN: `tcp://127.0.0.1:${port}`, PLUGWIRE_TLS_CERT: serverPair.cert, PLUGWIRE_TLS_KEY: serverPair.key, PLUGWIRE_TLS_CLIENT_CA: pki.ca },
      stdio: ["ignore", "ignore", "pipe"],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let err = "";
        const timer = setTimeout(() => reject(new Error(`the plugin did not say it serves within 20 s; stderr:\n${err}`)), 20_000);
        child.stderr!.on("data", (chunk: Buffer) => {
          err += chunk.toString();
          if (/serving attach mode on tcp:/.test(err)) {
            clearTimeout(timer);
            resolve();
          }
        });
        child.once("exit", (code) => {
          clearTimeout(timer);
          reject(new Error(`the plugin exited (${code}) before serving; stderr:\n${err}`));
        });
      });
      const raw = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ALPNProtocols: ["h2"], ca: readFileSync(pki.ca), cert: readFileSync(clientPair.cert), key: readFileSync(clientPair.key) });
      raw.on("error", () => undefined);
      try {
        let received = Buffer.alloc(0);
        const goaway = new Promise<number>((resolve) => {
          raw.on("data", (d: Buffer) => {
            received = Buffer.concat([received, d]);
            const g = parseFrames(received).find((f) => f.type === FRAME.GOAWAY!);
            if (g && g.payload.length >= 8) resolve(g.payload.readUInt32BE(4));
          });
        });
        const closed = new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 20_000);
          raw.once("close", () => {
            clearTimeout(timer);
            resolve(true);
          });
        });
        await new Promise<void>((resolve, reject) => {
          raw.once("secureConnect", () => resolve());
          raw.once("close", () => reject(new Error("the TLS handshake with the plugin failed")));
        });
        const localPort = raw.localPort!;
        raw.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS!, 0, 0), frame(FRAME.DATA!, 0, 3, Buffer.alloc(10))]));
        assert.equal(await goaway, 1, "GOAWAY with PROTOCOL_ERROR");
        raw.write(Buffer.concat(Array.from({ length: 30_000 }, () => frame(FRAME.PING!, 0, 0, Buffer.alloc(8)))));
        assert.equal(await closed, true, "the plugin closed the connection (this end never closed first)");
        let holds = holdsTcpFrom(child.pid!, localPort);
        for (let i = 0; i < 100 && holds; i++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          holds = holdsTcpFrom(child.pid!, localPort);
        }
        assert.equal(holds, false, "the plugin no longer holds its end of the connection");
        assert.equal(alive(child.pid!), true, "the plugin is still running");
      } finally {
        raw.destroy();
      }
    } finally {
      child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
