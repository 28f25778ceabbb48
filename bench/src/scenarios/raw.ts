/**
 * The raw baseline: two Node processes over a unix socket with hand-rolled
 * length-prefixed frames, no protobuf, no gRPC. The bench process sends, the
 * raw peer (bench/src/raw-peer.ts) receives.
 */
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { killTracked, now, percentile, progress, RAW_PEER, removeTempDir, seededBytes, sortedCopy, spawnTracked, tempDir, withTimeout } from "../lib.js";
import type { Scenario } from "./types.js";

/** Outstanding frames allowed, as in the dispatch scenarios: ≤ 8000, and ≤ 64 MiB. */
export function windowFor(size: number): number {
  return Math.max(16, Math.min(8000, Math.floor((64 * 1024 * 1024) / size)));
}

export function waitForLine(stream: Readable, text: string, ms: number): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve) => {
      let buf = "";
      const onData = (chunk: Buffer): void => {
        buf += chunk.toString("utf8");
        if (buf.includes(text)) {
          stream.off("data", onData);
          resolve();
        }
      };
      stream.on("data", onData);
    }),
    ms,
    `waiting for '${text}'`,
  );
}

function open(path: string, mode: "S" | "E"): Promise<Socket> {
  return withTimeout(
    new Promise<Socket>((resolve, reject) => {
      const socket = connect(path, () => {
        socket.setNoDelay?.(true);
        socket.write(mode);
        resolve(socket);
      });
      socket.once("error", reject);
    }),
    5_000,
    "connecting to the raw peer",
  );
}

/** A sink connection: pipelined frames, cumulative u32 acks back. */
class SinkConn {
  private acked = 0;
  private sentTotal = 0;
  private ackBuf = Buffer.alloc(0);
  private onAck: (() => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      const data = this.ackBuf.length ? Buffer.concat([this.ackBuf, chunk]) : chunk;
      const whole = data.length - (data.length % 4);
      if (whole >= 4) this.acked = data.readUInt32BE(whole - 4);
      this.ackBuf = whole < data.length ? Buffer.from(data.subarray(whole)) : Buffer.alloc(0);
      this.onAck?.();
    });
  }

  /** Sends `total` frames of `body`, ≤ `window` unacked; resolves when all are acked or after `maxMs`. */
  run(body: Buffer, total: number, window: number, maxMs: number): Promise<{ count: number; elapsedMs: number; timedOut: boolean }> {
    const base = this.sentTotal;
    this.sentTotal += total;
    const frame = 4 + body.length;
    const perBuffer = Math.max(1, Math.floor((256 * 1024) / frame));
    const socket = this.socket;
    return new Promise((resolve) => {
      let sent = 0;
      let finished = false;
      const start = now();
      const finish = (timedOut: boolean): void => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        this.onAck = undefined;
        resolve({ count: this.acked - base, elapsedMs: now() - start, timedOut });
      };
      const timer = setTimeout(() => finish(true), maxMs);
      const refill = (): void => {
        const done = this.acked - base;
        if (done >= total) {
          finish(false);
          return;
        }
        let n = Math.min(window - (sent - done), total - sent);
        if (n <= 0) return;
        socket.cork();
        if (body.length >= 4096) {
          // Large frames: the header and the body as separate writes (writev), no copy.
          for (; n > 0; n--, sent++) {
            const header = Buffer.allocUnsafe(4);
            header.writeUInt32BE(body.length, 0);
            socket.write(header);
            socket.write(body);
          }
        }
        while (n > 0) {
          const k = Math.min(n, perBuffer);
          const buf = Buffer.allocUnsafe(k * frame);
          for (let i = 0; i < k; i++) {
            buf.writeUInt32BE(body.length, i * frame);
            body.copy(buf, i * frame + 4);
          }
          socket.write(buf);
          n -= k;
          sent += k;
        }
        socket.uncork();
      };
      this.onAck = refill;
      refill();
    });
  }
}

