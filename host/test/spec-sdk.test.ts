/**
 * Rules of docs/protocol.md that the TypeScript SDK keeps, checked by driving
 * a real SDK plugin process (fixtures/spec-sdk.ts) by hand, the way a host
 * or the conformance kit would: launch and handshake, then raw calls.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { execFile } from "node:child_process";
import { EventEmitter } from "node:events";
import { join } from "node:path";
import { afterEach, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import {
  Capability,
  ENV,
  MAGIC_COOKIE_VALUE,
  PlugwireError,
  health,
  type DeliverResponse,
  type DeliveryItem,
} from "@plugwire/proto";
import { createRunDir, removeRunDir } from "../src/launch/rundir.js";
import { launchPlugin, type PluginProcess } from "../src/launch/spawn.js";
import type { ParsedLine } from "../src/launch/logs.js";
import { restoreSnapshot } from "../src/snapshot/transfer.js";
import { dialPlugin, type DialedPlugin } from "../src/transport/dial.js";
import { fixture, peer, waitFor } from "./helpers.js";

const SPEC = fixture("spec-sdk");
const TIMEOUT_MS = 30_000;
const encoder = new TextEncoder();

type Sent = [seq: number, kind: string, body: string];

function items(sent: Sent[], redelivered = false): Array<Partial<DeliveryItem>> {
  return sent.map(([seq, kind, body]) => ({
    seq: BigInt(seq),
    redelivered,
    item: { case: "payload", value: { src: peer(1), kind, body: encoder.encode(body) } },
  })) as Array<Partial<DeliveryItem>>;
}

/** One Deliver stream, opened by the test as a host would. */
class Stream extends EventEmitter {
  readonly acks: DeliverResponse[] = [];
  ended = false;
  readonly call: ReturnType<DialedPlugin["plugin"]["deliver"]>;

  constructor(conn: DialedPlugin) {
    super();
    this.call = conn.plugin.deliver();
    this.call.on("data", (r: DeliverResponse) => {
      this.acks.push(r);
      this.emit("ack", r);
    });
    this.call.on("end", () => {
      this.ended = true;
      this.emit("end");
    });
    this.call.on("error", () => undefined);
  }

  send(sent: Sent[], redelivered = false): void {
    this.call.write({ items: items(sent, redelivered) } as never);
  }

  /** Resolves with the first ack (received from now on, or already) whose acked_through reaches `seq`. */
  ackThrough(seq: number): Promise<DeliverResponse> {
    const done = this.acks.find((a) => Number(a.ackedThrough) >= seq);
    if (done) return Promise.resolve(done);
    return waitFor<DeliverResponse>(this, "ack", (a) => Number(a.ackedThrough) >= seq, TIMEOUT_MS);
  }

  through(): number[] {
    return this.acks.map((a) => Number(a.ackedThrough));
  }
}

