/**
 * A TS plugin's server against hostile raw HTTP/2 connections (issue 12, found
 * by the plugin-service fuzzer): one raw connection must not abort the
 * plugin's process, and connections that are not the host's must not pile up
 * as open sockets. Real example plugins (plugins-example/dist/echo.js), real
 * unix sockets.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ENV, MAGIC_COOKIE_VALUE, TOKEN_LINE_PREFIX } from "@plugwire/proto";
import { alive, example } from "./helpers.js";
import { HostProcess } from "./fixtures/hostile-host-wire.js";
import { type DirectEcho as Plugin, launchEcho, stopEcho as stop } from "./fixtures/echo-direct.js";

interface FuzzH2 {
  PREFACE: Buffer;
  frame(type: number, flags: number, streamId: number, payload?: Buffer): Buffer;
  hpackBlock(headers: Array<[string, string]>): Buffer;
  parseFrames(bytes: Buffer): Array<{ type: number; payload: Buffer }>;
}
const fuzzH2 = (): Promise<FuzzH2> =>
  import(pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "fuzz", "lib", "h2.mjs")).href) as Promise<FuzzH2>;

const HEADERS = 1;
const SETTINGS = 4;
const PING = 6;
const GOAWAY = 7;
const DATA = 0;
const END_HEADERS = 4;

/** The host's connection: an HTTP/2 session that made a call with the token and stays open. */
async function hostSession(p: Plugin): Promise<{ session: http2.ClientHttp2Session; check: () => Promise<string> }> {
  const session = http2.connect("http://localhost", { createConnection: () => netConnect(p.address) });
  session.on("error", () => undefined);
  const check = (): Promise<string> =>
    new Promise((resolve) => {
      const req = session.request({ ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers", authorization: `Bearer ${p.token}` });
      req.on("error", (e) => resolve(`error:${e.message}`));
      req.on("trailers", (t) => resolve(String(t["grpc-status"])));
      req.on("response", (h) => {
        if (h["grpc-status"] !== undefined) resolve(String(h["grpc-status"]));
      });
      req.resume();
      req.end(Buffer.from([0, 0, 0, 0, 0]));
    });
  assert.equal(await check(), "0", "the host's health check is answered OK");
  return { session, check };
}

/** Writes `bytes` in one write on a new connection, reads until the plugin closes it or 200 ms pass, then closes it. */
function rawOnce(address: string, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = netConnect(address, () => socket.write(bytes));
    const timer = setTimeout(() => socket.destroy(), 200);
    socket.on("error", () => undefined);
    socket.on("data", () => undefined);
    socket.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Unix-socket fds the process holds (/proc/<pid>/fd). */
function socketFds(pid: number): number {
  let n = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith("socket:")) n++;
    } catch {
      // closed while listing
    }
  }
  return n;
}

