/**
 * Rules of docs/protocol.md that the host enforces, with real plugin
 * processes: probe-raw (a plugin written against the wire, which can break
 * the rules) and spec-sdk (an SDK plugin whose snapshot versions a test can
 * change between launches).
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { PlugwireError, type HostEvents, type PayloadEffect } from "../src/index.js";
import { FileSnapshotStore } from "../src/snapshot/store.js";
import { fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const TIMEOUT_MS = 30_000;
const RAW = fixture("probe-raw");
const SPEC = fixture("spec-sdk");
const text = new TextEncoder();

type StateEvent = HostEvents["plugin:state"][0];

const scratch = mkdtempSync(join(tmpdir(), "pwsh-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A pino logger that keeps its records. */
function recordingLogger(): { logger: pino.Logger; records: Array<Record<string, unknown> & { msg: string }> } {
  const records: Array<Record<string, unknown> & { msg: string }> = [];
  const logger = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        records.push(JSON.parse(chunk.toString()) as Record<string, unknown> & { msg: string });
        done();
      },
    }),
  );
  return { logger, records };
}

async function rejection(work: Promise<unknown>): Promise<PlugwireError> {
  return work.then(
    () => assert.fail("expected a rejection"),
    (e: unknown) => {
      assert.ok(e instanceof PlugwireError, `expected a PlugwireError, got ${String(e)}`);
      return e;
    },
  );
}

async function withHost(th: TestHost, body: () => Promise<void>): Promise<void> {
  try {
    await th.host.start();
    await body();
  } finally {
    await th.close();
  }
}

describe("acks (spec §8)", () => {
  it("an ack past what the stream carried counts only through it, with one warning per launch naming the plugin", { timeout: TIMEOUT_MS }, async () => {
    const { logger, records } = recordingLogger();
    const th = testHost([nodePlugin("ahead", RAW, { args: ["ack-ahead"] })], { logger });
    await withHost(th, async () => {
      await th.host.dispatch(peer(1), "raw-ack-ahead.cmd", text.encode("a"));
      await th.host.dispatch(peer(1), "raw-ack-ahead.cmd", text.encode("b"));
      assert.equal(th.host.status()[0]!.lastAcked, 2, "the acks counted only through what was sent");
      const warnings = records.filter((r) => r.msg.includes("on its Deliver stream, but this launch was sent items only up to"));
      assert.equal(warnings.length, 1, "once per launch");
      assert.equal(
        warnings[0]!.msg,
        "plugin 'ahead' acked through seq 1001 on its Deliver stream, but this launch was sent items only up to seq 1; the ack counts only through 1. " +
          "An ack may cover only items its stream carried: after a Restore or on a new stream, ack nothing until an item arrives (docs/protocol.md §8). Logged once per launch.",
      );
      assert.equal(warnings[0]!.plugin, "ahead");
    });
  });
});

describe("effects (spec §8)", () => {
  it("without the control capability: none is performed, and the payload fails with permission_denied", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([nodePlugin("sender", RAW, { args: ["effects"] })]);
    await withHost(th, async () => {
      const effects: PayloadEffect[] = [];
      const error = await rejection(th.host.dispatch(peer(1), "raw-effects.cmd", text.encode("hi"), { onEffect: (e) => effects.push(e) }));
      assert.equal(error.code, "permission_denied");
      assert.equal(
        error.message,
        "plugin 'sender' is not granted the 'control' capability, so the 1 effect(s) of payload seq 1 (kind 'raw-effects.cmd') were not performed " +
          "and the item counts as failed; grant 'control' in the plugin's capabilities, or make the handler send nothing",
      );
      assert.deepEqual(th.sent, []);
      assert.equal(effects.length, 1);
      assert.equal(effects[0]!.type === "sendDirect" && effects[0]!.performed, false);
      // The plugin goes on: the next payload is delivered too (and refused alike).
      assert.equal((await rejection(th.host.dispatch(peer(1), "raw-effects.cmd", text.encode("again")))).code, "permission_denied");
    });
  });

  it("with control: performed; but never those of an outcome that also reports an error", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([nodePlugin("sender", RAW, { args: ["effects"], capabilities: ["control"] })]);
    await withHost(th, async () => {
      await th.host.dispatch(peer(1), "raw-effects.cmd", text.encode("ok"));
      const error = await rejection(th.host.dispatch(peer(1), "raw-effects.cmd", text.encode("fail")));
      assert.equal(error.code, "handler_failed");
      assert.match(error.message, /failed after sending$/);
      assert.deepEqual(
        th.sent.map((s) => s.frame),
        ["effect:ok"],
      );
    });
  });
});

