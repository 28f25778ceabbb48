/**
 * Snapshots and recovery under a real host:
 * - the file snapshot store: a newest generation that is truncated,
 *   bit-flipped, of an unknown record format, or empty is reported in the
 *   host's log (path and reason) and skipped in favour of the previous
 *   generation; the host and the plugin carry on from that state;
 * - a 100 MB snapshot saved and restored byte-exact after a crash.
 * (Forgotten peers across a crash are in recovery.test.ts and forget-polyglot.test.ts.)
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino, type Logger } from "pino";
import { hex, type HostEvents } from "../src/index.js";
import { alive, example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";
import { ProbeDriver } from "./fixtures/probe-client.js";
import { pattern } from "./fixtures/probe-state.js";

type Restored = HostEvents["snapshot:restored"][0];
type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** The host's report of a skipped generation of the counter plugin. */
const SKIPPED = (l: LogLine): boolean => l.msg?.startsWith("plugin 'counter': skipped snapshot file ") === true;
const src = peer(4);
const hit = new TextEncoder().encode("hit");
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sha256 = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex");

/** SIGKILLs the plugin's process (a crash, as far as the host knows) and waits until a new launch is ready. */
async function killAndAwaitReady(t: TestHost, name: string): Promise<void> {
  const s = t.host.status().find((p) => p.name === name);
  assert.equal(s?.state, "ready");
  assert.ok(s.pid);
  t.pids.add(s.pid);
  const ready = waitFor<HostEvents["plugin:state"][0]>(t.host, "plugin:state", (e) => e.plugin === name && e.state === "ready", 60_000);
  process.kill(s.pid, "SIGKILL");
  await ready;
  assert.equal(alive(s.pid), false);
}

function captureLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const counterPlugin = () => nodePlugin("counter", example("counter"));
const snapDir = (dataDir: string): string => join(dataDir, "snapshots", "@plugins", "counter", "example.counter");
const generations = (dataDir: string): string[] => readdirSync(snapDir(dataDir)).sort();

interface Corruption {
  name: string;
  /** Damages the file; returns the reason the host must log. */
  damage(path: string): string;
}

const corruptions: Corruption[] = [
  {
    name: "truncated",
    damage(path) {
      const size = statSync(path).size;
      truncateSync(path, size - 7);
      return `truncated: file has ${size - 7} bytes, record needs ${size}`;
    },
  },
  {
    name: "one body byte flipped",
    damage(path) {
      const data = readFileSync(path);
      data[data.length - 1] = data[data.length - 1]! ^ 0x01;
      writeFileSync(path, data);
      return "checksum mismatch (SHA-256)";
    },
  },
  {
    name: "rewritten with an unknown record format version",
    damage(path) {
      const data = readFileSync(path);
      data.writeUInt16BE(2, 6);
      writeFileSync(path, data);
      return "unknown record format version 2";
    },
  },
  {
    name: "emptied",
    damage(path) {
      writeFileSync(path, "");
      return "truncated: 0 bytes is shorter than the record header";
    },
  },
];

