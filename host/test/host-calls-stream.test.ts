/**
 * HostService.Calls: the unary host calls multiplexed on one stream with
 * correlation ids (docs/protocol.md §9.1). Each call on it is admitted as its
 * unary twin is (token, capability, rate limit, request bytes) and fails alone
 * with the same status; the TS SDK uses it from handlers.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { HostService, connect, type CallsResponse } from "@plugwire/proto";
import { hex } from "../src/index.js";
import { SEED, fixture, nodePlugin, peer, testHost, type TestHost } from "./helpers.js";
import { ProbeDriver } from "./fixtures/probe-client.js";

const NO_TOKEN = (method: string): string =>
  `host refused ${method}: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')`;

type CallInit = Parameters<ReturnType<ReturnType<typeof connect<(typeof HostService)["method"]>>["client"]["calls"]>["write"]>[0];

/** One Calls stream opened by the test: send() resolves with the response of that id; `ended` with the stream's final status. */
interface CallsStream {
  send(call: Omit<CallInit, "id">): Promise<CallsResponse>;
  ended: Promise<{ code: number; details: string }>;
  close(): void;
}

describe("HostService.Calls stream", { timeout: 120_000 }, () => {
  let t: TestHost;
  let probe: ProbeDriver;
  const closers: Array<() => void> = [];
  const LIMITED = { hostLookupsPerSecond: 20, hostSendsPerSecond: 20, maxHostCallBytes: 1024 * 1024 };

  const address = (): string => `unix://${join(t.host.runDirectory!, "host.sock")}`;
  const tokenOf = (plugin: string): string => {
    for (const [token, caller] of (t.host as unknown as { tokens: Map<string, { name: string }> }).tokens) if (caller.name === plugin) return token;
    assert.fail(`no token registered for '${plugin}'`);
  };
  const debugState = (): { requestBytes: Record<string, number>; streamCalls: Record<string, number> } =>
    (t.host as unknown as { service: { debugState(): { requestBytes: Record<string, number>; streamCalls: Record<string, number> } } }).service.debugState();

  const open = (token: string): CallsStream => {
    const conn = connect(HostService, address(), { token });
    const stream = conn.client.calls();
    const waiting = new Map<bigint, (r: CallsResponse) => void>();
    let next = 1n;
    stream.on("data", (r: CallsResponse) => {
      waiting.get(r.id)?.(r);
      waiting.delete(r.id);
    });
    const ended = new Promise<{ code: number; details: string }>((resolve) => {
      stream.on("error", (e: grpc.ServiceError) => resolve({ code: e.code, details: e.details }));
      stream.on("end", () => resolve({ code: grpc.status.OK, details: "" }));
    });
    const close = (): void => {
      stream.cancel();
      conn.close();
    };
    closers.push(close);
    return {
      send: (call) =>
        new Promise((resolve) => {
          const id = next++;
          waiting.set(id, resolve);
          stream.write({ ...call, id } as CallInit);
        }),
      ended,
      close,
    };
  };

  before(async () => {
    t = testHost([
      nodePlugin("alpha", fixture("probe"), { args: ["alpha"], capabilities: ["peers", "control", "identity"] }),
      nodePlugin("beta", fixture("probe"), { args: ["beta"], capabilities: ["control"] }),
      nodePlugin("limited", fixture("probe"), { args: ["limited"], capabilities: ["peers", "control", "identity"], ...LIMITED }),
    ]);
    probe = new ProbeDriver(t);
    await t.host.start();
  });

  after(async () => {
    for (const close of closers) close();
    await t?.close();
  });

  test("HC-01: calls answer by id with the unary answers; a call without its capability fails alone with the unary status and message", async () => {
    const s = open(tokenOf("beta"));
    const [seed, routed, lookup] = await Promise.all([
      s.send({ call: { case: "getSigningSeed", value: {} } }),
      s.send({ call: { case: "sendRouted", value: { dst: peer(1), frame: new Uint8Array([1]) } } }),
      s.send({ call: { case: "lookupName", value: { nodeId: peer(1) } } }),
    ]);
    assert.equal(seed.result.case, "error");
    assert.deepEqual(seed.result.value, {
      $typeName: "plugwire.v1.CallError",
      code: grpc.status.PERMISSION_DENIED,
      message: "plugin 'beta' called GetSigningSeed without the 'identity' capability; grant it in the plugin's capabilities in the host config",
    });
    assert.equal(lookup.result.case, "error");
    assert.equal(lookup.result.case === "error" && lookup.result.value.code, grpc.status.PERMISSION_DENIED);
    assert.equal(routed.result.case, "sendRouted", "the stream goes on after a failed call");
    const a = open(tokenOf("alpha"));
    const answer = await a.send({ call: { case: "getSigningSeed", value: {} } });
    assert.equal(answer.result.case, "getSigningSeed");
    assert.equal(answer.result.case === "getSigningSeed" && hex(answer.result.value.seed), hex(SEED));
  });

  test("HC-02: a stream opened without a valid token ends UNAUTHENTICATED; one opened with a launch's token ends UNAUTHENTICATED at its next call once that launch is gone", async () => {
    const none = open("not-a-token");
    void none.send({ call: { case: "getSigningSeed", value: {} } });
    assert.deepEqual(await none.ended, { code: grpc.status.UNAUTHENTICATED, details: NO_TOKEN("Calls") });
    const old = open(tokenOf("alpha"));
    assert.equal((await old.send({ call: { case: "getSigningSeed", value: {} } })).result.case, "getSigningSeed");
    await t.host.restart("alpha");
    void old.send({ call: { case: "getSigningSeed", value: {} } });
    assert.deepEqual(await old.ended, { code: grpc.status.UNAUTHENTICATED, details: NO_TOKEN("GetSigningSeed") });
    const fresh = open(tokenOf("alpha"));
    assert.equal((await fresh.send({ call: { case: "getSigningSeed", value: {} } })).result.case, "getSigningSeed");
  });

  test("HC-03: a burst of 200 lookups from a plugin limited to 20/s -> the excess fails with RESOURCE_EXHAUSTED naming the limit and the option; the stream serves on", async () => {
    const s = open(tokenOf("limited"));
    const answers = await Promise.all(Array.from({ length: 200 }, () => s.send({ call: { case: "lookupName", value: { nodeId: peer(1) } } })));
    const refused = answers.filter((a) => a.result.case === "error");
    const served = answers.filter((a) => a.result.case === "lookupName");
    assert.ok(served.length >= 1 && served.length <= 40, `about 20 served, got ${served.length}`);
    assert.equal(refused.length + served.length, 200);
    const first = refused[0]!.result;
    assert.equal(first.case === "error" && first.value.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      first.case === "error" && first.value.message,
      "plugin 'limited' exceeded its limit of 20 LookupX25519/LookupName/GetSigningSeed/WatchPeers calls per second (host option hostLookupsPerSecond); LookupName was refused: retry later, or raise hostLookupsPerSecond in the plugin's host config",
    );
    // Sends have their own bucket.
    assert.equal((await s.send({ call: { case: "sendRouted", value: { dst: peer(1), frame: new Uint8Array([1]) } } })).result.case, "sendRouted");
  });

  test("HC-04: SendDirect calls over maxHostCallBytes in progress at once -> the excess fails with RESOURCE_EXHAUSTED naming the option; the bytes are given back", async () => {
    const s = open(tokenOf("limited"));
    // The control port answers later than the calls arrive, so they overlap.
    const port = t.host as unknown as { options: { ports: { control: { sendDirect: (p: Uint8Array, f: Uint8Array) => unknown } } } };
    const control = port.options.ports.control;
    const original = control.sendDirect;
    const gate: Array<() => void> = [];
    control.sendDirect = (p, f) => new Promise<void>((resolve) => gate.push(() => resolve(void original.call(control, p, f))));
    try {
      const big = new Uint8Array(512 * 1024);
      const settled: CallsResponse[] = [];
      const pending = Array.from({ length: 4 }, () =>
        s.send({ call: { case: "sendDirect", value: { send: { peer: peer(2), frame: big } } } }).then((r) => {
          settled.push(r);
          return r;
        }),
      );
      // One call (512 KiB + its peer) is held at the control port; a second would pass 1 MiB,
      // so the other three are refused as they arrive, without waiting for it.
      const deadline = Date.now() + 30_000;
      while ((gate.length === 0 || settled.length < 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(gate.length, 1, "one send reached the control port");
      assert.equal(settled.length, 3, "the other three were answered while it was held");
      const inTransfer = debugState().requestBytes.limited ?? 0;
      assert.equal(inTransfer, 512 * 1024 + 32, "the held call's bytes are counted");
      for (const r of settled) {
        assert.equal(r.result.case, "error");
        assert.equal(r.result.case === "error" && r.result.value.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(r.result.case === "error" ? r.result.value.message : "", /host option maxHostCallBytes\); SendDirect was refused/);
      }
      control.sendDirect = original;
      for (const release of gate.splice(0)) release();
      const answers = await Promise.all(pending);
      assert.equal(answers.filter((a) => a.result.case === "sendDirect").length, 1, "the held one was performed");
      assert.equal(debugState().requestBytes.limited, 0, "the bytes were given back");
    } finally {
      control.sendDirect = original;
    }
  });

  test("HC-05: the TS SDK makes handler host calls on the Calls stream (lookups, SendRouted, the seed)", async () => {
    const before = debugState().streamCalls.alpha ?? 0;
    assert.deepEqual(JSON.parse(await probe.ask("alpha", { op: "lookup", peer: hex(peer(1)) })), { x25519: null, name: null });
    assert.equal(await probe.ask("alpha", { op: "routed", dst: hex(peer(1)), frame: "x" }), "true");
    assert.equal(await probe.ask("alpha", { op: "seed" }), hex(SEED));
    assert.equal(await probe.ask("beta", { op: "seed" }, "seed-error"), "permission_denied:plugin 'beta' called GetSigningSeed without the 'identity' capability; grant it in the plugin's capabilities in the host config");
    assert.equal((debugState().streamCalls.alpha ?? 0) - before, 4, "two lookups, one SendRouted and the seed went on the stream");
  });
});
