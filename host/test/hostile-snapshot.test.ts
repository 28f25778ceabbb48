/**
 * Hostile-input battery, snapshots and files (issue 12): a plugin whose
 * Snapshot or Restore lies, a plugin that declares another plugin's stateful
 * id, and snapshot files or data dirs that are damaged, unreadable, in the
 * way, or on a full disk. Real processes throughout: the hostile plugin is
 * fixtures/hostile-snap-rogue.ts, the well-behaved stateful neighbour is the
 * example counter, whose state must survive exactly.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  openSync,
  writeSync,
  closeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { pino } from "pino";
import { FileSnapshotStore, MemoryPeerDirectory, PlugwireError, createHost, hex, type HostEvents, type PluginConfig } from "../src/index.js";
import { example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const ROGUE = fixture("hostile-snap-rogue");
const COUNTER = example("counter");
const MiB = 1024 * 1024;
/** maxSnapshotBytes of every host here. */
const MAX = 8 * MiB;
/** A cut-off stream: the rogue may have pushed this much into buffers before the host cancelled it (it tries 512 MiB). */
const CUT_OFF_BOUND = 64 * MiB;
const TIMEOUT_MS = 60_000;
const text = new TextEncoder();
const decoder = new TextDecoder();

type LogRecord = Record<string, unknown> & { msg: string; plugin?: string; level: number };
type StateEvent = HostEvents["plugin:state"][0];
type Restored = HostEvents["snapshot:restored"][0];

const scratch = mkdtempSync(join(tmpdir(), "pwt-hsnap-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
let seq = 0;
const scratchPath = (what: string): string => join(scratch, `${what}-${++seq}`);

function recordingLogger(): { logger: pino.Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const logger = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        records.push(JSON.parse(chunk.toString()) as LogRecord);
        done();
      },
    }),
  );
  return { logger, records };
}

const counter = (extra: Partial<PluginConfig> = {}): PluginConfig => nodePlugin("counter", COUNTER, extra);
const rogue = (report: string, args: string[] = [], extra: Partial<PluginConfig> = {}): PluginConfig =>
  nodePlugin("rogue", ROGUE, { args: ["rogue", `--report=${report}`, `--max=${MAX}`, ...args], ...extra });

async function hits(th: TestHost, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await th.host.dispatch(peer(1), "counter.hit", new Uint8Array());
}

/** Counter's state as the host snapshots it now. */
async function counts(th: TestHost): Promise<unknown> {
  const record = await th.host.snapshot("counter");
  assert.ok(record, "counter is stateful");
  return JSON.parse(decoder.decode(record.bytes));
}

/** The host is up and the neighbour serves: one more hit is counted on top of exactly `before`. */
async function neighbourExact(th: TestHost, before: number): Promise<void> {
  await hits(th, 1);
  assert.deepEqual(await counts(th), { [hex(peer(1))]: before + 1 }, "counter's state survived exactly");
}

function statusOf(th: TestHost, name: string) {
  const s = th.host.status().find((x) => x.name === name);
  assert.ok(s, name);
  return s;
}

function store(th: TestHost): FileSnapshotStore {
  return new FileSnapshotStore({ dir: join(th.dataDir, "snapshots"), onCorrupt: () => undefined });
}