describe("snapshots (spec §10, §11)", () => {
  for (const [mode, message] of [
    [
      "snapshot-v9",
      "plugin 'raw' sent a snapshot in version 9, but its Describe lists snapshot versions 1; the snapshot was discarded, since the plugin could not restore it. Write a version it declares.",
    ],
    [
      "snapshot-chunk-first",
      "plugin 'raw' sent a chunk before its header in its Snapshot stream; the stream is one header, then chunks (docs/protocol.md §10). The snapshot was discarded",
    ],
  ] as const) {
    it(`refuses a snapshot: ${mode}`, { timeout: TIMEOUT_MS }, async () => {
      const th = testHost([nodePlugin("raw", RAW, { args: [mode] })]);
      await withHost(th, async () => {
        const error = await rejection(th.host.snapshot("raw"));
        assert.equal(error.code, "snapshot_failed");
        assert.equal(error.message, message);
        const store = new FileSnapshotStore({ dir: join(th.dataDir, "snapshots") });
        assert.equal(await store.load(`probe.raw.${mode}`, "raw"), undefined, "nothing was stored");
      });
    });
  }

  it("warns when ErrorDetail.plugin is not the name Describe returns, and names the plugin by its configured name", { timeout: TIMEOUT_MS }, async () => {
    const { logger, records } = recordingLogger();
    const th = testHost([nodePlugin("raw", RAW, { args: ["snapshot-misnamed"] })], { logger });
    await withHost(th, async () => {
      const error = await rejection(th.host.snapshot("raw"));
      assert.equal(error.code, "snapshot_failed");
      assert.equal(error.plugin, "raw");
      // Never passed on as another plugin's error: the detail names the sender, the claim is kept apart.
      assert.equal(error.detail?.plugin, "raw");
      assert.equal(error.claimedPlugin, "someone-else");
      const warning = records.find((r) => r.errorDetailPlugin === "someone-else");
      assert.equal(
        warning?.msg,
        "plugin 'raw' sent a plugwire-error-bin trailer naming plugin 'someone-else', but it describes itself as 'raw-snapshot-misnamed'; " +
          "ErrorDetail.plugin must be the name Describe returns (docs/protocol.md §11)",
      );
    });
  });
});

describe("UnsupportedVersion (spec §10)", () => {
  it("the default state is the new base: items acked before the reset are never replayed into it, then or after a later crash", { timeout: 60_000 }, async () => {
    const versionsFile = join(scratch, "versions");
    writeFileSync(versionsFile, "1");
    const th = testHost([nodePlugin("spec", SPEC, { args: [`--versions-file=${versionsFile}`], capabilities: ["control"] })]);
    const sum = async (): Promise<string> => {
      const sent = th.sent.length;
      await th.host.dispatch(peer(1), "spec.get", new Uint8Array());
      return th.sent[sent]!.frame;
    };
    const relaunch = async (): Promise<void> => {
      const pid = th.host.status()[0]!.pid!;
      th.pids.add(pid);
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.plugin === "spec" && e.state === "ready");
      process.kill(pid, "SIGKILL");
      await ready;
    };
    await withHost(th, async () => {
      for (const n of ["1", "2"]) await th.host.dispatch(peer(1), "spec.add", text.encode(n)); // seqs 1, 2
      assert.equal((await th.host.snapshot("spec"))?.appliedSeq, 2);
      for (const n of ["4", "8"]) await th.host.dispatch(peer(1), "spec.add", text.encode(n)); // seqs 3, 4: replay buffer
      assert.equal(await sum(), "sum:15"); // seq 5

      // The next launch reads only version 2: the version-1 snapshot is discarded, the plugin starts from 0.
      writeFileSync(versionsFile, "2");
      const reset = waitFor<HostEvents["snapshot:reset"][0]>(th.host, "snapshot:reset");
      await relaunch();
      await reset;
      assert.equal(await sum(), "sum:0", "nothing acked before the reset is replayed"); // seq 6

      await th.host.dispatch(peer(1), "spec.add", text.encode("16")); // seq 7
      // Killed before any snapshot: nothing stored, the replay brings back only what came after the reset.
      await relaunch();
      assert.equal(await sum(), "sum:16"); // seq 8
    });
  });

  it("a snapshot taken right after the reset, before any item, covers through the reset point", { timeout: TIMEOUT_MS }, async () => {
    const dataDir = mkdtempSync(join(scratch, "data-"));
    const store = new FileSnapshotStore({ dir: join(dataDir, "snapshots") });
    await store.save({ id: "spec.sum", version: 7, appliedSeq: 40, bytes: text.encode("99") });
    const th = testHost([nodePlugin("spec", SPEC, { capabilities: ["control"] })], { dataDir });
    try {
      await withHost(th, async () => {
        const record = await th.host.snapshot("spec");
        assert.equal(record?.appliedSeq, 40, "the default state stands in for everything through the discarded snapshot");
        assert.equal(record?.version, 1);
        assert.equal((await store.load("spec.sum", "spec"))?.appliedSeq, 40);
        // New items are numbered after the discarded snapshot.
        await th.host.dispatch(peer(1), "spec.add", text.encode("1"));
        assert.equal(th.host.status()[0]!.lastAcked, 41);
      });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("socket files (spec §4)", () => {
  it("the host removes a launch's socket file once it ended, even after a SIGKILL", { timeout: TIMEOUT_MS }, async () => {
    // No warm standby: its spare would take launch number 2 whenever it is spawned, racing the relaunch.
    const th = testHost([nodePlugin("sock", SPEC, { warmStandby: false })]);
    await withHost(th, async () => {
      const socket = join(th.host.runDirectory!, "sock-1.sock");
      assert.ok(existsSync(socket), "the first launch's socket");
      const pid = th.host.status()[0]!.pid!;
      th.pids.add(pid);
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.plugin === "sock" && e.state === "ready");
      process.kill(pid, "SIGKILL");
      await ready;
      assert.equal(existsSync(socket), false, "the killed launch's socket was removed");
      assert.ok(existsSync(join(th.host.runDirectory!, "sock-2.sock")), "the new launch's socket");
    });
  });
});
