/**
 * The fuzzers' judge of an unanswered call (fuzz/lib/sockets.mjs), which both
 * gRPC targets use: a connection whose *client* end stopped reading is a
 * "client stall" (the fuzzer redials), one whose *server* end stopped reading
 * is a hang of the server (a failure). Real unix socket pairs, read with `ss`.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";

interface Judge {
  connectionQueues(session: { socket: Socket }): { fuzzer: number; server: number } | undefined;
  judgeUnanswered(session: { socket: Socket }, o: { server: string; processes: Record<string, number>; confirmMs?: number }): Promise<{ stall: boolean; detail: string }>;
}
const judge = (): Promise<Judge> =>
  import(pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "fuzz", "lib", "sockets.mjs")).href) as Promise<Judge>;

/** A connected pair on a fresh unix socket: `client` (the fuzzer's end) and `server`. */
async function pair(): Promise<{ client: Socket; server: Socket; close: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), "pwt-judge-"));
  const listener: Server = createServer();
  await new Promise<void>((resolve) => listener.listen(join(dir, "s.sock"), resolve));
  const accepted = new Promise<Socket>((resolve) => listener.once("connection", resolve));
  const client = connect(join(dir, "s.sock"));
  await new Promise<void>((resolve) => client.once("connect", () => resolve()));
  const server = await accepted;
  return {
    client,
    server,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Polls `ss` until the pair's queues satisfy `ok` and are the same as 20 ms
 * before (a paused socket reads on up to its highWaterMark first); bounded:
 * 200 tries, 20 ms apart.
 */
async function queuesUntil(j: Judge, client: Socket, ok: (q: { fuzzer: number; server: number }) => boolean): Promise<{ fuzzer: number; server: number }> {
  let q: { fuzzer: number; server: number } | undefined;
  let before = "";
  for (let i = 0; i < 200; i++) {
    q = j.connectionQueues({ socket: client });
    if (q && ok(q) && JSON.stringify(q) === before) return q;
    before = JSON.stringify(q);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail(`the socket queues never reached the expected state: ${JSON.stringify(q)}`);
}

describe("fuzz: who stopped reading", { timeout: 60_000 }, () => {
  test("the client's end not reading while the server read everything is a client stall", async () => {
    const j = await judge();
    const p = await pair();
    try {
      // A paused net.Socket still reads up to its highWaterMark: send more than that, the rest stays in the kernel.
      p.client.pause();
      p.server.write(Buffer.alloc(1 << 20, 1));
      await queuesUntil(j, p.client, (q) => q.fuzzer > 0 && q.server === 0);
      const judged = await j.judgeUnanswered({ socket: p.client }, { server: "the test server", processes: { test: process.pid }, confirmMs: 100 });
      assert.equal(judged.stall, true, judged.detail);
      assert.match(judged.detail, /\d+ bytes unread by the fuzzer \(\d+ 100 ms before\), 0 by the test server/);
    } finally {
      p.close();
    }
  });

  test("the server's end not reading is a hang of the server, not a client stall", async () => {
    const j = await judge();
    const p = await pair();
    try {
      // Paused sockets still read up to their highWaterMark: send more than that each way.
      p.server.pause();
      p.client.write(Buffer.alloc(1 << 20, 2));
      // Even with bytes for the client waiting too: the server stopped reading.
      p.client.pause();
      p.server.write(Buffer.alloc(1 << 20, 3));
      await queuesUntil(j, p.client, (q) => q.fuzzer > 0 && q.server > 0);
      const judged = await j.judgeUnanswered({ socket: p.client }, { server: "the test server", processes: { test: process.pid }, confirmMs: 100 });
      assert.equal(judged.stall, false);
      assert.match(judged.detail, /\d+ bytes unread on the fuzzer's end, [1-9]\d* on the server's/);
    } finally {
      p.close();
    }
  });

  test("both ends empty (the server read the call and never answered) is a hang of the server", async () => {
    const j = await judge();
    const p = await pair();
    try {
      p.server.on("data", () => undefined);
      p.client.write(Buffer.alloc(500, 4));
      await queuesUntil(j, p.client, (q) => q.fuzzer === 0 && q.server === 0);
      const judged = await j.judgeUnanswered({ socket: p.client }, { server: "the test server", processes: { test: process.pid }, confirmMs: 100 });
      assert.equal(judged.stall, false);
      assert.match(judged.detail, /0 bytes unread on the fuzzer's end, 0 on the server's/);
    } finally {
      p.close();
    }
  });
});