/** Every `*.snap` file of `plugin` (any id) with its bytes. */
function generationsOf(dataDir: string, plugin: string): Map<string, string> {
  const root = join(dataDir, "snapshots", "@plugins", plugin);
  const found = new Map<string, string>();
  if (!existsSync(root)) return found;
  for (const id of readdirSync(root)) {
    for (const name of readdirSync(join(root, id))) found.set(join(id, name), readFileSync(join(root, id, name)).toString("base64"));
  }
  return found;
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

function reportLines(path: string): Array<Record<string, unknown>> {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The first report line that matches, polling the file (bounded: 200 reads, 20 s). */
async function reportEvent(path: string, match: (e: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const until = Date.now() + 20_000;
  for (let i = 0; i < 200 && Date.now() < until; i++) {
    const hit = reportLines(path).find(match);
    if (hit) return hit;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no report line in ${path} matched`);
}

/** SIGKILLs a plugin's process. */
function kill(th: TestHost, name: string): void {
  const pid = statusOf(th, name).pid!;
  th.pids.add(pid);
  process.kill(pid, "SIGKILL");
}

const misordered = (what: string): string =>
  `plugin 'rogue' sent ${what} in its Snapshot stream; the stream is one header, then chunks (docs/protocol.md §10). The snapshot was discarded`;

interface LyingSnapshot {
  id: string;
  mode: string;
  input: string;
  code: string;
  message: string;
  /** The rogue streams until cancelled: check it was cut off. */
  cutOff?: boolean;
}

const lying: LyingSnapshot[] = [
  {
    id: "01",
    mode: "size-small",
    input: "a header claiming 10 bytes, then 1 MiB chunks without end",
    code: "snapshot_failed",
    message:
      "plugin 'rogue' sent more snapshot bytes than its header announced (10): at least 1048576 arrived. The snapshot was discarded at once and the previous one is kept; " +
      "the plugin must send exactly size_bytes bytes (docs/protocol.md §10)",
    cutOff: true,
  },
  {
    id: "02",
    mode: "size-large",
    input: "a header claiming 1000 bytes, then 10",
    code: "snapshot_failed",
    message:
      "plugin 'rogue' sent a truncated snapshot: its header says 1000 bytes but 10 arrived. The snapshot was discarded and the previous one is kept; " +
      "the plugin must send exactly size_bytes bytes (docs/protocol.md §10)",
  },
  {
    id: "03",
    mode: "endless",
    input: "a header claiming maxSnapshotBytes, then chunks without end past it",
    code: "snapshot_failed",
    message:
      `plugin 'rogue' sent more snapshot bytes than its header announced (${MAX}): at least ${MAX + MiB} arrived. The snapshot was discarded at once and the previous one is kept; ` +
      "the plugin must send exactly size_bytes bytes (docs/protocol.md §10)",
    cutOff: true,
  },
  {
    id: "04",
    mode: "header-over",
    input: "a header claiming 1 TiB (over maxSnapshotBytes), then chunks",
    code: "snapshot_too_large",
    message: `plugin 'rogue' produced a ${2 ** 40}-byte snapshot, over the ${MAX}-byte limit; raise maxSnapshotBytes or shrink the plugin's state`,
    cutOff: true,
  },
  { id: "05", mode: "chunk-first", input: "a chunk before the header", code: "snapshot_failed", message: misordered("a chunk before its header") },
  { id: "06", mode: "two-headers", input: "a second header (in version 9)", code: "snapshot_failed", message: misordered("a second header") },
  {
    id: "07",
    mode: "wrong-id",
    input: "a header for the neighbour's id example.counter",
    code: "snapshot_failed",
    message:
      `plugin 'rogue' sent a snapshot for stateful id "example.counter", but its Describe declared "rogue.rogue"; ` +
      "the snapshot was discarded and the previous one is kept. A plugin snapshots only its own declared id.",
  },
  {
    id: "08",
    mode: "seq-ahead",
    input: "applied_seq 1000 past anything delivered",
    code: "snapshot_failed",
    message:
      "plugin 'rogue' sent a snapshot with applied_seq 1002, but the host has sent it nothing past seq 2; " +
      "the snapshot was discarded. Its Snapshot must report the seq of the last item its state includes.",
  },
  {
    id: "09",
    mode: "version-9",
    input: "a version Describe never declared",
    code: "snapshot_failed",
    message:
      "plugin 'rogue' sent a snapshot in version 9, but its Describe lists snapshot versions 1; " +
      "the snapshot was discarded, since the plugin could not restore it. Write a version it declares.",
  },
  {
    id: "10",
    mode: "empty-message",
    input: "a message with neither header nor chunk",
    code: "snapshot_failed",
    message: misordered("a message with neither a header nor a chunk"),
  },
];

describe("hostile snapshots: Snapshot and Restore", { timeout: 300_000 }, () => {
  for (const c of lying) {
    test(`H-SNAP-${c.id}: ${c.input} -> ${c.code} naming the plugin, previous snapshot kept, plugin keeps running`, { timeout: TIMEOUT_MS }, async () => {
      const report = scratchPath("report");
      const th = testHost([counter(), rogue(report)], { maxSnapshotBytes: MAX });
      try {
        await th.host.start();
        await hits(th, 3);
        const counterBefore = await th.host.snapshot("counter");
        await th.host.dispatch(peer(2), "rogue.put", text.encode("good state")); // seq 1
        assert.equal((await th.host.snapshot("rogue"))?.appliedSeq, 1);
        const pid = statusOf(th, "rogue").pid;
        await th.host.dispatch(peer(2), "rogue.mode", text.encode(c.mode)); // seq 2

        const error = await rejection(th.host.snapshot("rogue"));
        assert.equal(error.code, c.code);
        assert.equal(error.plugin, "rogue");
        assert.equal(error.message, c.message);

        if (c.cutOff) {
          const streamed = await reportEvent(report, (e) => e.event === "streamed");
          assert.equal(streamed.cancelled, true, "the host cancelled the stream");
          assert.ok((streamed.sent as number) < CUT_OFF_BOUND, `the rogue got ${streamed.sent as number} bytes out before it was cut off`);
        }
        // The previous snapshot is kept, nothing was stored under another id.
        const kept = await store(th).load("rogue.rogue", "rogue");
        assert.equal(kept?.appliedSeq, 1);
        assert.equal(decoder.decode(kept.bytes), "good state");
        assert.deepEqual([...generationsOf(th.dataDir, "rogue").keys()], ["rogue.rogue/000000000001.snap"]);
        const counterStored = await store(th).load("example.counter", "counter");
        assert.deepEqual(counterStored && Buffer.from(counterStored.bytes), Buffer.from(counterBefore!.bytes));
        // The rogue keeps running (same process), and a good snapshot works again.
        assert.equal(statusOf(th, "rogue").state, "ready");
        assert.equal(statusOf(th, "rogue").pid, pid);
        await th.host.dispatch(peer(2), "rogue.mode", text.encode("good")); // seq 3
        assert.equal((await th.host.snapshot("rogue"))?.appliedSeq, 3);
        await neighbourExact(th, 3);
      } finally {
        await th.close();
      }
    });
  }

  test("H-SNAP-11: a final snapshot at host.stop() whose header claims 10 bytes, then chunks without end -> cut off, logged naming the plugin, previous snapshot kept", { timeout: TIMEOUT_MS }, async () => {
    const report = scratchPath("report");
    const dataDir = scratchPath("data");
    const { logger, records } = recordingLogger();
    const th = testHost([counter(), rogue(report)], { maxSnapshotBytes: MAX, logger, dataDir });
    try {
      await th.host.start();
      await hits(th, 3);
      await th.host.dispatch(peer(2), "rogue.put", text.encode("good state")); // seq 1
      await th.host.snapshot("rogue");
      await th.host.dispatch(peer(2), "rogue.mode", text.encode("size-small")); // seq 2
    } finally {
      await th.close(); // final snapshots; asserts no process is left
    }
    const failed = records.find((r) => r.msg === "snapshot failed" && r.plugin === "rogue");
    assert.equal(
      failed?.err,
      "plugin 'rogue' sent more snapshot bytes than its header announced (10): at least 1048576 arrived. The snapshot was discarded at once and the previous one is kept; " +
        "the plugin must send exactly size_bytes bytes (docs/protocol.md §10)",
    );
    const streamed = await reportEvent(report, (e) => e.event === "streamed");
    assert.ok((streamed.sent as number) < CUT_OFF_BOUND, `the rogue got ${streamed.sent as number} bytes out`);
    const files = new FileSnapshotStore({ dir: join(dataDir, "snapshots") });
    const kept = await files.load("rogue.rogue", "rogue");
    assert.equal(kept?.appliedSeq, 1);
    assert.equal(decoder.decode(kept.bytes), "good state");
    // The neighbour's final snapshot was stored all the same.
    assert.deepEqual(JSON.parse(decoder.decode((await files.load("example.counter", "counter"))!.bytes)), { [hex(peer(1))]: 3 });
  });

  test("H-SNAP-12: a second plugin declaring the neighbour's stateful id at host.start() -> invalid_config naming both, neither's state touched", { timeout: TIMEOUT_MS }, async () => {
    const dataDir = scratchPath("data");
    const report = scratchPath("report");
    const first = testHost([counter()], { dataDir });
    try {
      await first.host.start();
      await hits(first, 3);
    } finally {
      await first.close();
    }
    const counterFiles = generationsOf(dataDir, "counter");
    assert.equal(counterFiles.size, 1);

    const th = testHost([counter(), rogue(report, ["--id=example.counter"])], { dataDir });
    try {
      const error = await rejection(th.host.start());
      assert.equal(error.code, "invalid_config");
      // Which of the two describes itself second depends on timing; the message names both either way.
      const m = /^plugin '(counter|rogue)' declares stateful id 'example\.counter', which plugin '(counter|rogue)' already declares in this host; it was not started, and '(counter|rogue)' keeps running with its state untouched\. Stateful ids must be unique: give one of the plugins another id, or remove one from the config\.$/.exec(
        error.message,
      );
      assert.ok(m, error.message);
      assert.notEqual(m[1], m[2]);
      assert.equal(m[2], m[3]);
      assert.equal(error.plugin, m[1]);
    } finally {
      await th.close();
    }
    // The rogue never got counter's bytes, and counter's snapshot is byte-identical.
    for (const line of reportLines(report)) assert.notEqual(line.event, "restore", JSON.stringify(line));
    assert.deepEqual(generationsOf(dataDir, "counter"), counterFiles);

    const again = testHost([counter()], { dataDir });
    try {
      await again.host.start();
      await neighbourExact(again, 3);
    } finally {
      await again.close();
    }
  });

  test("H-SNAP-13: a plugin that declares the neighbour's stateful id at a relaunch -> its restart fails with invalid_config naming both; the neighbour keeps running, state exact", { timeout: TIMEOUT_MS }, async () => {
    const idFile = scratchPath("id");
    writeFileSync(idFile, "rogue.own");
    const report = scratchPath("report");
    const th = testHost([counter(), rogue(report, [`--id-file=${idFile}`])]);
    try {
      await th.host.start();
      await hits(th, 3);
      const counterPid = statusOf(th, "counter").pid;
      writeFileSync(idFile, "example.counter");
      const error = await rejection(th.host.restart("rogue"));
      assert.equal(error.code, "invalid_config");
      assert.equal(error.plugin, "rogue");
      assert.equal(
        error.message,
        "plugin 'rogue' declares stateful id 'example.counter', which plugin 'counter' already declares in this host; it was not started, and 'counter' " +
          "keeps running with its state untouched. Stateful ids must be unique: give one of the plugins another id, or remove one from the config.",
      );
      assert.equal(statusOf(th, "rogue").state, "failed");
      for (const line of reportLines(report)) assert.notEqual(line.id, "example.counter", `the rogue was sent nothing of counter's: ${JSON.stringify(line)}`);
      assert.equal(statusOf(th, "counter").pid, counterPid);
      await neighbourExact(th, 3);
      // Back to its own id, it starts again.
      writeFileSync(idFile, "rogue.own");
      await th.host.restart("rogue");
      assert.equal(statusOf(th, "rogue").state, "ready");
    } finally {
      await th.close();
    }
  });

  test("H-SNAP-14: a plugin declaring a stopped neighbour's id that answers Restore with UnsupportedVersion -> it is sent only its own bytes, only its own snapshots are discarded", { timeout: TIMEOUT_MS }, async () => {
    const dataDir = scratchPath("data");
    const report = scratchPath("report");
    const first = testHost([counter()], { dataDir });
    try {
      await first.host.start();
      await hits(first, 3);
    } finally {
      await first.close();
    }
    const counterFiles = generationsOf(dataDir, "counter");

    // Counter is not configured in this host: the id is free, but counter's state is not the rogue's.
    const th = testHost([rogue(report, ["--id=example.counter", "--restore=unsupported"])], { dataDir });
    try {
      await th.host.start();
      await th.host.dispatch(peer(2), "rogue.put", text.encode("rogue bytes"));
      assert.equal((await th.host.snapshot("rogue"))?.id, "example.counter");
      const reset = waitFor<HostEvents["snapshot:reset"][0]>(th.host, "snapshot:reset");
      const ready = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.plugin === "rogue" && e.state === "ready" && e.previous === "restarting");
      kill(th, "rogue");
      assert.equal((await reset).plugin, "rogue");
      await ready;
      assert.equal(await store(th).load("example.counter", "rogue"), undefined, "the rogue's own snapshots were discarded");
    } finally {
      await th.close();
    }
    const restores = reportLines(report).filter((l) => l.event === "restore");
    assert.equal(restores.length, 1);
    assert.equal(restores[0]!.bytes, "rogue bytes", "the rogue was sent its own state, never counter's");
    assert.deepEqual(generationsOf(dataDir, "counter"), counterFiles, "counter's snapshots are byte-identical");

    const again = testHost([counter()], { dataDir });
    try {
      const restored = waitFor<Restored>(again.host, "snapshot:restored");
      await again.host.start();
      assert.equal((await restored).appliedSeq, 3);
      await neighbourExact(again, 3);
    } finally {
      await again.close();
    }
  });

  test("H-SNAP-15: a stateful id too long to store (100 '/' = 300 bytes encoded) -> handshake_failed naming the plugin; the neighbour keeps running", { timeout: TIMEOUT_MS }, async () => {
    const idFile = scratchPath("id");
    writeFileSync(idFile, "rogue.own");
    const th = testHost([counter(), rogue(scratchPath("report"), [`--id-file=${idFile}`])]);
    try {
      await th.host.start();
      await hits(th, 3);
      writeFileSync(idFile, "/".repeat(100));
      const error = await rejection(th.host.restart("rogue"));
      assert.equal(error.code, "handshake_failed");
      assert.equal(error.plugin, "rogue");
      assert.equal(
        error.message,
        "plugin 'rogue' described itself wrongly: its stateful id cannot be stored: it is 100 bytes, 300 once percent-encoded for the snapshot store, over the limit of 255",
      );
      await neighbourExact(th, 3);
    } finally {
      await th.close();
    }
  });
});

interface Damage {
  id: string;
  input: string;
  damage(path: string): string;
}

const damages: Damage[] = [
  {
    id: "16",
    input: "the newest generation truncated",
    damage(path) {
      const size = statSync(path).size;
      truncateSync(path, size - 7);
      return `truncated: file has ${size - 7} bytes, record needs ${size}`;
    },
  },
  {
    id: "17",
    input: "the newest generation with one bit flipped",
    damage(path) {
      const data = readFileSync(path);
      data[data.length - 2] = data[data.length - 2]! ^ 0x10;
      writeFileSync(path, data);
      return "checksum mismatch (SHA-256)";
    },
  },
  {
    id: "18",
    input: "the newest generation replaced by a directory",
    damage(path) {
      rmSync(path);
      mkdirSync(path);
      return "not a regular file but a directory";
    },
  },
];

describe("hostile snapshots: files", { timeout: 300_000 }, () => {
  for (const d of damages) {
    test(`H-SNAP-${d.id}: ${d.input} -> the previous generation is restored, the file reported naming plugin, path and what to do`, { timeout: TIMEOUT_MS }, async () => {
      const dataDir = scratchPath("data");
      const first = testHost([counter(), rogue(scratchPath("report"))], { dataDir });
      try {
        await first.host.start();
        await hits(first, 3);
        assert.equal((await first.host.snapshot("counter"))?.appliedSeq, 3); // generation 1
        await hits(first, 2);
      } finally {
        await first.close(); // generation 2, at seq 5
      }
      const idDir = join(dataDir, "snapshots", "@plugins", "counter", "example.counter");
      const generation1 = readFileSync(join(idDir, "000000000001.snap"));
      const newest = join(idDir, "000000000002.snap");
      const reason = d.damage(newest);

      const { logger, records } = recordingLogger();
      const th = testHost([counter(), rogue(scratchPath("report"))], { dataDir, logger });
      try {
        const restored = waitFor<Restored>(th.host, "snapshot:restored", (e) => e.plugin === "counter");
        await th.host.start();
        assert.equal((await restored).appliedSeq, 3, "generation 1 was restored");
        const reports = records.filter((r) => r.path === newest);
        assert.equal(reports.length, 1, JSON.stringify(reports));
        assert.equal(reports[0]!.level, 50);
        assert.equal(reports[0]!.plugin, "counter");
        assert.equal(
          reports[0]!.msg,
          `plugin 'counter': skipped snapshot file ${newest} (${reason}); an older generation is used if one is readable. ` +
            "Payloads acked after that generation are missing from the restored state. Move the file away to inspect it.",
        );
        // The previous good generation is untouched, and the neighbour serves.
        assert.ok(readFileSync(join(idDir, "000000000001.snap")).equals(generation1));
        await th.host.dispatch(peer(2), "rogue.put", text.encode("x"));
        await neighbourExact(th, 3);
      } finally {
        await th.close();
      }
    });
  }

  test("H-SNAP-19: the newest generation cannot be opened (a symlink loop, ELOOP; the tests run as root, so chmod 000 would not stop a read) -> restore_failed naming plugin, path and what to do; no rollback, nothing deleted; fixed, the state is back exactly", { timeout: TIMEOUT_MS }, async () => {
    const { logger, records } = recordingLogger();
    const th = testHost([counter({ maxRestarts: 1 }), rogue(scratchPath("report"))], { logger });
    try {
      await th.host.start();
      await hits(th, 3);
      await th.host.snapshot("counter"); // generation 1, seq 3
      await hits(th, 2);
      await th.host.snapshot("counter"); // generation 2, seq 5
      const idDir = join(th.dataDir, "snapshots", "@plugins", "counter", "example.counter");
      const newest = join(idDir, "000000000002.snap");
      const bytes = readFileSync(newest);
      rmSync(newest);
      symlinkSync(basename(newest), newest); // points at itself

      const failed = waitFor<StateEvent>(th.host, "plugin:state", (e) => e.plugin === "counter" && e.state === "failed");
      kill(th, "counter");
      await failed;
      const expected =
        `could not read the snapshots of plugin 'counter' (stateful id 'example.counter'): ${newest} is a loop of symbolic links (ELOOP); remove the link. ` +
        "The snapshot files were left as they are; fix this and restart the plugin (host.restart('counter') or `plugwire restart counter`).";
      assert.ok(records.some((r) => r.plugin === "counter" && r.err === expected), "the relaunch failure is logged with the reason");
      const error = await rejection(th.host.restart("counter"));
      assert.equal(error.code, "restore_failed");
      assert.equal(error.plugin, "counter");
      assert.equal(error.message, expected);
      // The host and the other plugin are fine; no generation was deleted or rolled back to.
      await th.host.dispatch(peer(2), "rogue.put", text.encode("x"));
      assert.deepEqual(readdirSync(idDir).sort(), ["000000000001.snap", "000000000002.snap"]);

      rmSync(newest);
      writeFileSync(newest, bytes, { mode: 0o600 });
      const restored = waitFor<Restored>(th.host, "snapshot:restored", (e) => e.plugin === "counter");
      await th.host.restart("counter");
      assert.equal((await restored).appliedSeq, 5);
      await neighbourExact(th, 5);
    } finally {
      await th.close();
    }
  });

  test("H-SNAP-20: a data dir on a full file system (1 MiB tmpfs) -> snapshot_failed naming plugin, path and ENOSPC; the previous snapshot and the replay buffer keep the state; with space again it is exact", { timeout: TIMEOUT_MS }, async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("mounting a tmpfs needs root");
      return;
    }
    const dataDir = scratchPath("tmpfs");
    mkdirSync(dataDir);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", dataDir], { stdio: "pipe" });
    } catch (e) {
      rmSync(dataDir, { recursive: true, force: true });
      t.skip(`mount -t tmpfs is not permitted here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`);
      return;
    }
    try {
      const th = testHost([counter(), rogue(scratchPath("report"))], { dataDir });
      try {
        await th.host.start();
        await hits(th, 3);
        await th.host.snapshot("counter"); // generation 1
        // Fill the file system.
        const filler = join(dataDir, "filler");
        const fd = openSync(filler, "w");
        try {
          const block = Buffer.alloc(64 * 1024, 1);
          for (let i = 0; i < 64; i++) writeSync(fd, block); // at most 4 MiB: ENOSPC well before
          assert.fail("the 1 MiB tmpfs never filled up");
        } catch (e) {
          assert.equal((e as NodeJS.ErrnoException).code, "ENOSPC");
        } finally {
          closeSync(fd);
        }
        await hits(th, 1);
        const error = await rejection(th.host.snapshot("counter"));
        const tmp = join(dataDir, "snapshots", "@plugins", "counter", "example.counter", "000000000002.snap.tmp");
        assert.equal(error.code, "snapshot_failed");
        assert.equal(error.plugin, "counter");
        assert.equal(
          error.message,
          `could not save the snapshot of plugin 'counter' (stateful id 'example.counter'): the file system holding ${tmp} is full (ENOSPC); ` +
            "free space on it, or move the data dir to a larger one. The previous snapshot is kept, and the payloads since it stay in the host's replay buffer.",
        );
        assert.equal(existsSync(tmp), false, "no partial file is left");
        assert.equal((await store(th).load("example.counter", "counter"))?.appliedSeq, 3, "generation 1 is kept");
        assert.equal(statusOf(th, "counter").state, "ready");
        await th.host.dispatch(peer(2), "rogue.put", text.encode("x"));
        // A crash now restores generation 1 and replays seq 4 from the buffer.
        const restored = waitFor<Restored>(th.host, "snapshot:restored", (e) => e.plugin === "counter");
        kill(th, "counter");
        assert.equal((await restored).replayed, 1);
        rmSync(filler);
        await neighbourExact(th, 4);
      } finally {
        await th.close();
      }
    } finally {
      execFileSync("umount", [dataDir]);
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test("H-SNAP-21: the plugin's snapshot directory replaced by a file -> snapshot_failed naming plugin, path and what to do (EEXIST); it keeps running; moved back, snapshots work", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([counter(), rogue(scratchPath("report"))]);
    try {
      await th.host.start();
      await hits(th, 3);
      await th.host.snapshot("counter");
      const idDir = join(th.dataDir, "snapshots", "@plugins", "counter", "example.counter");
      renameSync(idDir, `${idDir}.moved`);
      writeFileSync(idDir, "in the way");
      const error = await rejection(th.host.snapshot("counter"));
      assert.equal(error.code, "snapshot_failed");
      assert.equal(error.plugin, "counter");
      assert.equal(
        error.message,
        `could not save the snapshot of plugin 'counter' (stateful id 'example.counter'): ${idDir} exists but is not a directory (EEXIST); ` +
          "move it away so that the directory can be created. The previous snapshot is kept, and the payloads since it stay in the host's replay buffer.",
      );
      assert.equal(readFileSync(idDir, "utf8"), "in the way", "the file is left alone");
      assert.equal(statusOf(th, "counter").state, "ready");
      await th.host.dispatch(peer(2), "rogue.put", text.encode("x"));
      rmSync(idDir);
      renameSync(`${idDir}.moved`, idDir);
      await neighbourExact(th, 3);
    } finally {
      await th.close();
    }
  });

  test("H-SNAP-22: a dataDir path that is a file -> createHost throws invalid_config naming the path and what to do", () => {
    const path = scratchPath("file");
    writeFileSync(path, "not a dir");
    assert.throws(
      () =>
        createHost({
          plugins: [counter()],
          dataDir: path,
          logger: pino({ level: "silent" }),
          ports: {
            peers: new MemoryPeerDirectory(),
            control: { sendDirect: () => undefined, sendRouted: () => false },
            identity: { signingSeed: () => new Uint8Array(32) },
          },
        }),
      (e: unknown) => {
        assert.ok(e instanceof PlugwireError);
        assert.equal(e.code, "invalid_config");
        assert.equal(
          e.message,
          `the host's dataDir ${path} cannot be used: ${path} exists but is not a directory (EEXIST); move it away so that the directory can be created`,
        );
        return true;
      },
    );
    assert.equal(readFileSync(path, "utf8"), "not a dir");
  });

  test("H-SNAP-23: a plugin's data dir path taken by a file -> its restart fails naming plugin, path and what to do (EEXIST); the neighbour keeps running", { timeout: TIMEOUT_MS }, async () => {
    const th = testHost([counter(), rogue(scratchPath("report"))]);
    try {
      await th.host.start();
      await hits(th, 3);
      const pluginDir = join(th.dataDir, "plugins", "rogue");
      rmSync(pluginDir, { recursive: true });
      writeFileSync(pluginDir, "in the way");
      const error = await rejection(th.host.restart("rogue"));
      assert.equal(error.code, "plugin_unavailable");
      assert.equal(error.plugin, "rogue");
      assert.equal(
        error.message,
        `plugin 'rogue' could not be started: its data dir cannot be created: ${pluginDir} exists but is not a directory (EEXIST); move it away so that the directory can be created`,
      );
      await neighbourExact(th, 3);
    } finally {
      await th.close();
    }
  });

  test("H-SNAP-24: state written under umask 0 -> snapshot files 0600, every directory of the data dir 0700", { timeout: TIMEOUT_MS }, async () => {
    const umask = process.umask(0);
    const th = testHost([counter(), rogue(scratchPath("report"))], { dataDir: join(scratchPath("data"), "fresh") });
    try {
      await th.host.start();
      await hits(th, 3);
      await th.host.snapshot("counter");
      await th.host.snapshot("rogue");
      const loose: string[] = [];
      let files = 0;
      const walk = (path: string): void => {
        const stats = statSync(path);
        const mode = stats.mode & 0o777;
        if (stats.isDirectory()) {
          if (mode !== 0o700) loose.push(`${path} ${mode.toString(8)}`);
          for (const name of readdirSync(path)) walk(join(path, name));
        } else if (path.endsWith(".snap")) {
          files++;
          if (mode !== 0o600) loose.push(`${path} ${mode.toString(8)}`);
        }
      };
      walk(th.dataDir);
      assert.equal(files, 2);
      assert.deepEqual(loose, []);
      await neighbourExact(th, 3);
    } finally {
      process.umask(umask);
      await th.close();
    }
  });
});
