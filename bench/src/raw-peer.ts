#!/usr/bin/env node
/**
 * The raw baseline's other process: a unix-socket server speaking
 * length-prefixed frames (u32 big-endian length, then the body).
 *
 * The first byte of a connection picks the mode:
 *   'S' sink: counts frames; after each read that completed at least one
 *       frame it writes the cumulative count back as a u32 (a cumulative ack).
 *   'E' echo: writes every complete frame straight back (ping-pong).
 *
 * Usage: node raw-peer.js SOCKET_PATH. Prints "ready" once listening; exits
 * when stdin closes (the bench is gone) or on SIGTERM.
 */
import { createServer, type Socket } from "node:net";
import { rmSync } from "node:fs";

const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write("usage: raw-peer SOCKET_PATH\n");
  process.exit(2);
}

/** Splits a byte stream into frames; complete-in-chunk frames are views, split frames are copied together. */
class FrameReader {
  private header = Buffer.alloc(4);
  private headerHave = 0;
  private bodyLeft = -1;
  private parts: Buffer[] = [];

  constructor(private readonly onFrame: (body: Buffer) => void) {}

  push(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.bodyLeft < 0) {
        if (this.headerHave === 0 && chunk.length - off >= 4) {
          const len = chunk.readUInt32BE(off);
          off += 4;
          if (chunk.length - off >= len) {
            this.onFrame(chunk.subarray(off, off + len));
            off += len;
            continue;
          }
          this.bodyLeft = len;
          continue;
        }
        const take = Math.min(4 - this.headerHave, chunk.length - off);
        chunk.copy(this.header, this.headerHave, off, off + take);
        this.headerHave += take;
        off += take;
        if (this.headerHave === 4) {
          this.headerHave = 0;
          this.bodyLeft = this.header.readUInt32BE(0);
          if (this.bodyLeft === 0) {
            this.bodyLeft = -1;
            this.onFrame(Buffer.alloc(0));
          }
        }
        continue;
      }
      const take = Math.min(this.bodyLeft, chunk.length - off);
      this.parts.push(chunk.subarray(off, off + take));
      this.bodyLeft -= take;
      off += take;
      if (this.bodyLeft === 0) {
        const body = this.parts.length === 1 ? Buffer.from(this.parts[0]!) : Buffer.concat(this.parts);
        this.parts = [];
        this.bodyLeft = -1;
        this.onFrame(body);
      }
    }
  }
}

function sink(socket: Socket, first: Buffer): void {
  let count = 0;
  let touched = 0;
  const reader = new FrameReader((body) => {
    count++;
    if (body.length > 0) touched ^= body[0]!;
  });
  const onData = (chunk: Buffer): void => {
    const before = count;
    reader.push(chunk);
    if (count !== before) {
      const ack = Buffer.allocUnsafe(4);
      ack.writeUInt32BE(count >>> 0, 0);
      socket.write(ack);
    }
  };
  socket.on("data", onData);
  if (first.length > 0) onData(first);
  socket.on("close", () => void touched);
}

function echo(socket: Socket, first: Buffer): void {
  const reader = new FrameReader((body) => {
    const out = Buffer.allocUnsafe(4 + body.length);
    out.writeUInt32BE(body.length, 0);
    body.copy(out, 4);
    socket.write(out);
  });
  socket.on("data", (chunk: Buffer) => reader.push(chunk));
  if (first.length > 0) reader.push(first);
}

const server = createServer((socket) => {
  socket.setNoDelay?.(true);
  socket.once("data", (chunk: Buffer) => {
    const mode = String.fromCharCode(chunk[0]!);
    const rest = chunk.subarray(1);
    if (mode === "S") sink(socket, rest);
    else if (mode === "E") echo(socket, rest);
    else socket.destroy(new Error(`unknown mode ${mode}`));
  });
  socket.on("error", () => socket.destroy());
});

function quit(): void {
  server.close();
  try {
    rmSync(socketPath!, { force: true });
  } catch {
    /* ignore */
  }
  process.exit(0);
}

process.stdin.on("end", quit);
process.stdin.on("error", quit);
process.stdin.resume();
process.on("SIGTERM", quit);

server.listen(socketPath, () => {
  process.stdout.write("ready\n");
});
