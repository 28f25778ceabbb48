/**
 * host.dispatchMany: many payloads of one kind as one call, one promise for
 * all, settled once every payload is acked or failed; each payload is a
 * sequenced item like a dispatch() (order, counting, failures).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PlugwireError, hex } from "../src/index.js";
import { fixture, nodePlugin, peer, testHost, type TestHost } from "./helpers.js";
import { CMD_SRC, ProbeDriver } from "./fixtures/probe-client.js";

const encoder = new TextEncoder();

async function rejection(p: Promise<unknown>): Promise<PlugwireError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PlugwireError, `a PlugwireError, not ${String(e)}`);
    return e;
  }
  assert.fail("expected a rejection");
}

describe("host.dispatchMany", { timeout: 120_000 }, () => {
  let t: TestHost;
  let probe: ProbeDriver;

  before(async () => {
    t = testHost([
      nodePlugin("alpha", fixture("probe"), { args: ["alpha"], capabilities: ["control"] }),
      nodePlugin("small", fixture("probe"), { args: ["small"], capabilities: ["control"], maxQueued: 10 }),
    ]);
    probe = new ProbeDriver(t);
    await t.host.start();
  });

  after(async () => {
    await t?.close();
  });

  test("DM-01: 4 000 payloads in calls of 500, interleaved with plain dispatches, arrive once each and in order; each call resolves once all its payloads are acked", async () => {
    let index = 0;
    const calls: Array<Promise<void>> = [];
    for (let c = 0; c < 8; c++) {
      const bodies = Array.from({ length: 499 }, () => encoder.encode(String(++index)));
      calls.push(t.host.dispatchMany(peer(1), "alpha.data", bodies));
      calls.push(t.host.dispatch(peer(1), "alpha.data", encoder.encode(String(++index))));
    }
    await Promise.all(calls);
    assert.equal(t.host.status().find((s) => s.name === "alpha")!.inFlight, 0, "nothing left in flight once every call resolved");
    const count = await probe.askJson<{ count: number; lastIndex: number; ordered: boolean }>("alpha", { op: "count" });
    assert.deepEqual({ count: count.count, lastIndex: count.lastIndex, ordered: count.ordered }, { count: 4000, lastIndex: 4000, ordered: true });
    await t.host.dispatchMany(peer(1), "alpha.data", []);
  });

  test("DM-02: a handler error in one payload rejects the call once all are settled, counting the failures; the other payloads' effects are performed", async () => {
    const to = peer(7);
    const bodies = [
      { op: "direct", peer: hex(to), frame: "one" },
      { op: "throw", message: "boom" },
      { op: "direct", peer: hex(to), frame: "three" },
    ].map((c) => encoder.encode(JSON.stringify(c)));
    const e = await rejection(t.host.dispatchMany(CMD_SRC, "alpha.cmd", bodies));
    assert.equal(e.code, "handler_failed");
    assert.equal(e.plugin, "alpha");
    assert.match(e.message, /^1 of 3 payloads of kind 'alpha\.cmd' for plugin 'alpha' failed \(the others were acked\); the first: plugin 'alpha' failed to handle payload seq \d+ \(kind 'alpha\.cmd'\): boom$/);
    const frames = t.sent.filter((s) => s.kind === "direct" && s.peer === hex(to)).map((s) => s.frame);
    assert.deepEqual(frames, ["one", "three"]);
  });

  test("DM-03: payloads past maxQueued are refused (queue_full) and counted in the rejection; the ones queued are delivered", async () => {
    let index = 0;
    const bodies = Array.from({ length: 100 }, () => encoder.encode(String(++index)));
    const e = await rejection(t.host.dispatchMany(peer(1), "small.data", bodies));
    assert.equal(e.code, "queue_full");
    const [, failed] = /^(\d+) of 100 payloads/.exec(e.message) ?? [];
    assert.ok(Number(failed) >= 90 && Number(failed) < 100, `most of them refused: ${e.message.slice(0, 120)}`);
    const count = await probe.askJson<{ count: number; ordered: boolean }>("small", { op: "count" });
    assert.equal(count.count, 100 - Number(failed), "exactly the payloads not refused were delivered");
  });

  test("DM-04: an unclaimed kind rejects like dispatch() (no_plugin_for_kind)", async () => {
    const e = await rejection(t.host.dispatchMany(peer(1), "nobody.claims", [new Uint8Array(1), new Uint8Array(1)]));
    assert.equal(e.code, "no_plugin_for_kind");
  });
});
