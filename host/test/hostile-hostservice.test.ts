/**
 * Hostile-input battery, HostService family (issue 12): calls with no, wrong,
 * stale or borrowed tokens, calls without the capability, floods past the
 * per-plugin rate limits, WatchPeers opened thousands of times or never read,
 * forged SendRouted origins, and oversized request bodies. Each case asserts
 * the exact status and message, that the host still serves its other
 * plugins, and (for the floods) that the host's memory stays bounded.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { toBinary, create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { pino } from "pino";
import {
  HostService,
  LookupNameRequestSchema,
  SendDirectRequestSchema,
  SendRoutedRequestSchema,
  connect,
  type ServiceClient,
} from "@plugwire/proto";
import { PlugwireError, hex } from "../src/index.js";
import { SEED, alive, fixture, nodePlugin, peer, testHost, type TestHost } from "./helpers.js";
import { ProbeDriver } from "./fixtures/probe-client.js";
import { HostProcess, grpcPrefix, memoryKb, rawAnswer, rawSession, rawStream, rawUnary } from "./fixtures/hostile-host-wire.js";

const S = "/plugwire.v1.HostService/";
const NO_TOKEN = (method: string): string =>
  `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`;
const DENIED = (plugin: string, method: string, capability: string): string =>
  `plugin '${plugin}' called ${method} without the '${capability}' capability; grant it in the plugin's capabilities in the host config`;

type HostServiceClient = ServiceClient<(typeof HostService)["method"]>;

/** The gRPC status and message a typed call failed with. */
async function failure(call: () => Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await call();
  } catch (e) {
    assert.ok(e instanceof PlugwireError, `a PlugwireError, not ${String(e)}`);
    const cause = e.cause as grpc.ServiceError | undefined;
    return { code: cause?.code ?? -1, message: e.message };
  }
  assert.fail("the call was expected to fail");
}

/** How a server stream ended: its error status, or "open" once its headers arrived. */
function streamOutcome(stream: grpc.ClientReadableStream<unknown>): Promise<{ code: number; message: string } | "open"> {
  return new Promise((resolve) => {
    stream.on("error", (e: grpc.ServiceError) => resolve({ code: e.code, message: e.details }));
    stream.on("metadata", () => resolve("open"));
    stream.on("data", () => undefined);
  });
}