interface Driven {
  proc: PluginProcess;
  conn: DialedPlugin;
  token: string;
  logs: EventEmitter;
  exit: Promise<{ code: number | null; signal: string | null }>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** Launches spec-sdk, and calls Describe and Start (with the control capability). */
async function launchSpec(): Promise<Driven> {
  const runDir = createRunDir();
  const token = randomBytes(24).toString("base64url");
  const logs = new EventEmitter();
  let proc: PluginProcess | undefined;
  let conn: DialedPlugin | undefined;
  cleanups.push(async () => {
    conn?.close();
    if (proc) {
      proc.signalGroup("SIGKILL", true);
      await proc.exited;
    }
    removeRunDir(runDir);
  });
  proc = await launchPlugin(
    { name: "spec", command: process.execPath, args: [SPEC] },
    {
      runDir,
      hostAddress: `unix://${join(runDir, "host.sock")}`,
      token,
      instanceId: "spec-1",
      handshakeTimeoutMs: 10_000,
      maxLogLineBytes: 16 * 1024,
      maxLogLinesPerSecond: 10_000,
      stderrTailLines: 20,
      logger: pino({ level: "silent" }),
      onLog: (line: ParsedLine) => logs.emit("line", line),
    },
  );
  conn = dialPlugin(proc.handshake, token, "spec");
  await conn.plugin.describe({ protocolVersion: 1 }, { deadlineMs: TIMEOUT_MS });
  await conn.plugin.start({ dataDir: runDir, instanceId: "spec-1", configJson: "{}", capabilities: [Capability.CONTROL] }, { deadlineMs: TIMEOUT_MS });
  return { proc, conn, token, logs, exit: proc.exited };
}

/** The sum the plugin holds, read with a `spec.get` payload at `seq` on `stream`. */
async function sumAt(stream: Stream, seq: number): Promise<string> {
  stream.send([[seq, "spec.get", ""]]);
  const ack = await stream.ackThrough(seq);
  const outcome = ack.outcomes.find((o) => Number(o.seq) === seq);
  const effect = outcome?.effects[0]?.effect;
  assert.ok(effect?.case === "sendDirect", `seq ${seq} answered with an effect`);
  return new TextDecoder().decode(effect.value.frame);
}

async function rejection(work: Promise<unknown>): Promise<PlugwireError> {
  return work.then(
    () => assert.fail("the call should have failed"),
    (e: unknown) => PlugwireError.from(e),
  );
}

describe("acks on a Deliver stream (spec §8)", () => {
  it("never cover more than the stream carried, even after a Restore to a later seq", { timeout: TIMEOUT_MS }, async () => {
    const { conn } = await launchSpec();
    const first = new Stream(conn);
    first.send([
      [1, "spec.add", "2"],
      [2, "spec.add", "3"],
      [3, "spec.add", "5"],
    ]);
    await first.ackThrough(3);
    await restoreSnapshot(conn.plugin, { id: "spec.sum", version: 1, appliedSeq: 100, bytes: encoder.encode("40") }, TIMEOUT_MS);
    // A duplicate (seq 4 <= 100) on the same stream: acked, but not past what the stream carried.
    first.send([[4, "spec.add", "1000"]]);
    await first.ackThrough(4);
    assert.deepEqual(first.through().slice(-1), [4], "the ack after the Restore covers seq 4, not the restored 100");

    // A new stream: nothing is acked on it before an item arrives, and then only up to that item.
    const second = new Stream(conn);
    assert.equal(await sumAt(second, 101), "sum:40", "the restored state, without the duplicate");
    assert.deepEqual(second.through(), [101]);
  });

  it("go out after each item that took 20 ms or more, not only when the queue drains", { timeout: TIMEOUT_MS }, async () => {
    const { conn } = await launchSpec();
    const stream = new Stream(conn);
    stream.send([
      [1, "spec.slow", "30"],
      [2, "spec.slow", "30"],
      [3, "spec.slow", "30"],
      [4, "spec.slow", "30"],
    ]);
    await stream.ackThrough(4);
    assert.deepEqual(stream.through(), [1, 2, 3, 4]);
  });
});

describe("Restore (spec §10)", () => {
  for (const [label, parts, why] of [
    ["a chunk before the header", ["chunk", "header"], "the restore stream carried a chunk before its header"],
    ["a second header", ["header", "chunk", "header"], "the restore stream carried a second header"],
  ] as const) {
    it(`refuses ${label} with RestoreFailed and leaves the state untouched`, { timeout: TIMEOUT_MS }, async () => {
      const { conn } = await launchSpec();
      const stream = new Stream(conn);
      stream.send([[1, "spec.add", "7"]]);
      await stream.ackThrough(1);
      const { stream: restore, response } = conn.plugin.restore({ deadlineMs: TIMEOUT_MS });
      for (const part of parts) {
        restore.write(
          part === "header"
            ? { part: { case: "header", value: { id: "spec.sum", version: 1, appliedSeq: 5n, sizeBytes: 2n } } }
            : { part: { case: "chunk", value: encoder.encode("99") } },
        );
      }
      restore.end();
      const error = await rejection(response);
      assert.equal(error.code, "restore_failed");
      assert.equal(error.detail?.kind.case, "restoreFailed");
      assert.match(error.message, new RegExp(why));
      assert.equal(await sumAt(stream, 2), "sum:7");
    });
  }
});

describe("Describe (spec §7)", () => {
  it("refuses a protocol version other than the handshake's with FAILED_PRECONDITION", { timeout: TIMEOUT_MS }, async () => {
    const { conn } = await launchSpec();
    const error = await rejection(conn.plugin.describe({ protocolVersion: 2 }, { deadlineMs: TIMEOUT_MS }));
    assert.equal((error.cause as grpc.ServiceError).code, grpc.status.FAILED_PRECONDITION);
    assert.match(error.message, /handshook protocol 1, but Describe asked for protocol 2/);
  });
});

describe("Shutdown (spec §12)", () => {
  it("finishes the running handler, acks it, leaves queued items, answers NOT_SERVING, ends Deliver and exits 0", { timeout: TIMEOUT_MS }, async () => {
    const { conn, logs, exit } = await launchSpec();
    const stream = new Stream(conn);
    const watch = conn.health.watch({ service: "" }, { deadlineMs: TIMEOUT_MS });
    const statuses: number[] = [];
    const notServing = new Promise<void>((resolve) =>
      watch.on("data", (r: { status: number }) => {
        statuses.push(r.status);
        if (r.status === health.HealthCheckResponse_ServingStatus.NOT_SERVING) resolve();
      }),
    );
    watch.on("error", () => undefined);
    const started = waitFor<ParsedLine>(logs, "line", (l) => l.msg === "slow started", TIMEOUT_MS);
    stream.send([
      [1, "spec.add", "1"],
      [2, "spec.slow", "1000"],
      [3, "spec.add", "1"],
      [4, "spec.add", "1"],
    ]);
    await started;
    const shutdown = conn.plugin.shutdown({ deadlineMs: 5_000 }, { deadlineMs: TIMEOUT_MS });
    // NOT_SERVING comes at once, while the slow handler (1 s) still runs.
    await notServing;
    assert.deepEqual(statuses, [health.HealthCheckResponse_ServingStatus.SERVING, health.HealthCheckResponse_ServingStatus.NOT_SERVING]);
    assert.ok(Math.max(0, ...stream.through()) < 2, "seq 2 was not acked before its handler finished");
    await shutdown;
    const ended = stream.ended ? Promise.resolve() : waitFor(stream, "end", () => true, TIMEOUT_MS);
    await ended;
    assert.equal(Math.max(...stream.through()), 2, "the final ack covers the handler that ran, and nothing queued after it");
    assert.deepEqual(await exit, { code: 0, signal: null });
  });
});

/** Runs the spec-sdk fixture with a launch environment; resolves with its exit code and stderr. */
function runWithEnv(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [SPEC], { env: { PATH: process.env.PATH ?? "", ...env }, timeout: TIMEOUT_MS }, (error, _stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === "number" ? error.code : null) : 0, stderr }),
    );
    child.stdin?.end();
  });
}