/** Ping-pong of one frame at a time; returns round trips in µs. */
async function pingPong(socket: Socket, body: Buffer, n: number, maxMs: number): Promise<number[]> {
  const frame = Buffer.allocUnsafe(4 + body.length);
  frame.writeUInt32BE(body.length, 0);
  body.copy(frame, 4);
  let received = 0;
  let waiting: (() => void) | undefined;
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    if (received >= frame.length && waiting) {
      received -= frame.length;
      const w = waiting;
      waiting = undefined;
      w();
    }
  };
  socket.on("data", onData);
  const times: number[] = [];
  const deadline = now() + maxMs;
  try {
    for (let i = 0; i < n && now() < deadline; i++) {
      const t0 = now();
      await withTimeout(
        new Promise<void>((resolve) => {
          waiting = resolve;
          socket.write(frame);
        }),
        5_000,
        "raw echo",
      );
      times.push((now() - t0) * 1000);
    }
  } finally {
    socket.off("data", onData);
  }
  return times;
}

export const raw: Scenario = {
  name: "raw",
  describe: "raw unix-socket baseline: pipelined 256 B / 16 KiB / 64 KiB frames with cumulative acks, and 256 B ping-pong",
  async run(ctx) {
    const dir = tempDir("pwraw-");
    const path = join(dir, "raw.sock");
    const child = spawnTracked(process.execPath, [RAW_PEER, path], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      await waitForLine(child.stdout!, "ready", 10_000);
      const configs = [
        { name: "raw_uds_msgs_per_s", size: 256, count: ctx.quick ? 60_000 : 400_000, unit: "msgs/s" },
        { name: "raw_uds_16k_mb_per_s", size: 16 * 1024, count: ctx.quick ? 5_000 : 30_000, unit: "MB/s" },
        { name: "raw_uds_64k_mb_per_s", size: 64 * 1024, count: ctx.quick ? 1_500 : 8_000, unit: "MB/s" },
      ];
      for (const cfg of configs) {
        const body = seededBytes(cfg.size, 1000 + cfg.size);
        const window = windowFor(cfg.size);
        const socket = await open(path, "S");
        const conn = new SinkConn(socket);
        try {
          await conn.run(body, Math.ceil(cfg.count / 4), window, 20_000); // warm-up
          const values: number[] = [];
          for (let rep = 0; rep < ctx.reps; rep++) {
            const r = await conn.run(body, cfg.count, window, 30_000);
            const perS = r.count / (r.elapsedMs / 1000);
            values.push(cfg.unit === "MB/s" ? (perS * cfg.size) / 1e6 : perS);
            progress(`  ${cfg.name} rep ${rep + 1}/${ctx.reps}: ${Math.round(values.at(-1)!)} ${cfg.unit}${r.timedOut ? " (time bound hit)" : ""}`);
          }
          ctx.results.add({
            name: cfg.name,
            unit: cfg.unit,
            values,
            better: "higher",
            info: { frameBytes: cfg.size, framesPerRep: cfg.count, window, ack: "cumulative u32 after every read that completed a frame" },
          });
        } finally {
          socket.destroy();
        }
      }
      const socket = await open(path, "E");
      try {
        const body = seededBytes(256, 256);
        await pingPong(socket, body, 1000, 5_000);
        const n = ctx.quick ? 3_000 : 10_000;
        const p50s: number[] = [];
        const p99s: number[] = [];
        for (let rep = 0; rep < ctx.reps; rep++) {
          const times = sortedCopy(await pingPong(socket, body, n, 20_000));
          p50s.push(percentile(times, 50));
          p99s.push(percentile(times, 99));
          progress(`  raw_uds_rtt rep ${rep + 1}/${ctx.reps}: p50 ${p50s.at(-1)!.toFixed(1)} µs, p99 ${p99s.at(-1)!.toFixed(1)} µs`);
        }
        ctx.results.add({ name: "raw_uds_rtt_p50_us", unit: "µs", values: p50s, better: "lower", info: { roundTripsPerRep: n, frameBytes: 256 } });
        ctx.results.add({ name: "raw_uds_rtt_p99_us", unit: "µs", values: p99s, better: "lower", info: { roundTripsPerRep: n, frameBytes: 256 } });
      } finally {
        socket.destroy();
      }
    } finally {
      child.stdin?.end();
      await killTracked(child);
      removeTempDir(dir);
    }
  },
};
