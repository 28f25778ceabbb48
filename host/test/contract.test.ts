/**
 * The plugwire contract end to end: a real host, real probe plugin processes
 * built on the SDK, and every RPC of PluginService, HostService and Health.
 */
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { HostService, PluginService, connect, health } from "@plugwire/proto";
import { hex, type PlugwireError } from "../src/index.js";
import { SEED, alive, fixture, nodePlugin, peer, testHost, type TestHost } from "./helpers.js";
import { ProbeDriver } from "./fixtures/probe-client.js";
import { REPORT_PEER } from "./fixtures/probe-state.js";

const ALPHA_CONFIG = { watch: true, greeting: "hi", nested: { list: [1, 2, 3], flag: false } };

interface Info {
  name: string;
  config: Record<string, unknown>;
  dataDir: string;
  dataDirExists: boolean;
  capabilities: string[];
  instanceId: string;
  env: { instanceId: string; socketDir: string; hostAddress: string; pluginName: string; token: string };
  pid: number;
}

/** Runs `call` and returns the PlugwireError it must reject with. */
async function rejection(call: () => Promise<unknown>): Promise<PlugwireError> {
  try {
    await call();
  } catch (e) {
    return e as PlugwireError;
  }
  assert.fail("the call was expected to fail");
}

describe("contract, end to end with probe plugins", { timeout: 60_000 }, () => {
  let t: TestHost;
  let probe: ProbeDriver;
  const probePath = fixture("probe");

  before(async () => {
    t = testHost([
      // tokenVia env (the legacy mode): the auth test below reads alpha's token from its environment.
      nodePlugin("alpha", probePath, { args: ["alpha"], capabilities: ["peers", "control", "identity"], config: ALPHA_CONFIG, tokenVia: "env" }),
      nodePlugin("beta", probePath, { args: ["beta", "--kinds=shared.kind"], capabilities: ["control"] }),
      nodePlugin("gamma", probePath, {
        args: ["gamma", "--stateful", "--versions=3,1", "--kinds=shared.kind"],
        capabilities: ["control"],
        config: { throwOnForget: true, size: 64 },
      }),
    ]);
    probe = new ProbeDriver(t);
    await t.host.start();
  });

  after(async () => {
    await t?.close();
  });

  test("Describe: kinds and the stateful surface reach host.status(); the first claim of a kind wins", () => {
    const status = Object.fromEntries(t.host.status().map((s) => [s.name, s]));
    assert.deepEqual(status.alpha?.kinds, ["alpha.cmd", "alpha.data"]);
    assert.deepEqual(status.beta?.kinds, ["beta.cmd", "beta.data", "shared.kind"]);
    assert.deepEqual(status.gamma?.kinds, ["gamma.cmd", "gamma.data", "shared.kind"]);
    assert.equal(status.alpha?.stateful, false);
    assert.equal(status.beta?.stateful, false);
    assert.equal(status.gamma?.stateful, true);
    for (const s of Object.values(status)) {
      assert.equal(s.state, "ready", s.name);
      assert.ok(s.pid && alive(s.pid), `${s.name} has a live pid`);
    }
    assert.equal(t.host.ownerOf("shared.kind"), "beta");
    assert.equal(t.host.ownerOf("gamma.cmd"), "gamma");
  });

  test("Start: config, capabilities, data dir and instance id reach the plugin", async () => {
    const alpha = await probe.askJson<Info>("alpha", { op: "info" });
    assert.deepEqual(alpha.config, ALPHA_CONFIG);
    assert.deepEqual(alpha.capabilities, ["control", "identity", "peers"]);
    assert.equal(alpha.dataDir, join(t.dataDir, "plugins", "alpha"));
    assert.equal(alpha.dataDirExists, true);
    assert.equal(alpha.instanceId, "alpha-1");
    assert.equal(alpha.env.instanceId, "alpha-1");
    assert.equal(alpha.env.pluginName, "alpha");
    assert.equal(alpha.pid, t.host.status().find((s) => s.name === "alpha")?.pid);

    const beta = await probe.askJson<Info>("beta", { op: "info" });
    assert.deepEqual(beta.config, {});
    assert.deepEqual(beta.capabilities, ["control"]);
    assert.equal(beta.dataDir, join(t.dataDir, "plugins", "beta"));

    const gamma = await probe.askJson<Info>("gamma", { op: "info" });
    assert.deepEqual(gamma.config, { throwOnForget: true, size: 64 });
  });

  test("Deliver: 2 000 payloads arrive once each, in seq order, and are all acked", async () => {
    const first = await probe.askJson<{ count: number; lastSeq: number; seq: number }>("alpha", { op: "count" });
    const n = 2000;
    const encoder = new TextEncoder();
    await Promise.all(
      Array.from({ length: n }, (_, i) => t.host.dispatch(peer(0x10), "alpha.data", encoder.encode(String(first.count + i + 1)))),
    );
    const last = await probe.askJson<{ count: number; lastIndex: number; lastSeq: number; ordered: boolean; seq: number }>("alpha", {
      op: "count",
    });
    assert.equal(last.count, first.count + n);
    assert.equal(last.lastIndex, first.count + n);
    assert.equal(last.ordered, true);
    // The data payloads took the seqs between the two count commands, without gaps.
    assert.equal(last.lastSeq, last.seq - 1);
    assert.equal(last.seq, first.seq + n + 1);
    const alpha = t.host.status().find((s) => s.name === "alpha")!;
    assert.equal(alpha.lastAcked, last.seq);
    assert.equal(alpha.inFlight, 0);
    assert.equal(alpha.queued, 0);
  });

  test("Deliver: a handler error fails only that payload, is not retried, and drops its effects", async () => {
    const pid = t.host.status().find((s) => s.name === "alpha")?.pid;
    const dropped = "must-not-be-sent";
    await assert.rejects(probe.cmd("alpha", { op: "direct", peer: hex(peer(3)), frame: dropped, thenThrow: true }), {
      name: "PlugwireError",
      code: "handler_failed",
      message: /^plugin 'alpha' failed to handle payload seq \d+ \(kind 'alpha\.cmd'\): probe 'alpha' was told to fail after sending$/,
    });
    await assert.rejects(probe.cmd("alpha", { op: "throw", message: "boom" }), { code: "handler_failed", message: /: boom$/ });
    // The next payload is handled by the same process.
    assert.equal((await probe.askJson<Info>("alpha", { op: "info" })).pid, pid);
    assert.equal(t.sent.filter((s) => s.frame === dropped).length, 0);
    assert.equal(t.host.status().find((s) => s.name === "alpha")?.restarts, 0);
  });

  test("SendDirect in a handler is an effect, performed once, by the time the payload is acked", async () => {
    const frames = await probe.cmd("alpha", { op: "direct", peer: hex(peer(3)), frame: "hello three" });
    assert.deepEqual(frames, []);
    assert.deepEqual(
      t.sent.filter((s) => s.frame === "hello three"),
      [{ kind: "direct", peer: hex(peer(3)), frame: "hello three" }],
    );
  });

  test("SendDirect outside a handler is a unary host call", async () => {
    await probe.cmd("alpha", { op: "later", frame: "later:from-outside" });
    const sent = await probe.sentTo(REPORT_PEER, (f) => f === "later:from-outside");
    assert.equal(sent.kind, "direct");
    assert.equal(t.sent.filter((s) => s.frame === "later:from-outside").length, 1);
  });

  test("LookupX25519 and LookupName: a known peer gives values, an unknown one gives absent fields, not an error", async () => {
    const key = new Uint8Array(32).fill(0x55);
    t.directory.apply({ type: "seen", nodeId: peer(5), x25519Pub: key, name: "five", source: "direct" });
    assert.deepEqual(await probe.askJson("alpha", { op: "lookup", peer: hex(peer(5)) }), { x25519: hex(key), name: "five" });
    assert.deepEqual(await probe.askJson("alpha", { op: "lookup", peer: hex(peer(6)) }), { x25519: null, name: null });
  });

  test("a host call without its capability gets PERMISSION_DENIED naming the plugin and the capability", async () => {
    assert.equal(
      await probe.ask("beta", { op: "lookup", peer: hex(peer(5)) }, "lookup-error"),
      "permission_denied:plugin 'beta' called LookupX25519 without the 'peers' capability; grant it in the plugin's capabilities in the host config",
    );
  });

  test("GetSigningSeed: the identity capability gets the seed, others get PERMISSION_DENIED", async () => {
    assert.equal(await probe.ask("alpha", { op: "seed" }), Buffer.from(SEED).toString("hex"));
    assert.equal(
      await probe.ask("beta", { op: "seed" }, "seed-error"),
      "permission_denied:plugin 'beta' called GetSigningSeed without the 'identity' capability; grant it in the plugin's capabilities in the host config",
    );
  });

  test("SendRouted answers whether a route existed", async () => {
    assert.equal(await probe.ask("alpha", { op: "routed", dst: hex(peer(1)), frame: "via-route" }), "true");
    assert.equal(await probe.ask("alpha", { op: "routed", dst: hex(peer(2)), frame: "no-route" }), "false");
    assert.deepEqual(
      t.sent.filter((s) => s.kind === "routed"),
      [
        { kind: "routed", peer: hex(peer(1)), frame: "via-route" },
        { kind: "routed", peer: hex(peer(2)), frame: "no-route" },
      ],
    );
  });

  test("WatchPeers: events published after the plugin subscribed reach it, in order", async () => {
    await probe.sentTo(REPORT_PEER, (f) => f === "watching:alpha");
    const key = new Uint8Array(32).fill(0x99);
    const events = [
      { type: "seen", nodeId: peer(9), x25519Pub: key, name: "nine", source: "routed" },
      { type: "seen", nodeId: peer(8), x25519Pub: key, name: "eight", source: "direct" },
      { type: "forgotten", nodeId: peer(9) },
    ] as const;
    const reported = probe.sentTo(REPORT_PEER, (f) => f.startsWith("peer-event:alpha:") && f.includes(`"type":"forgotten"`));
    for (const event of events) assert.equal(t.host.publishPeerEvent(event), 1); // only alpha watches
    await reported;
    const seen = t.sent.filter((s) => s.frame.startsWith("peer-event:alpha:")).map((s) => JSON.parse(s.frame.slice("peer-event:alpha:".length)));
    assert.deepEqual(seen, [
      { type: "seen", node: hex(peer(9)), name: "nine", x25519: hex(key), source: "routed" },
      { type: "seen", node: hex(peer(8)), name: "eight", x25519: hex(key), source: "direct" },
      { type: "forgotten", node: hex(peer(9)) },
    ]);
  });

  test("a forgotten peer reaches every plugin through its Deliver stream even when one of them throws", async () => {
    const result = await t.host.peerForgotten(peer(7));
    assert.deepEqual(result.ok.map((o) => o.plugin).sort(), ["alpha", "beta"]);
    assert.equal(result.failed.length, 1);
    assert.equal(result.failed[0]?.plugin, "gamma");
    assert.match(result.failed[0]?.error.message ?? "", /probe 'gamma' was told to fail on forgotten peers/);
    for (const name of ["alpha", "beta"]) {
      assert.deepEqual(await probe.askJson<string[]>(name, { op: "forgotten" }), [hex(peer(7))], name);
    }
    // gamma keeps working.
    assert.equal((await probe.askJson<Info>("gamma", { op: "info" })).name, "gamma");
  });

  test("auth: every call without the launch's token gets UNAUTHENTICATED, in both directions; Health answers", async () => {
    const { env } = await probe.askJson<Info>("alpha", { op: "info" });
    const pluginSocket = join(env.socketDir, `${env.instanceId}.sock`);
    assert.equal(statSync(env.socketDir).mode & 0o777, 0o700);
    assert.equal(statSync(pluginSocket).mode & 0o777, 0o600);
    const connections: Array<{ close(): void }> = [];
    const open = <C extends { close(): void }>(c: C): C => {
      connections.push(c);
      return c;
    };
    try {
      // HostService, as a plugin with a wrong token.
      const badHost = open(connect(HostService, env.hostAddress, { token: "wrong" })).client;
      const e1 = await rejection(() => badHost.lookupName({ nodeId: peer(5) }));
      assert.equal(e1.code, "unauthenticated");
      assert.match(e1.message, /^host refused LookupName: the call carried no valid plugwire auth token/);
      assert.equal((await rejection(() => badHost.getSigningSeed({}))).code, "unauthenticated");
      // With alpha's token the host answers.
      const goodHost = open(connect(HostService, env.hostAddress, { token: env.token })).client;
      assert.equal((await goodHost.lookupName({ nodeId: peer(5) })).name, "five");

      // PluginService and Health on alpha's socket.
      const target = `unix://${pluginSocket}`;
      const badPlugin = open(connect(PluginService, target, { token: "wrong" })).client;
      const e2 = await rejection(() => badPlugin.describe({ protocolVersion: 1 }));
      assert.equal(e2.code, "unauthenticated");
      assert.match(e2.message, /^plugin 'alpha' refused Describe: the call carried no valid plugwire auth token/);
      assert.equal((await rejection(() => badPlugin.start({}))).code, "unauthenticated");
      const badHealth = open(connect(health.Health, target, { token: "wrong" })).client;
      assert.equal((await rejection(() => badHealth.check({ service: "" }))).code, "unauthenticated");

      const goodHealth = open(connect(health.Health, target, { token: env.token })).client;
      assert.equal((await goodHealth.check({ service: "" }, { deadlineMs: 5_000 })).status, health.HealthCheckResponse_ServingStatus.SERVING);
      const goodPlugin = open(connect(PluginService, target, { token: env.token })).client;
      const described = await goodPlugin.describe({ protocolVersion: 1 }, { deadlineMs: 5_000 });
      assert.equal(described.name, "alpha");
      assert.equal(described.protocolVersion, 1);
      assert.equal(described.sdk?.language, "typescript");
      assert.equal(described.stateful, undefined);
    } finally {
      for (const c of connections) c.close();
    }
  });

  test("Shutdown: stop() resolves and leaves no plugin process, socket or run dir behind", async () => {
    const { env } = await probe.askJson<Info>("alpha", { op: "info" });
    const pids = t.host.status().map((s) => s.pid!);
    assert.equal(pids.length, 3);
    await t.close();
    for (const pid of pids) assert.equal(alive(pid), false, `plugin pid ${pid} is gone`);
    for (const s of t.host.status()) {
      assert.equal(s.state, "stopped", s.name);
      assert.equal(s.pid, undefined, s.name);
    }
    assert.equal(existsSync(env.socketDir), false, "the run dir is removed");
    await assert.rejects(probe.cmd("alpha", { op: "info" }), { code: "plugin_unavailable" });
  });
});
