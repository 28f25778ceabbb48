/**
 * Snapshots end to end: Snapshot and Restore through real plugin processes,
 * large state, version resets, failures isolated per plugin, size limits, and
 * a host restart that resumes a stateful plugin from its stored snapshot.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { FileSnapshotStore, MemorySnapshotStore, hex, type HostEvents, type PlugwireError } from "../src/index.js";
import { alive, example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";
import { ProbeDriver } from "./fixtures/probe-client.js";
import { pattern } from "./fixtures/probe-state.js";

interface ProbeState {
  gen: number;
  size: number;
  sha256: string;
  restoredVersion: number;
  count: number;
}

const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");
const probePath = fixture("probe");
type Restored = HostEvents["snapshot:restored"][0];
type Reset = HostEvents["snapshot:reset"][0];

/** `promise`, or a rejection naming `what` once `ms` have passed. */
async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A data dir shared by consecutive hosts; removed after the test. */
function sharedDataDir(): string {
  return mkdtempSync(join(tmpdir(), "pwt-snap-"));
}

describe("snapshots, end to end", { timeout: 120_000 }, () => {
  test("a 20 MB state round-trips byte-exact through Snapshot, a restart and Restore", { timeout: 60_000 }, async () => {
    const size = 20 * 1024 * 1024;
    const t = testHost([nodePlugin("big", probePath, { args: ["big", "--stateful"], capabilities: ["control"], config: { size } })]);
    const probe = new ProbeDriver(t);
    try {
      await t.host.start();
      assert.equal(await probe.ask("big", { op: "fill", gen: 3 }, "filled"), "3");
      const expected = sha256(pattern(size, 3));
      const before = await probe.askJson<ProbeState>("big", { op: "state" });
      assert.deepEqual(before, { gen: 3, size, sha256: expected, restoredVersion: 0, count: 0 });

      const record = await t.host.snapshot("big");
      assert.ok(record);
      assert.equal(record.id, "probe.big");
      assert.equal(record.version, 1);
      assert.equal(record.bytes.byteLength, 8 + size);
      assert.equal(sha256(record.bytes.subarray(8)), expected);

      const oldPid = t.host.status()[0]!.pid!;
      const restored = waitFor<Restored>(t.host, "snapshot:restored", (e) => e.plugin === "big");
      await t.host.restart("big");
      const event = await restored;
      assert.equal(event.id, "probe.big");
      assert.equal(event.sizeBytes, 8 + size);
      assert.equal(event.version, 1);
      assert.equal(alive(oldPid), false);
      assert.notEqual(t.host.status()[0]!.pid, oldPid);

      const after = await probe.askJson<ProbeState>("big", { op: "state" });
      assert.deepEqual(after, { gen: 3, size, sha256: expected, restoredVersion: 1, count: 0 });
    } finally {
      await t.close();
    }
  });

  test("UnsupportedVersion resets the plugin to its default state and discards the snapshot", async () => {
    const dataDir = sharedDataDir();
    try {
      const ver = (versions: string) =>
        nodePlugin("ver", probePath, { args: ["ver", "--stateful", `--versions=${versions}`], capabilities: ["control"], config: { size: 4096 } });
      const v1 = testHost([ver("1")], { dataDir });
      const probe1 = new ProbeDriver(v1);
      try {
        await v1.host.start();
        await probe1.ask("ver", { op: "fill", gen: 9 }, "filled");
        await v1.host.dispatch(peer(1), "ver.data", new TextEncoder().encode("1"));
      } finally {
        await v1.close(); // snapshots on stop: version 1
      }
      const stored = await new FileSnapshotStore({ dir: join(dataDir, "snapshots") }).load("probe.ver", "ver");
      assert.equal(stored?.version, 1);
      assert.equal(stored?.appliedSeq, 2);
      assert.equal(stored?.bytes.byteLength, 8 + 4096);

      const v2 = testHost([ver("2")], { dataDir });
      const probe2 = new ProbeDriver(v2);
      let restoredEvents = 0;
      v2.host.on("snapshot:restored", () => restoredEvents++);
      try {
        const reset = waitFor<Reset>(v2.host, "snapshot:reset");
        await v2.host.start();
        assert.deepEqual(await reset, {
          plugin: "ver",
          id: "probe.ver",
          reason: "plugin 'ver' cannot read snapshot version 1 (it reads 2)",
        });
        assert.equal(restoredEvents, 0);
        assert.equal(v2.host.status()[0]?.state, "ready");
        assert.equal(existsSync(join(dataDir, "snapshots", "@plugins", "ver", "probe.ver")), false, "the unreadable snapshot is discarded");
        const state = await probe2.askJson<ProbeState>("ver", { op: "state" });
        assert.deepEqual(state, { gen: 0, size: 4096, sha256: sha256(pattern(4096, 0)), restoredVersion: 0, count: 0 });
        const record = await v2.host.snapshot("ver");
        assert.equal(record?.version, 2);
      } finally {
        await v2.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  describe("failures stay with their plugin", () => {
    /** Over 16 chunks: the host usually gives up while the plugin still waits to drain its stream. */
    const HUGE = 18 * 1024 * 1024;
    let t: TestHost;
    let probe: ProbeDriver;
    const stateful = (name: string, config: Record<string, unknown>) =>
      nodePlugin(name, probePath, { args: [name, "--stateful"], capabilities: ["control"], config });

    before(async () => {
      t = testHost(
        [
          stateful("good", { size: 1000 }),
          stateful("bad", { size: 10, failSnapshot: true }),
          stateful("huge", { size: HUGE }),
          nodePlugin("plain", probePath, { args: ["plain"], capabilities: ["control"] }),
        ],
        { maxSnapshotBytes: 2048 },
      );
      probe = new ProbeDriver(t);
      await t.host.start();
    });

    after(async () => {
      await t?.close();
    });

    test("a failing snapshot does not stop the others: snapshotAll reports ok and failed per plugin", async () => {
      const pids = t.host.status().map((s) => s.pid);
      const result = await t.host.snapshotAll();
      assert.deepEqual(
        result.ok.map((o) => [o.plugin, o.value.id, o.value.bytes.byteLength]),
        [["good", "probe.good", 1008]],
      );
      const failed = Object.fromEntries(result.failed.map((f) => [f.plugin, f.error]));
      assert.deepEqual(Object.keys(failed).sort(), ["bad", "huge"]);
      assert.equal(failed.bad?.code, "snapshot_failed");
      assert.equal(failed.bad?.message, "plugin 'bad' failed to snapshot its state: probe 'bad' was told to fail its snapshot");
      assert.equal(failed.bad?.plugin, "bad");
      assert.equal(failed.huge?.code, "snapshot_too_large");
      // Nothing restarted, and every plugin still answers.
      assert.deepEqual(
        t.host.status().map((s) => s.pid),
        pids,
      );
      for (const name of ["good", "bad", "huge", "plain"]) {
        assert.equal((await probe.askJson<ProbeState>(name, { op: "state" })).gen, 0, name);
      }
      assert.ok(existsSync(join(t.dataDir, "snapshots", "@plugins", "good", "probe.good")));
      assert.equal(existsSync(join(t.dataDir, "snapshots", "@plugins", "bad", "probe.bad")), false);
    });

    test("an oversized snapshot fails with snapshot_too_large and a clear message, and is not stored", async () => {
      await assert.rejects(t.host.snapshot("huge"), {
        name: "PlugwireError",
        code: "snapshot_too_large",
        message: `plugin 'huge' produced a ${HUGE + 8}-byte snapshot, over the 2048-byte limit; raise maxSnapshotBytes or shrink the plugin's state`,
      });
      assert.equal(existsSync(join(t.dataDir, "snapshots", "@plugins", "huge", "probe.huge")), false);
      // The plugin is unharmed; a non-stateful plugin has nothing to snapshot.
      assert.equal((await probe.askJson<ProbeState>("huge", { op: "state" })).size, HUGE);
      assert.equal(await t.host.snapshot("plain"), undefined);
    });
  });

  test("a plugin that dies or fails in the middle of a Restore fails its start cleanly; the host survives", async () => {
    const store = new MemorySnapshotStore();
    const bytes = new Uint8Array(20 * 1024 * 1024); // many chunks: the host is still writing when the plugin gives up
    const modes = ["exit-in-restore", "fail-in-restore"];
    for (const mode of modes) await store.save({ id: `probe.raw.${mode}`, version: 1, appliedSeq: 7, bytes });
    const t = testHost(
      modes.map((mode) => nodePlugin(`raw-${mode}`, fixture("probe-raw"), { args: [mode] })),
      { store },
    );
    try {
      const error = await within(20_000, "host.start()", t.host.start()).then(
        () => assert.fail("start was expected to fail"),
        (e: unknown) => e as PlugwireError,
      );
      assert.match(error.message, /^2 of 2 plugins failed to start:\n/);
      const errors = (error.cause as AggregateError).errors as PlugwireError[];
      const causes = Object.fromEntries(errors.map((e) => [e.message.includes("raw-fail-in-restore") ? "fail" : "exit", e]));
      assert.equal(causes.fail?.code, "restore_failed");
      assert.equal(causes.fail?.message, "plugin 'raw-fail-in-restore' failed to restore its state: refused right after the header");
      assert.ok(causes.exit, "the plugin that exited is reported too");
      assert.notEqual(causes.exit.code, "restore_failed");
      // A failed restore is an error, not a reset: the snapshots are kept.
      for (const mode of modes) assert.equal((await store.load(`probe.raw.${mode}`, `raw-${mode}`))?.appliedSeq, 7, mode);
      for (const s of t.host.status()) assert.equal(s.state, "failed", s.name);
    } finally {
      await t.close();
    }
  });

  test("host restart: the counter example resumes from the snapshot taken at stop (500 + 1 = 501)", async () => {
    const dataDir = sharedDataDir();
    const src = peer(4);
    const hit = new TextEncoder().encode("hit");
    try {
      const first = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      try {
        await first.host.start();
        await Promise.all(Array.from({ length: 500 }, () => first.host.dispatch(src, "counter.hit", hit)));
      } finally {
        await first.close(); // snapshots on stop
      }

      const second = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      try {
        const restored = waitFor<Restored>(second.host, "snapshot:restored");
        await second.host.start();
        const event = await restored;
        assert.equal(event.id, "example.counter");
        assert.equal(event.appliedSeq, 500);
        await second.host.dispatch(src, "counter.hit", hit);
        const record = await second.host.snapshot("counter");
        assert.ok(record);
        assert.equal(record.appliedSeq, 501);
        assert.deepEqual(JSON.parse(new TextDecoder().decode(record.bytes)), { [hex(src)]: 501 });
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
  test("background snapshots of an unchanged state are not stored again: the older generations keep their history", async () => {
    const store = new MemorySnapshotStore();
    const t = testHost([nodePlugin("counter", example("counter"))], { store, snapshotIntervalMs: 50 });
    const taken: number[] = [];
    t.host.on("snapshot:taken", (e) => taken.push(Number(e.appliedSeq)));
    const unchanged = async (): Promise<number> => {
      const m = (await t.host.metrics.registry.getSingleMetric("plugwire_snapshots_total")?.get())?.values ?? [];
      return m.find((v) => v.labels.plugin === "counter" && v.labels.result === "unchanged")?.value ?? 0;
    };
    /** Waits (bounded) until `n` more background snapshots found the state unchanged. */
    const unchangedTimes = async (n: number): Promise<void> => {
      const target = (await unchanged()) + n;
      const deadline = Date.now() + 20_000;
      while ((await unchanged()) < target) {
        if (Date.now() > deadline) throw new Error(`fewer than ${n} unchanged background snapshots within 20 s`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    try {
      await t.host.start();
      for (let i = 0; i < 3; i++) await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
      await waitFor(t.host, "snapshot:taken", (e: { appliedSeq: number }) => Number(e.appliedSeq) === 3);
      await unchangedTimes(3);
      assert.deepEqual(taken, [3], "the idle state was stored once");
      await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
      await waitFor(t.host, "snapshot:taken", (e: { appliedSeq: number }) => Number(e.appliedSeq) === 4);
      assert.deepEqual(taken, [3, 4], "a change is stored by the next background snapshot");
      const explicit = await t.host.snapshot("counter");
      assert.equal(Number(explicit?.appliedSeq), 4);
      assert.deepEqual(taken, [3, 4, 4], "an explicit snapshot is always stored");
    } finally {
      await t.close();
    }
  });
});
