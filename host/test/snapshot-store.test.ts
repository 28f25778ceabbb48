import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import * as fs from "node:fs";
import * as os from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { PlugwireError } from "@plugwire/proto";
import {
  FileSnapshotStore,
  MemorySnapshotStore,
  statefulIdProblem,
  type CorruptSnapshot,
  type SnapshotRecord,
} from "../src/snapshot/store.js";

let root: string;
let dirCount = 0;

before(() => {
  root = fs.mkdtempSync(join(os.tmpdir(), "plugwire-snapshot-store-"));
});

after(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

/** A fresh store directory for one test, plus the corrupt reports it received. */
function fileStore(generations?: number): { store: FileSnapshotStore; dir: string; corrupt: CorruptSnapshot[] } {
  const dir = join(root, `store-${++dirCount}`);
  const corrupt: CorruptSnapshot[] = [];
  const store = new FileSnapshotStore({ dir, generations, onCorrupt: (c) => corrupt.push(c) });
  return { store, dir, corrupt };
}

function record(appliedSeq: number, id = "example.counter"): SnapshotRecord {
  return { id, version: 2, appliedSeq, bytes: Buffer.from(`state after ${appliedSeq}`) };
}

/** `r` with its bytes as a Buffer, so records compare with deepEqual whatever their byte type. */
function plain(r: SnapshotRecord | undefined): SnapshotRecord | undefined {
  return r && { ...r, bytes: Buffer.from(r.bytes) };
}

/** Generation files of `id` (all of them stored under `dir/id`), newest first. */
function snapFiles(dir: string, id = "example.counter"): string[] {
  return fs
    .readdirSync(join(dir, id))
    .sort()
    .reverse()
    .map((name) => join(dir, id, name));
}

/** Saves seq 1 and 2, returns the path of the newest generation (seq 2). */
async function twoGenerations(store: FileSnapshotStore, dir: string): Promise<string> {
  await store.save(record(1));
  await store.save(record(2));
  const [newest] = snapFiles(dir);
  assert.ok(newest);
  return newest;
}

describe("FileSnapshotStore", () => {
  test("round trip, one .snap file per generation", async () => {
    const { store, dir, corrupt } = fileStore();
    const saved: SnapshotRecord = { id: "example.counter", version: 7, appliedSeq: 42, bytes: Buffer.from([0, 1, 2, 255]) };
    await store.save(saved);
    assert.deepEqual(plain(await store.load("example.counter")), saved);
    assert.deepEqual(fs.readdirSync(join(dir, "example.counter")), ["000000000001.snap"]);
    assert.equal(await store.load("other"), undefined);
    assert.deepEqual(corrupt, []);
  });

  test("empty body round trips", async () => {
    const { store } = fileStore();
    await store.save({ id: "e", version: 0, appliedSeq: 0, bytes: new Uint8Array() });
    assert.deepEqual(plain(await store.load("e")), { id: "e", version: 0, appliedSeq: 0, bytes: Buffer.alloc(0) });
  });

  test("keeps only the newest N generations", async () => {
    const { store, dir } = fileStore(2);
    for (let seq = 1; seq <= 5; seq++) await store.save(record(seq));
    assert.deepEqual(fs.readdirSync(join(dir, "example.counter")).sort(), ["000000000004.snap", "000000000005.snap"]);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 5);
  });

  test("concurrent saves of one id are serialized in call order", async () => {
    const { store, dir, corrupt } = fileStore();
    await Promise.all([1, 2, 3, 4, 5].map((seq) => store.save(record(seq))));
    assert.equal(snapFiles(dir).length, 3);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 5);
    assert.deepEqual(corrupt, []);
  });

  test("truncated newest generation falls back to the previous one", async () => {
    const { store, dir, corrupt } = fileStore();
    const newest = await twoGenerations(store, dir);
    fs.truncateSync(newest, fs.statSync(newest).size - 3);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 1);
    assert.equal(corrupt.length, 1);
    assert.equal(corrupt[0]?.id, "example.counter");
    assert.equal(corrupt[0]?.path, newest);
    assert.match(corrupt[0]?.reason ?? "", /truncated/);
  });

  test("newest generation truncated inside the header falls back too", async () => {
    const { store, dir, corrupt } = fileStore();
    const newest = await twoGenerations(store, dir);
    fs.truncateSync(newest, 20);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 1);
    assert.match(corrupt[0]?.reason ?? "", /truncated/);
  });

  test("one flipped body byte in the newest generation is caught by the checksum", async () => {
    const { store, dir, corrupt } = fileStore();
    const newest = await twoGenerations(store, dir);
    const data = fs.readFileSync(newest);
    data[data.length - 1]! ^= 0x01;
    fs.writeFileSync(newest, data);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 1);
    assert.equal(corrupt.length, 1);
    assert.equal(corrupt[0]?.path, newest);
    assert.match(corrupt[0]?.reason ?? "", /checksum/);
  });

  test("unknown record format version is skipped", async () => {
    const { store, dir, corrupt } = fileStore();
    const newest = await twoGenerations(store, dir);
    const data = fs.readFileSync(newest);
    data.writeUInt16BE(99, 6);
    fs.writeFileSync(newest, data);
    assert.equal((await store.load("example.counter"))?.appliedSeq, 1);
    assert.equal(corrupt.length, 1);
    assert.equal(corrupt[0]?.path, newest);
    assert.match(corrupt[0]?.reason ?? "", /format version 99/);
  });

  test("a record of another id is skipped", async () => {
    const { store, dir, corrupt } = fileStore();
    await store.save(record(1, "a"));
    await store.save(record(9, "b"));
    fs.copyFileSync(snapFiles(dir, "b")[0]!, join(dir, "a", "000000000002.snap"));
    assert.equal((await store.load("a"))?.appliedSeq, 1);
    assert.match(corrupt[0]?.reason ?? "", /record is for id "b"/);
  });

  test("all generations corrupt → undefined, each one reported", async () => {
    const { store, dir, corrupt } = fileStore();
    await twoGenerations(store, dir);
    const files = snapFiles(dir);
    for (const path of files) fs.writeFileSync(path, "not a snapshot");
    assert.equal(await store.load("example.counter"), undefined);
    assert.deepEqual(
      corrupt.map((c) => c.path),
      files,
    );
    assert.match(corrupt[0]?.reason ?? "", /magic/);
  });

  test("leftover .tmp files are ignored and removed", async () => {
    const { store, dir, corrupt } = fileStore();
    await store.save(record(1));
    const tmp = join(dir, "example.counter", "000000000002.snap.tmp");
    fs.writeFileSync(tmp, "half-written");
    assert.equal((await store.load("example.counter"))?.appliedSeq, 1);
    assert.equal(fs.existsSync(tmp), false);
    assert.deepEqual(corrupt, []);
  });

  test("discard drops every generation", async () => {
    const { store, dir } = fileStore();
    await twoGenerations(store, dir);
    await store.save(record(1, "kept"));
    await store.discard("example.counter");
    assert.equal(await store.load("example.counter"), undefined);
    assert.equal(fs.existsSync(join(dir, "example.counter")), false);
    assert.equal((await store.load("kept"))?.appliedSeq, 1);
    await store.discard("never-saved");
  });

  test("ids with odd characters round trip, each in its own directory under dir", async () => {
    const { store, dir } = fileStore();
    const ids = ["a/b c", "..", ".", "%2F", "a%2Fb%20c", "ünï/☃"];
    for (const [i, id] of ids.entries()) await store.save(record(i + 1, id));
    for (const [i, id] of ids.entries()) assert.deepEqual(plain(await store.load(id)), record(i + 1, id), id);
    assert.ok(fs.statSync(join(dir, "a%2Fb%20c")).isDirectory());
    assert.equal(fs.readdirSync(dir).length, ids.length);
    assert.equal(fs.readdirSync(root).filter((n) => !n.startsWith("store-")).length, 0);
  });

  test("a 20 MB record round trips byte-exact", async () => {
    const { store } = fileStore();
    const bytes = randomBytes(20 * 1024 * 1024);
    await store.save({ id: "big", version: 1, appliedSeq: 123456789, bytes });
    const loaded = await store.load("big");
    assert.equal(loaded?.appliedSeq, 123456789);
    assert.ok(loaded && Buffer.from(loaded.bytes.buffer, loaded.bytes.byteOffset, loaded.bytes.byteLength).equals(bytes));
  });

  test("invalid records and options are rejected", async () => {
    const { store } = fileStore();
    assert.throws(() => store.save({ ...record(1), id: "" }), TypeError);
    assert.throws(() => store.save({ ...record(1), appliedSeq: -1 }), RangeError);
    assert.throws(() => store.save({ ...record(1), version: 1.5 }), RangeError);
    assert.throws(() => new FileSnapshotStore({ dir: join(root, "bad"), generations: 0 }), RangeError);
  });

  test("without onCorrupt, a skipped file becomes a process warning", async () => {
    const dir = join(root, `store-${++dirCount}`);
    const store = new FileSnapshotStore({ dir });
    await store.save(record(1));
    fs.writeFileSync(join(dir, "example.counter", "000000000001.snap"), "");
    const warning = once(process, "warning");
    assert.equal(await store.load("example.counter"), undefined);
    const [w] = (await warning) as [Error & { code?: string }];
    assert.equal(w.code, "PLUGWIRE_CORRUPT_SNAPSHOT");
    assert.match(w.message, /truncated/);
  });
});