describe("SDK server: hostile raw connections", { timeout: 120_000 }, () => {
  test("one read carrying a refused call, a second HEADERS and a frame with a bad length does not abort the plugin (nghttp2 1.61 assertion iframe->state == NGHTTP2_IB_IGN_ALL)", async () => {
    const { PREFACE, frame, hpackBlock } = await fuzzH2();
    const p = await launchEcho();
    try {
      const host = await hostSession(p);
      const block = (token: boolean): Buffer =>
        hpackBlock([
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/grpc.health.v1.Health/Check"],
          [":authority", "a"],
          ["content-type", "application/grpc"],
          ["te", "trailers"],
          ...(token ? ([["authorization", `Bearer ${p.token}`]] as Array<[string, string]>) : []),
        ]);
      const badPing = frame(PING, 0, 0, Buffer.alloc(7)); // FRAME_SIZE_ERROR
      const reads = {
        // A call with the token on a second connection (refused, the connection closed), more HEADERS, then the bad frame.
        "second connection": Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS, 1, block(true)), frame(HEADERS, END_HEADERS, 1, block(true)), frame(PING, 0, 0, Buffer.alloc(8)), frame(HEADERS, END_HEADERS, 3, block(true)), badPing]),
        // The same without a token.
        "no token": Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS, 1, block(false)), frame(HEADERS, END_HEADERS, 1, block(false)), frame(HEADERS, END_HEADERS, 3, block(false)), badPing]),
        // The peer's own GOAWAY(NO_ERROR) first: node:http2 closes the session itself.
        "peer GOAWAY": Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(GOAWAY, 0, 0, Buffer.alloc(8)), frame(HEADERS, END_HEADERS, 1, block(false)), frame(HEADERS, END_HEADERS, 1, block(false)), frame(HEADERS, END_HEADERS, 3, block(false)), badPing]),
      };
      for (const [name, bytes] of Object.entries(reads)) {
        // Before the fix, each of these aborted echo within its first few connections.
        for (let i = 0; i < 20; i++) await rawOnce(p.address, bytes);
        assert.equal(alive(p.child.pid!), true, `echo survived 20 '${name}' connections; stderr: ${p.stderr()}`);
      }
      assert.equal(await host.check(), "0", "the host's connection still serves");
      host.session.destroy();
    } finally {
      stop(p);
    }
  });

  test("the host's HostService socket survives the same reads (a peer's GOAWAY(NO_ERROR), HEADERS, HEADERS, a frame with a bad length aborted the host)", async () => {
    const { PREFACE, frame, hpackBlock } = await fuzzH2();
    const host = await new HostProcess().start();
    try {
      const token = Object.values(host.info.tokens)[0]!;
      const block = (auth: boolean): Buffer =>
        hpackBlock([
          [":method", "POST"],
          [":scheme", "http"],
          [":path", "/plugwire.v1.HostService/LookupName"],
          [":authority", "a"],
          ["content-type", "application/grpc"],
          ["te", "trailers"],
          ...(auth ? ([["authorization", `Bearer ${token}`]] as Array<[string, string]>) : []),
        ]);
      for (const auth of [false, true]) {
        const bytes = Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(GOAWAY, 0, 0, Buffer.alloc(8)), frame(HEADERS, END_HEADERS, 1, block(auth)), frame(HEADERS, END_HEADERS, 1, block(auth)), frame(HEADERS, END_HEADERS, 3, block(auth)), frame(PING, 0, 0, Buffer.alloc(7))]);
        for (let i = 0; i < 20; i++) await rawOnce(host.socketPath, bytes);
        assert.equal(alive(host.info.pid), true, `the host survived 20 such connections (${auth ? "with" : "without"} a token)`);
      }
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });

  test("connections that got GOAWAY(PROTOCOL_ERROR), or were refused, are closed by the plugin: its open sockets go back to what the host's connection needs", async () => {
    const { PREFACE, frame, hpackBlock, parseFrames } = await fuzzH2();
    const p = await launchEcho();
    const sockets: Socket[] = [];
    try {
      const host = await hostSession(p);
      const baseline = socketFds(p.child.pid!);
      const N = 60;
      const noToken = hpackBlock([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/grpc.health.v1.Health/Check"],
        [":authority", "a"],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
      ]);
      // Half send DATA on an idle stream (GOAWAY PROTOCOL_ERROR, after which node:http2 never reads
      // them again), half make a refused call and keep its stream open; none of them ever closes its end.
      const goaways = await Promise.all(
        Array.from({ length: N }, (_, i) =>
          new Promise<number | undefined>((resolve) => {
            const s = netConnect(p.address);
            sockets.push(s);
            s.on("error", () => resolve(undefined));
            let got = Buffer.alloc(0);
            s.on("data", (d: Buffer) => {
              got = Buffer.concat([got, d]);
              const g = parseFrames(got).find((f) => f.type === GOAWAY);
              if (g && g.payload.length >= 8) resolve(g.payload.readUInt32BE(4));
            });
            s.once("connect", () =>
              s.write(
                i % 2 === 0
                  ? Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(DATA, 0, 1, Buffer.alloc(10))])
                  : Buffer.concat([PREFACE, frame(SETTINGS, 0, 0), frame(HEADERS, END_HEADERS, 1, noToken)]),
              ),
            );
          }),
        ),
      );
      assert.equal(goaways.filter((c) => c === 1).length, N / 2, "every DATA-on-idle-stream connection got GOAWAY(PROTOCOL_ERROR)");
      assert.equal(goaways.filter((c) => c === 0).length, N / 2, "every refused connection got GOAWAY(NO_ERROR)");
      const peak = socketFds(p.child.pid!);
      assert.equal(peak >= baseline + N / 2, true, `the plugin held the bad connections at first (baseline ${baseline}, now ${peak})`);
      // The plugin closes them (idle limit, refusal grace): wait for every client socket to see its close.
      const deadline = Date.now() + 30_000;
      while (sockets.some((s) => !s.destroyed && s.readyState !== "closed" && !s.readableEnded) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const open = sockets.filter((s) => !s.readableEnded && !s.destroyed).length;
      assert.equal(open, 0, `the plugin closed every bad connection (${open} of ${N} still open)`);
      const after = socketFds(p.child.pid!);
      assert.equal(after <= baseline, true, `the plugin's sockets are back to ${baseline} (now ${after})`);
      assert.equal(await host.check(), "0", "the host's connection was not touched");
      host.session.destroy();
    } finally {
      for (const s of sockets) s.destroy();
      stop(p);
    }
  });
});