describe("snapshot store recovery, with a real host and the counter plugin", { timeout: 90_000 }, () => {
  /** A data dir holding two generations: {src: 10} at applied_seq 10, then {src: 15} at 15. */
  let template: string;

  before(async () => {
    template = mkdtempSync(join(tmpdir(), "pwt-store-"));
    const t = testHost([counterPlugin()], { dataDir: template });
    try {
      await t.host.start();
      for (let i = 0; i < 10; i++) await t.host.dispatch(src, "counter.hit", hit);
      assert.equal((await t.host.snapshot("counter"))?.appliedSeq, 10);
      for (let i = 0; i < 5; i++) await t.host.dispatch(src, "counter.hit", hit);
    } finally {
      await t.close(); // the snapshot on stop is generation 2
    }
    assert.deepEqual(generations(template), ["000000000001.snap", "000000000002.snap"]);
  });

  after(() => {
    if (template) rmSync(template, { recursive: true, force: true });
  });

  for (const corruption of corruptions) {
    test(`newest generation ${corruption.name}: reported, skipped, and the previous generation restored`, async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "pwt-store-"));
      try {
        cpSync(template, dataDir, { recursive: true });
        const newest = join(snapDir(dataDir), "000000000002.snap");
        const reason = corruption.damage(newest);

        const { logger, lines } = captureLogger();
        const t = testHost([counterPlugin()], { dataDir, logger });
        try {
          const restored = waitFor<Restored>(t.host, "snapshot:restored", () => true, 30_000);
          await t.host.start();
          const event = await restored;
          assert.equal(event.appliedSeq, 10, "generation 1 was restored");

          const reports = lines.filter((l) => SKIPPED(l));
          assert.equal(reports.length, 1, JSON.stringify(reports));
          assert.equal(reports[0]!.level, 50, "logged as an error");
          assert.equal(reports[0]!.path, newest);
          assert.equal(reports[0]!.reason, reason);
          assert.equal(reports[0]!.id, "example.counter");

          const status = t.host.status()[0]!;
          assert.equal(status.state, "ready");
          assert.equal(status.restarts, 0);
          // The seq space continues after the restored state, and the state is generation 1's.
          await t.host.dispatch(src, "counter.hit", hit);
          const record = await t.host.snapshot("counter");
          assert.equal(record?.appliedSeq, 11);
          assert.deepEqual(JSON.parse(decoder.decode(record!.bytes)), { [hex(src)]: 11 });
        } finally {
          await t.close();
        }

        // Newer good generations win over the damaged one, which is not reported again.
        const { logger: logger2, lines: lines2 } = captureLogger();
        const again = testHost([counterPlugin()], { dataDir, logger: logger2 });
        try {
          const restored = waitFor<Restored>(again.host, "snapshot:restored", () => true, 30_000);
          await again.host.start();
          assert.equal((await restored).appliedSeq, 11);
          assert.deepEqual(
            lines2.filter((l) => SKIPPED(l)),
            [],
          );
        } finally {
          await again.close();
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }

  test("every generation damaged: each is reported, and the plugin starts from its default state", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pwt-store-"));
    try {
      cpSync(template, dataDir, { recursive: true });
      const paths = generations(dataDir).map((name) => join(snapDir(dataDir), name));
      const reasons = paths.map((path, i) => corruptions[i]!.damage(path));

      const { logger, lines } = captureLogger();
      const t = testHost([counterPlugin()], { dataDir, logger });
      let restoredEvents = 0;
      t.host.on("snapshot:restored", () => restoredEvents++);
      try {
        await t.host.start();
        assert.equal(restoredEvents, 0);
        // Newest first.
        assert.deepEqual(
          lines.filter((l) => SKIPPED(l)).map((l) => [l.path, l.reason]),
          [
            [paths[1], reasons[1]],
            [paths[0], reasons[0]],
          ],
        );
        assert.equal(t.host.status()[0]!.state, "ready");
        await t.host.dispatch(src, "counter.hit", hit);
        const record = await t.host.snapshot("counter");
        assert.equal(record?.appliedSeq, 1);
        assert.deepEqual(JSON.parse(decoder.decode(record!.bytes)), { [hex(src)]: 1 });
      } finally {
        await t.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("size", { timeout: 120_000 }, () => {
  test("a 100 MB snapshot is saved and restored byte-exact after a crash, without holding many copies", { timeout: 120_000 }, async (ctx) => {
    const size = 100 * 1024 * 1024;
    const t = testHost([nodePlugin("big", fixture("probe"), { args: ["big", "--stateful"], capabilities: ["control"], config: { size } })]);
    const probe = new ProbeDriver(t);
    try {
      await t.host.start();
      assert.equal(await probe.ask("big", { op: "fill", gen: 7 }, "filled"), "7");
      const expected = sha256(pattern(size, 7));
      const rssBefore = process.memoryUsage().rss;

      const record = await t.host.snapshot("big");
      assert.ok(record);
      assert.equal(record.bytes.byteLength, 8 + size);
      assert.equal(sha256(record.bytes.subarray(8)), expected);
      const dir = join(t.dataDir, "snapshots", "@plugins", "big", "probe.big");
      const files = readdirSync(dir);
      assert.equal(files.length, 1);
      // Header: 64 bytes plus the id ("probe.big", 9 bytes).
      assert.equal(statSync(join(dir, files[0]!)).size, 64 + 9 + 8 + size);

      const restored = waitFor<Restored>(t.host, "snapshot:restored", () => true, 60_000);
      await killAndAwaitReady(t, "big");
      assert.equal((await restored).sizeBytes, 8 + size);
      const state = await probe.askJson<{ gen: number; size: number; sha256: string; restoredVersion: number }>("big", { op: "state" });
      assert.deepEqual(
        { gen: state.gen, size: state.size, sha256: state.sha256, restoredVersion: state.restoredVersion },
        { gen: 7, size, sha256: expected, restoredVersion: 1 },
      );
      // One snapshot and one restore of 100 MB: the host's resident memory may
      // hold a few transient copies, but not grow with the number of chunks.
      const grown = process.memoryUsage().rss - rssBefore;
      ctx.diagnostic(`host RSS grew by ${Math.round(grown / 2 ** 20)} MiB over one 100 MiB snapshot and one restore`);
      assert.ok(grown < 6 * size, `host RSS grew by ${Math.round(grown / 2 ** 20)} MiB over a 100 MiB snapshot + restore`);
    } finally {
      await t.close();
    }
  });
});