describe("MemorySnapshotStore", () => {
  test("round trip keeps the latest record and copies bytes", async () => {
    const store = new MemorySnapshotStore();
    const first = record(1);
    await store.save(first);
    first.bytes[0] = 0; // caller reuses its buffer
    assert.deepEqual(plain(await store.load("example.counter")), record(1));
    await store.save(record(2));
    assert.deepEqual(plain(await store.load("example.counter")), record(2));
    assert.equal(await store.load("other"), undefined);
    await store.discard("example.counter");
    assert.equal(await store.load("example.counter"), undefined);
  });
});

describe("snapshots are kept per plugin (issue 12)", () => {
  test("two plugins that declare one id never see, replace or discard each other's state", async () => {
    const { store, dir } = fileStore();
    await store.save(record(1), "counter");
    await store.save({ ...record(99), bytes: Buffer.from("forged") }, "rogue");
    assert.equal((await store.load("example.counter", "counter"))?.appliedSeq, 1);
    assert.equal((await store.load("example.counter", "rogue"))?.appliedSeq, 99);
    await store.discard("example.counter", "rogue");
    assert.equal(await store.load("example.counter", "rogue"), undefined);
    assert.deepEqual(plain(await store.load("example.counter", "counter")), record(1));
    assert.deepEqual(fs.readdirSync(join(dir, "@plugins", "counter", "example.counter")), ["000000000001.snap"]);
    assert.equal(await store.load("example.counter"), undefined, "nothing in the ownerless layout");
  });

  test("ownerless snapshots (the layout before) are adopted by the first plugin that loads the id, and moved", async () => {
    const dir = join(root, `store-${++dirCount}`);
    const adopted: unknown[] = [];
    const store = new FileSnapshotStore({ dir, onAdopt: (a) => adopted.push(a), onCorrupt: () => assert.fail("nothing is corrupt") });
    await store.save(record(1));
    await store.save(record(2));
    const to = join(dir, "@plugins", "counter", "example.counter");
    assert.equal((await store.load("example.counter", "counter"))?.appliedSeq, 2);
    assert.deepEqual(adopted, [{ id: "example.counter", plugin: "counter", from: join(dir, "example.counter"), to }]);
    assert.equal(fs.existsSync(join(dir, "example.counter")), false);
    assert.equal(fs.readdirSync(to).length, 2);
    assert.equal(fs.statSync(to).mode & 0o777, 0o700);
    // Adopted once: another plugin declaring the id later finds nothing.
    assert.equal(await store.load("example.counter", "rogue"), undefined);
    assert.equal((await store.load("example.counter", "counter"))?.appliedSeq, 2);
    assert.equal(adopted.length, 1);
  });

  test("plugin names and ids '.' and '..' cannot leave their directory", async () => {
    const { store, dir } = fileStore();
    await store.save(record(1, ".."), "..");
    await store.save(record(2, "."), ".");
    assert.deepEqual(fs.readdirSync(dir), ["@plugins"]);
    assert.deepEqual(fs.readdirSync(join(dir, "@plugins")).sort(), ["%2E", "%2E%2E"]);
    assert.equal((await store.load("..", ".."))?.appliedSeq, 1);
    assert.equal((await store.load(".", "."))?.appliedSeq, 2);
  });

  test("state files are 0600 in 0700 directories, whatever the umask; a looser store dir is tightened", async () => {
    const dir = join(root, `store-${++dirCount}`);
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    const umask = process.umask(0);
    try {
      const store = new FileSnapshotStore({ dir });
      await store.save(record(1), "counter");
      await store.save(record(2), "counter");
    } finally {
      process.umask(umask);
    }
    const modes: string[] = [];
    const walk = (path: string): void => {
      const stats = fs.statSync(path);
      modes.push(`${path.slice(dir.length) || "/"} ${(stats.mode & 0o777).toString(8)}`);
      if (stats.isDirectory()) for (const name of fs.readdirSync(path).sort()) walk(join(path, name));
    };
    walk(dir);
    assert.deepEqual(modes, [
      "/ 700",
      "/@plugins 700",
      "/@plugins/counter 700",
      "/@plugins/counter/example.counter 700",
      "/@plugins/counter/example.counter/000000000001.snap 600",
      "/@plugins/counter/example.counter/000000000002.snap 600",
    ]);
  });

  test("a symlink left at the temp path is replaced, never written through", async () => {
    const { store, dir } = fileStore();
    await store.save(record(1), "p");
    const victim = join(root, `victim-${dirCount}`);
    fs.writeFileSync(victim, "untouched");
    fs.symlinkSync(victim, join(dir, "@plugins", "p", "example.counter", "000000000002.snap.tmp"));
    await store.save(record(2), "p");
    assert.equal(fs.readFileSync(victim, "utf8"), "untouched");
    assert.equal((await store.load("example.counter", "p"))?.appliedSeq, 2);
  });

  test("an id directory replaced by a file: typed errors naming the plugin, the path and what to do; the file is left alone", async () => {
    const { store, dir } = fileStore();
    const idDir = join(dir, "@plugins", "counter", "example.counter");
    fs.mkdirSync(dirname(idDir), { recursive: true });
    fs.writeFileSync(idDir, "in the way");
    await assert.rejects(store.load("example.counter", "counter"), (e: PlugwireError) => {
      assert.equal(e.code, "restore_failed");
      assert.equal(e.plugin, "counter");
      assert.equal(
        e.message,
        `could not read the snapshots of plugin 'counter' (stateful id 'example.counter'): a part of ${idDir} is a file where a directory belongs (ENOTDIR); ` +
          "move that file away. The snapshot files were left as they are; fix this and restart the plugin (host.restart('counter') or `plugwire restart counter`).",
      );
      return true;
    });
    await assert.rejects(store.save(record(1), "counter"), (e: PlugwireError) => {
      assert.equal(e.code, "snapshot_failed");
      assert.equal(e.plugin, "counter");
      assert.equal(
        e.message,
        `could not save the snapshot of plugin 'counter' (stateful id 'example.counter'): ${idDir} exists but is not a directory (EEXIST); ` +
          "move it away so that the directory can be created. The previous snapshot is kept, and the payloads since it stay in the host's replay buffer.",
      );
      return true;
    });
    assert.equal(fs.readFileSync(idDir, "utf8"), "in the way");
  });

  test("a generation due for pruning that is a directory is removed without failing the save", async () => {
    const { store, dir, corrupt } = fileStore(2);
    const idDir = join(dir, "@plugins", "p", "example.counter");
    await store.save(record(1), "p");
    fs.mkdirSync(join(idDir, "000000000002.snap"));
    fs.writeFileSync(join(idDir, "000000000002.snap", "inside"), "x");
    await store.save(record(3), "p");
    await store.save(record(4), "p");
    assert.deepEqual(fs.readdirSync(idDir).sort(), ["000000000003.snap", "000000000004.snap"]);
    assert.equal((await store.load("example.counter", "p"))?.appliedSeq, 4);
    assert.deepEqual(corrupt, []);
  });

  test("a store dir that is a file: invalid_config naming the path and what to do", () => {
    const path = join(root, `file-${++dirCount}`);
    fs.writeFileSync(path, "");
    assert.throws(
      () => new FileSnapshotStore({ dir: path }),
      (e: PlugwireError) => {
        assert.equal(e.code, "invalid_config");
        assert.equal(
          e.message,
          `the snapshot store directory ${path} cannot be used: ${path} exists but is not a directory (EEXIST); move it away so that the directory can be created. ` +
            "Fix it, or point the host at another dataDir (or store).",
        );
        return true;
      },
    );
  });

  test("statefulIdProblem: an id must fit one path segment once encoded", () => {
    assert.equal(statefulIdProblem("example.counter"), undefined);
    assert.equal(statefulIdProblem("a".repeat(255)), undefined);
    assert.equal(statefulIdProblem(""), "it is empty");
    assert.equal(
      statefulIdProblem("/".repeat(100)),
      "it is 100 bytes, 300 once percent-encoded for the snapshot store, over the limit of 255",
    );
  });

  test("MemorySnapshotStore keeps plugins apart and adopts ownerless records", async () => {
    const store = new MemorySnapshotStore();
    await store.save(record(1));
    assert.equal((await store.load("example.counter", "counter"))?.appliedSeq, 1);
    assert.equal(await store.load("example.counter", "rogue"), undefined);
    await store.save(record(5), "rogue");
    await store.discard("example.counter", "rogue");
    assert.equal((await store.load("example.counter", "counter"))?.appliedSeq, 1);
  });
});