function launchEnv(overrides: Record<string, string>): Record<string, string> {
  return {
    [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
    [ENV.protocolVersions]: "1",
    [ENV.socketDir]: "/tmp",
    [ENV.hostAddress]: "unix:///tmp/none.sock",
    [ENV.authToken]: "t",
    [ENV.instanceId]: `spec-env-${randomBytes(3).toString("hex")}`,
    ...overrides,
  };
}

describe("the launch environment (spec §1, §3, §4)", () => {
  for (const value of ["1,abc", "1,,2", "1,", "", " ", "+1", "1.0", "0x1", "4294967296"]) {
    it(`exits 1, naming the value, for PLUGWIRE_PROTOCOL_VERSIONS=${JSON.stringify(value)}`, { timeout: TIMEOUT_MS }, async () => {
      const { code, stderr } = await runWithEnv(launchEnv({ [ENV.protocolVersions]: value }));
      assert.equal(code, 1);
      const expected =
        value === ""
          ? "plugwire plugin: the host did not set PLUGWIRE_PROTOCOL_VERSIONS; this plugin must be started by a plugwire host.\n"
          : `plugwire plugin 'spec': PLUGWIRE_PROTOCOL_VERSIONS=${JSON.stringify(value)} is malformed; it must be decimal versions ` +
            `separated by commas, such as "1" or "1,2". The host that started this plugin is broken.\n`;
      assert.equal(stderr, expected);
    });
  }

  it("accepts spaces around the versions and picks the one it speaks", { timeout: TIMEOUT_MS }, async () => {
    const { code, stderr } = await runWithEnv(launchEnv({ [ENV.protocolVersions]: " 2 ,\t3" }));
    assert.equal(code, 1);
    assert.match(stderr, /the host accepts protocol versions 2, 3, but this plugin speaks version 1\./);
  });

  it("exits 1 for a socket dir with a space, which cannot go in the handshake line", { timeout: TIMEOUT_MS }, async () => {
    const { code, stderr } = await runWithEnv(launchEnv({ [ENV.socketDir]: "/tmp/a b" }));
    assert.equal(code, 1);
    assert.equal(
      stderr,
      `plugwire plugin 'spec': PLUGWIRE_SOCKET_DIR="/tmp/a b" must be an absolute path without whitespace or control characters, ` +
        `since the socket path goes in the handshake line. The host that started this plugin is broken.\n`,
    );
  });
});