const waitUntil = async (what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> => {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe("hostile HostService (H-HOST)", { timeout: 120_000 }, () => {
  let t: TestHost;
  let probe: ProbeDriver;
  const logs: Array<Record<string, unknown>> = [];
  const clients: Array<{ close(): void }> = [];
  const LIMITED = { hostLookupsPerSecond: 20, hostSendsPerSecond: 20, maxWatchPeersStreams: 3, maxWatchPeersBacklog: 50, maxHostCallBytes: 1024 * 1024 };

  const address = (): string => `unix://${join(t.host.runDirectory!, "host.sock")}`;
  const socketPath = (): string => join(t.host.runDirectory!, "host.sock");
  const tokenOf = (plugin: string): string => {
    for (const [token, caller] of (t.host as unknown as { tokens: Map<string, { name: string }> }).tokens) if (caller.name === plugin) return token;
    assert.fail(`no token registered for '${plugin}'`);
  };
  const as = (token: string): HostServiceClient => {
    const c = connect(HostService, address(), { token });
    clients.push(c);
    return c.client;
  };
  /** The well-behaved neighbour still serves: beta routes a frame from a handler. */
  const neighbourServes = async (): Promise<void> => {
    assert.equal(await probe.ask("beta", { op: "routed", dst: hex(peer(1)), frame: "n" }), "true", "neighbour beta still served by the host");
  };
  const warnings = (pattern: RegExp): Array<Record<string, unknown>> => logs.filter((l) => l.level === 40 && pattern.test(String(l.msg)));
  const refusedMetric = async (plugin: string, reason: string): Promise<number> => {
    const metric = await t.host.metrics.hostCallsRefused.get();
    return metric.values.find((v) => v.labels.plugin === plugin && v.labels.reason === reason)?.value ?? 0;
  };

  before(async () => {
    t = testHost(
      [
        nodePlugin("alpha", fixture("probe"), { args: ["alpha"], capabilities: ["peers", "control", "identity"] }),
        nodePlugin("beta", fixture("probe"), { args: ["beta"], capabilities: ["control"] }),
        nodePlugin("gamma", fixture("probe"), { args: ["gamma"], capabilities: [] }),
        nodePlugin("limited", fixture("probe"), { args: ["limited"], capabilities: ["peers", "control", "identity"], ...LIMITED }),
        // One limited plugin per rate-limit case, so no case waits for the bucket another one emptied to refill.
        nodePlugin("limited7", fixture("probe"), { args: ["limited7"], capabilities: ["peers", "control", "identity"], ...LIMITED }),
        nodePlugin("limited8", fixture("probe"), { args: ["limited8"], capabilities: ["peers", "control", "identity"], ...LIMITED }),
        nodePlugin("limited10", fixture("probe"), { args: ["limited10"], capabilities: ["peers", "control", "identity"], ...LIMITED }),
      ],
      { logger: pino({ level: "warn" }, { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) }) },
    );
    probe = new ProbeDriver(t);
    await t.host.start();
  });

  after(async () => {
    for (const c of clients) c.close();
    await t?.close();
  });

  test("H-HOST-01: calls with no token (every method) -> UNAUTHENTICATED naming the method and the header to send, before the body is read", async () => {
    const client = new grpc.Client(address(), grpc.credentials.createInsecure());
    clients.push(client);
    const id = (b: Buffer): Buffer => b;
    for (const method of ["LookupX25519", "LookupName", "SendDirect", "SendRouted", "GetSigningSeed"]) {
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(`${S}${method}`, id, id, Buffer.alloc(0), new grpc.Metadata(), (e) => resolve(e)),
      );
      assert.equal(err?.code, grpc.status.UNAUTHENTICATED, method);
      assert.equal(err?.details, NO_TOKEN(method));
    }
    const watch = client.makeServerStreamRequest(`${S}WatchPeers`, id, id, Buffer.alloc(0), new grpc.Metadata());
    assert.deepEqual(await streamOutcome(watch), { code: grpc.status.UNAUTHENTICATED, message: NO_TOKEN("WatchPeers") });
    // A body that is not protobuf at all is not even read without a token.
    const session = rawSession(socketPath());
    try {
      const answer = await rawUnary(session, `${S}LookupName`, undefined, Buffer.from([0xff, 0xff, 0xff]));
      assert.deepEqual([answer.status, answer.message], [grpc.status.UNAUTHENTICATED, NO_TOKEN("LookupName")]);
    } finally {
      session.close();
    }
    await neighbourServes();
  });

  test("H-HOST-02: a wrong token, or the right one in the wrong form ('bearer', extra space, trailing space) -> UNAUTHENTICATED", async () => {
    const good = tokenOf("alpha");
    for (const header of [`Bearer ${randomBytes(24).toString("base64url")}`, `bearer ${good}`, `Bearer  ${good}`, `Bearer ${good} `, good, "Bearer "]) {
      const client = new grpc.Client(address(), grpc.credentials.createInsecure());
      clients.push(client);
      const md = new grpc.Metadata();
      md.set("authorization", header);
      const err = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest(`${S}GetSigningSeed`, (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), md, (e) => resolve(e)),
      );
      assert.equal(err?.code, grpc.status.UNAUTHENTICATED, `header ${JSON.stringify(header.replace(good, "<token>"))}`);
      assert.equal(err?.details, NO_TOKEN("GetSigningSeed"));
    }
    assert.equal(hex((await as(good).getSigningSeed({})).seed), hex(SEED), "the right token in the right form works");
    await neighbourServes();
  });

  test("H-HOST-03: the token of a previous launch of the same plugin -> UNAUTHENTICATED; the new launch's token works", async () => {
    const old = tokenOf("alpha");
    await t.host.restart("alpha");
    const fresh = tokenOf("alpha");
    assert.notEqual(fresh, old, "each launch gets a new token");
    assert.deepEqual(await failure(() => as(old).getSigningSeed({})), { code: grpc.status.UNAUTHENTICATED, message: NO_TOKEN("GetSigningSeed") });
    assert.deepEqual(await failure(() => as(old).lookupName({ nodeId: peer(1) })), { code: grpc.status.UNAUTHENTICATED, message: NO_TOKEN("LookupName") });
    assert.equal(hex((await as(fresh).getSigningSeed({})).seed), hex(SEED));
    await neighbourServes();
  });

  test("H-HOST-04: another plugin's token -> the call acts as that plugin (its capabilities and limits), as documented: tokens are the identity", async () => {
    // beta lacks 'identity'; with alpha's token the host cannot tell the caller from alpha.
    assert.deepEqual(await failure(() => as(tokenOf("beta")).getSigningSeed({})), {
      code: grpc.status.PERMISSION_DENIED,
      message: DENIED("beta", "GetSigningSeed", "identity"),
    });
    assert.equal(hex((await as(tokenOf("alpha")).getSigningSeed({})).seed), hex(SEED), "alpha's token acts as alpha");
    // ...and its calls count against alpha's limits: 50 lookups with alpha's token pass alpha's default
    // 10000/s, where 'limited' (20/s) would refuse most of them.
    await Promise.all(Array.from({ length: 50 }, () => as(tokenOf("alpha")).lookupName({ nodeId: peer(1) })));
    assert.equal(await refusedMetric("alpha", "rate_limit"), 0);
    await neighbourServes();
  });

  test("H-HOST-05: calls without the capability (peers, identity, control) -> PERMISSION_DENIED naming the plugin, the method, the capability and the fix", async () => {
    const beta = as(tokenOf("beta"));
    assert.deepEqual(await failure(() => beta.lookupX25519({ nodeId: peer(1) })), { code: grpc.status.PERMISSION_DENIED, message: DENIED("beta", "LookupX25519", "peers") });
    assert.deepEqual(await failure(() => beta.lookupName({ nodeId: peer(1) })), { code: grpc.status.PERMISSION_DENIED, message: DENIED("beta", "LookupName", "peers") });
    assert.deepEqual(await failure(() => beta.getSigningSeed({})), { code: grpc.status.PERMISSION_DENIED, message: DENIED("beta", "GetSigningSeed", "identity") });
    assert.deepEqual(await streamOutcome(beta.watchPeers({})), { code: grpc.status.PERMISSION_DENIED, message: DENIED("beta", "WatchPeers", "peers") });
    const gamma = as(tokenOf("gamma"));
    const sent = t.sent.length;
    assert.deepEqual(await failure(() => gamma.sendDirect({ send: { peer: peer(1), frame: new Uint8Array(1) } })), {
      code: grpc.status.PERMISSION_DENIED,
      message: DENIED("gamma", "SendDirect", "control"),
    });
    assert.deepEqual(await failure(() => gamma.sendRouted({ dst: peer(1), frame: new Uint8Array(1) })), {
      code: grpc.status.PERMISSION_DENIED,
      message: DENIED("gamma", "SendRouted", "control"),
    });
    assert.equal(t.sent.length, sent, "nothing was sent for a denied call");
    await neighbourServes();
  });

  test("H-HOST-06: 200 concurrent lookups from a plugin limited to 20/s -> the excess gets RESOURCE_EXHAUSTED naming the plugin, the limit and the option; one warning line; counted", async () => {
    const limited = as(tokenOf("limited"));
    const logsBefore = warnings(/exceeded its limit/).length;
    const results = await Promise.allSettled(Array.from({ length: 200 }, () => limited.lookupName({ nodeId: peer(1) })));
    const refused = results.filter((r) => r.status === "rejected");
    const ok = results.length - refused.length;
    assert.ok(ok >= 1 && ok <= 40, `about one second's worth (20) passed, got ${ok}`);
    for (const r of refused) {
      const e = (r as PromiseRejectedResult).reason as PlugwireError;
      assert.equal((e.cause as grpc.ServiceError).code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(
        e.message,
        "plugin 'limited' exceeded its limit of 20 LookupX25519/LookupName/GetSigningSeed/WatchPeers calls per second (host option hostLookupsPerSecond); " +
          "LookupName was refused: retry later, or raise hostLookupsPerSecond in the plugin's host config",
      );
    }
    const lines = warnings(/exceeded its limit/).slice(logsBefore);
    assert.equal(lines.length, 1, `one warning for the whole burst, not one per call: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]!.plugin, "limited");
    assert.equal(await refusedMetric("limited", "rate_limit"), refused.length);
    // The send class has a bucket of its own, and the plugin itself still works from its handlers.
    assert.equal((await limited.sendRouted({ dst: peer(1), frame: new Uint8Array(1) })).routed, true);
    await neighbourServes();
  });

  test("H-HOST-07: a 4th concurrent WatchPeers from a plugin allowed 3 -> RESOURCE_EXHAUSTED naming the limit; a cancelled stream frees its slot; events still reach the others", async () => {
    const limited = as(tokenOf("limited7"));
    const streams = [limited.watchPeers({}), limited.watchPeers({}), limited.watchPeers({})];
    for (const s of streams) assert.equal(await streamOutcome(s), "open");
    const fourth = limited.watchPeers({});
    assert.deepEqual(await streamOutcome(fourth), {
      code: grpc.status.RESOURCE_EXHAUSTED,
      message:
        "plugin 'limited7' has 3 WatchPeers streams open, the most it may (host option maxWatchPeersStreams); " +
        "WatchPeers was refused: cancel a stream you no longer read, or raise maxWatchPeersStreams in the plugin's host config",
    });
    const got = new Promise((resolve) => streams[0]!.once("data", resolve));
    assert.ok(t.host.publishPeerEvent({ type: "forgotten", nodeId: peer(5) }) >= 3);
    await got;
    streams[1]!.cancel();
    await waitUntil("the cancelled stream's slot is free", async () => {
      const again = limited.watchPeers({});
      streams.push(again);
      return (await streamOutcome(again)) === "open";
    });
    for (const s of streams) s.cancel();
    await neighbourServes();
  });

  test("H-HOST-08: a WatchPeers stream that is never read -> after maxWatchPeersBacklog unread events it gets no more and ends with RESOURCE_EXHAUSTED (reopen and re-sync); host memory for it stays bounded", async () => {
    // A client that never reads: a 1 KiB stream window fills, then the host's writes wait.
    const session = rawSession(socketPath(), { initialWindowSize: 1024 });
    try {
      const stream = rawStream(session, `${S}WatchPeers`, tokenOf("limited8"));
      const answer = rawAnswer(stream);
      stream.end(grpcPrefix(0));
      await new Promise((resolve) => stream.once("response", resolve));
      stream.pause();
      const watching = (): number => t.host.publishPeerEvent({ type: "forgotten", nodeId: peer(6) });
      const baseline = watching();
      let published = 1;
      while (watching() === baseline) {
        published++;
        assert.ok(published < 100_000, "the stream was dropped within 100 000 events");
        // In small bursts: a burst of more than maxWatchPeersBacklog events at once is a backlog even for a reader.
        if (published % 10 === 0) await new Promise((r) => setImmediate(r));
      }
      assert.equal(await refusedMetric("limited8", "watch_backlog"), 1);
      assert.equal(warnings(/fell behind on WatchPeers/).length, 1);
      // Reading now drains what was buffered, then the status.
      stream.resume();
      const end = await answer;
      assert.equal(end.status, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        end.message,
        /^plugin 'limited8' fell behind on WatchPeers: \d+ peer events were waiting unread \(host option maxWatchPeersBacklog 50\); the host ended the stream: reopen WatchPeers and re-sync with LookupX25519\/LookupName, and read the stream promptly$/,
      );
      assert.ok(end.dataBytes < 60 * 200, `at most about backlog + window events were kept for it (${end.dataBytes} bytes)`);
    } finally {
      session.destroy();
    }
    await neighbourServes();
  });

  test("H-HOST-09: 2 000 SendRouted calls with forged origins -> each INVALID_ARGUMENT naming the plugin and the seq; nothing sent, nothing remembered; a real origin still works", async () => {
    const alpha = as(tokenOf("alpha"));
    const routedBefore = t.sent.filter((s) => s.kind === "routed").length;
    const seqs = Array.from({ length: 2_000 }, (_, i) => BigInt(1_000_000 + i * 7919));
    const results = await Promise.allSettled(seqs.map((seq, i) => alpha.sendRouted({ dst: peer(1), frame: new Uint8Array([i]), origin: { seq, index: i % 3 } })));
    for (const [i, r] of results.entries()) {
      assert.equal(r.status, "rejected");
      const e = (r as PromiseRejectedResult).reason as PlugwireError;
      assert.equal((e.cause as grpc.ServiceError).code, grpc.status.INVALID_ARGUMENT);
      assert.equal(
        e.message,
        `plugin 'alpha' called SendRouted with origin seq ${seqs[i]} (index ${i % 3}), which is not an item in flight to it; nothing was sent. ` +
          "Set origin only inside a payload handler, to the seq of the item it handles, and await the call before the handler returns (docs/protocol.md §8)",
      );
    }
    assert.equal(t.sent.filter((s) => s.kind === "routed").length, routedBefore, "no forged call was sent");
    const runners = (t.host as unknown as { runners: Array<{ name: string; channel: { routedAnswers: Map<number, unknown> } }> }).runners;
    assert.equal(runners.find((r) => r.name === "alpha")!.channel.routedAnswers.size, 0, "no forged origin is remembered");
    // A SendRouted from inside a handler (origin = its item) is accepted.
    assert.equal(await probe.ask("alpha", { op: "routed", dst: hex(peer(1)), frame: "real" }), "true");
    await neighbourServes();
  });

  test("H-HOST-10: requests over maxHostCallBytes in transfer at once (8 SendDirect of 512 KiB, limit 1 MiB) -> the excess gets RESOURCE_EXHAUSTED naming the option; the bytes are given back", async () => {
    const body = Buffer.from(toBinary(SendDirectRequestSchema, create(SendDirectRequestSchema, { send: { peer: peer(2), frame: new Uint8Array(512 * 1024) } })));
    const session = rawSession(socketPath());
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, () => rawUnary(session, `${S}SendDirect`, tokenOf("limited10"), body)));
      const refused = answers.filter((a) => a.status === grpc.status.RESOURCE_EXHAUSTED);
      assert.ok(refused.length >= 1, `some were refused: ${JSON.stringify(answers.map((a) => a.status))}`);
      for (const a of answers) assert.ok(a.status === grpc.status.OK || a.status === grpc.status.RESOURCE_EXHAUSTED, JSON.stringify(a));
      for (const a of refused) {
        assert.equal(
          a.message,
          "plugin 'limited10' had more than 1048576 bytes of HostService requests in transfer at once (host option maxHostCallBytes); " +
            "SendDirect was refused: send fewer large calls at once, or raise maxHostCallBytes in the plugin's host config",
        );
      }
      const debug = (t.host as unknown as { service: { debugState(): { requestBytes: Record<string, number> } } }).service.debugState();
      assert.equal(debug.requestBytes.limited10, 0, "every byte counted was given back");
      // One at a time is always fine.
      assert.equal((await rawUnary(session, `${S}SendDirect`, tokenOf("limited10"), body)).status, grpc.status.OK);
    } finally {
      session.close();
    }
    await neighbourServes();
  });

  test("H-HOST-11: a 16 MiB request of millions of tiny fields, with a valid token -> refused by the field budget before decoding (INTERNAL), quickly; the host serves on", async () => {
    const body = Buffer.alloc(16 * 1024 * 1024 - 64);
    for (let i = 0; i < body.length; i += 2) body[i] = 0x78; // field 15, varint 0, again and again
    const session = rawSession(socketPath());
    try {
      const started = performance.now();
      const answer = await rawUnary(session, `${S}LookupName`, tokenOf("alpha"), body);
      assert.deepEqual([answer.status, answer.message], [grpc.status.INTERNAL, "Error deserializing request"]);
      assert.ok(performance.now() - started < 10_000, "refused within 10 s");
      // A real request with the same token is still fine.
      const ok = await rawUnary(session, `${S}LookupName`, tokenOf("alpha"), Buffer.from(toBinary(LookupNameRequestSchema, create(LookupNameRequestSchema, { nodeId: peer(1) }))));
      assert.equal(ok.status, grpc.status.OK);
    } finally {
      session.close();
    }
    await neighbourServes();
  });
});

describe("hostile HostService floods against a host process (H-HOST)", { timeout: 180_000 }, () => {
  // The probe sent 200 000 (1.63 GB retained before the fix); 20 000 keep the suite's time sane, and
  // `retained` shows that no call leaves anything behind, whatever their number.
  test("H-HOST-12: 20 000 SendRouted calls with forged origins -> all refused, no entry retained, host peak RSS flat after a warm-up (< 64 MB growth)", async (ctx) => {
    const host = await new HostProcess({ hostSendsPerSecond: 0 }).start();
    try {
      const session = rawSession(host.socketPath);
      const token = host.info.tokens.victim!;
      let invalid = 0;
      let next = 0;
      const TOTAL = Number(process.env.PLUGWIRE_FORGED_CALLS ?? 20_000);
      // The first 2 000 calls warm the host up (its heap grows to its working size under load, some 90 MB,
      // flat from then on); the bound is on the growth over the other 18 000.
      const WARM = 2_000;
      let before: { hwm: number } | undefined;
      const worker = async (): Promise<void> => {
        while (next < TOTAL) {
          if (next === WARM && !before) before = memoryKb(host.info.pid);
          const i = next++;
          const body = Buffer.from(
            toBinary(SendRoutedRequestSchema, create(SendRoutedRequestSchema, { dst: peer(1), frame: new Uint8Array(64), origin: { seq: BigInt(10_000_000 + i), index: i % 1000 } })),
          );
          const answer = await rawUnary(session, `${S}SendRouted`, token, body);
          if (answer.status === grpc.status.INVALID_ARGUMENT && answer.message.includes("which is not an item in flight to it")) invalid++;
          else assert.fail(`call ${i}: ${JSON.stringify(answer)}`);
        }
      };
      await Promise.all(Array.from({ length: 64 }, worker));
      session.close();
      assert.equal(invalid, TOTAL);
      const { status } = await host.ask<{ status: { retained: number; ready: string[] } }>({ op: "status" });
      assert.equal(status.retained, 0, "no forged origin is remembered");
      assert.deepEqual(status.ready, ["ready", "ready"]);
      const afterKb = memoryKb(host.info.pid);
      ctx.diagnostic(`host peak RSS grew by ${Math.round((afterKb.hwm - before!.hwm) / 1024)} MB after the warm-up`);
      assert.ok(afterKb.hwm - before!.hwm < 64 * 1024, `peak RSS grew by ${Math.round((afterKb.hwm - before!.hwm) / 1024)} MB after the warm-up`);
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });

  test("H-HOST-13: WatchPeers opened 10 000 times by one plugin -> 16 streams, 9 984 RESOURCE_EXHAUSTED; events still flow; host peak RSS bounded after the first 1 000 (< 100 MB growth); the slots come back", async (ctx) => {
    const host = await new HostProcess().start();
    try {
      const session = rawSession(host.socketPath);
      session.setMaxListeners(0);
      const token = host.info.tokens.victim!;
      const done: Array<{ status: number | undefined; message: string }> = [];
      const open = async (count: number): Promise<void> => {
        for (let i = 0; i < count; i++) {
          const stream = rawStream(session, `${S}WatchPeers`, token);
          void rawAnswer(stream).then((x) => done.push(x));
          stream.end(grpcPrefix(0));
          if (i % 500 === 499) await new Promise((r) => setImmediate(r));
        }
      };
      // The first 1 000 opens warm the host up; the bound is on the growth over the other 9 000.
      await open(1_000);
      await waitUntil("984 streams were refused", () => done.length >= 984, 60_000);
      const before = memoryKb(host.info.pid);
      await open(9_000);
      // The refused ones end at once; the 16 accepted ones stay open.
      await waitUntil("9 984 streams were refused", () => done.length >= 9_984, 60_000);
      for (const a of done) {
        assert.equal(a.status, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(a.message, /^plugin 'victim' has 16 WatchPeers streams open, the most it may \(host option maxWatchPeersStreams\)/);
      }
      const { status } = await host.ask<{ status: { debug: { watchers: Record<string, number> } } }>({ op: "status" });
      assert.equal(status.debug.watchers.victim, 16);
      assert.equal(done.length, 9_984, "exactly 16 stayed open");
      const { published } = await host.ask<{ published: number }>({ op: "publish", n: 10 });
      assert.equal(published, 16, "the 16 open streams get events");
      const afterKb = memoryKb(host.info.pid);
      ctx.diagnostic(`host peak RSS grew by ${Math.round((afterKb.hwm - before.hwm) / 1024)} MB over the last 9 000 opens`);
      // Measured: RSS swings between some 125 and 165 MB with the garbage collector however many streams are
      // refused (40 000 tried), so the peak creeps up by tens of MB; before the limits, 10 000 took 165 MB more.
      assert.ok(afterKb.hwm - before.hwm < 100 * 1024, `peak RSS grew by ${Math.round((afterKb.hwm - before.hwm) / 1024)} MB`);
      session.destroy();
      await waitUntil("the slots are given back when the connection closes", async () => {
        const s = await host.ask<{ status: { debug: { watchers: Record<string, number> } } }>({ op: "status" });
        return s.status.debug.watchers.victim === 0;
      });
      await host.neighbourServes();
    } finally {
      await host.stop();
    }
  });
});