describe("an unreadable generation (chmod 000)", () => {
  test("load by an unprivileged user (uid 65534; root ignores file modes) fails with restore_failed naming plugin, path and EACCES, instead of rolling back to an older generation; nothing is deleted", async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip("needs root to run the load as another user");
      return;
    }
    const base = fs.mkdtempSync(join(os.tmpdir(), "plugwire-unreadable-"));
    try {
      fs.chmodSync(base, 0o755);
      const dir = join(base, "store");
      const store = new FileSnapshotStore({ dir });
      await store.save(record(1), "counter");
      await store.save(record(2), "counter");
      const idDir = join(dir, "@plugins", "counter", "example.counter");
      const newest = join(idDir, "000000000002.snap");
      for (const path of [dir, join(dir, "@plugins"), join(dir, "@plugins", "counter"), idDir, join(idDir, "000000000001.snap"), newest]) {
        fs.chownSync(path, 65534, 65534);
      }
      fs.chmodSync(newest, 0o000);
      const storeModule = new URL("../src/snapshot/store.js", import.meta.url).href;
      const script =
        `import { FileSnapshotStore } from ${JSON.stringify(storeModule)};\n` +
        `const store = new FileSnapshotStore({ dir: ${JSON.stringify(dir)}, onCorrupt: (c) => console.log(JSON.stringify({ corrupt: c.path })) });\n` +
        `store.load("example.counter", "counter").then(` +
        `(r) => console.log(JSON.stringify({ loaded: r?.appliedSeq })), (e) => console.log(JSON.stringify({ code: e.code, plugin: e.plugin, message: e.message })));\n`;
      const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { uid: 65534, gid: 65534, encoding: "utf8", timeout: 30_000 });
      assert.equal(child.status, 0, child.stderr);
      assert.deepEqual(JSON.parse(child.stdout.trim()), {
        code: "restore_failed",
        plugin: "counter",
        message:
          `could not read the snapshots of plugin 'counter' (stateful id 'example.counter'): permission denied on ${newest} (EACCES); ` +
          "give the host's user read and write access to it. The snapshot files were left as they are; fix this and restart the plugin " +
          "(host.restart('counter') or `plugwire restart counter`).",
      });
      assert.deepEqual(fs.readdirSync(idDir).sort(), ["000000000001.snap", "000000000002.snap"]);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
