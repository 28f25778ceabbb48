/**
 * Target 4: bytes into the snapshot file loader (host/src/snapshot/store.ts,
 * FileSnapshotStore.load). Each input lays out one id's directory: a few
 * generations, each a valid record, a mutated one, random bytes, or
 * something that is not a regular file (a directory, a FIFO, a symlink),
 * plus stray temp files; then loads it. Properties:
 *   - load never throws for files (a directory where the id's dir should be
 *     may reject with a clear error, counted apart);
 *   - it answers within 2 s (a FIFO must not block it);
 *   - it returns exactly the newest generation that is an intact record for
 *     this id, or undefined when there is none, and reports each newer one
 *     it skipped through onCorrupt;
 *   - it removes the temp files.
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { FileSnapshotStore } from "../../host/dist/src/snapshot/store.js";
import { mutate } from "../lib/gen.mjs";
import { Tally, procStatus, propertyFailure } from "../lib/util.mjs";

const MAGIC = Buffer.from("PWSNAP", "latin1");

/** A record file as the store writes it (format in store.ts); checked against a real save() before the run. */
export function encodeRecord({ id, version, appliedSeq, bytes }) {
  const idBytes = Buffer.from(id, "utf8");
  const fixedEnd = 32 + idBytes.length;
  const header = Buffer.alloc(fixedEnd + 32);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(1, 6);
  header.writeUInt32BE(idBytes.length, 8);
  idBytes.copy(header, 12);
  header.writeUInt32BE(version, 12 + idBytes.length);
  header.writeBigUInt64BE(BigInt(appliedSeq), 16 + idBytes.length);
  header.writeBigUInt64BE(BigInt(bytes.length), 24 + idBytes.length);
  createHash("sha256").update(header.subarray(0, fixedEnd)).update(bytes).digest().copy(header, fixedEnd);
  return Buffer.concat([header, bytes]);
}

/** The store's directory name for an id (store.ts safeId). */
export function safeId(id) {
  if (id === "." || id === "..") return id.replaceAll(".", "%2E");
  let out = "";
  for (const byte of Buffer.from(id, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9._-]/.test(c) ? c : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

const id = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom("example.counter", "probe.p", "a") },
  { weight: 2, arbitrary: fc.string({ minLength: 1, maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constantFrom(".", "..", "%2E", "a/b", "../x", "\u0000") },
);

/** Fields of a record header a mutation may set to an edge value. */
const headerEdit = fc.record({
  field: fc.constantFrom("magic", "format", "idLength", "version", "appliedSeq", "bodyLength", "checksum"),
  value: fc.constantFrom(0n, 1n, 0xffn, 0xffffn, 0xffffffffn, 2n ** 53n, 2n ** 63n, 2n ** 64n - 1n),
});

const generation = fc.record({
  number: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: 0, max: 1e9 })),
  digits: fc.constantFrom(12, 12, 12, 1, 20),
  content: fc.oneof(
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("valid") }) },
    { weight: 5, arbitrary: fc.record({ kind: fc.constant("mutated"), muts: fc.array(fc.oneof(
      fc.record({ op: fc.constant("flip"), at: fc.double({ min: 0, max: 1, noNaN: true }), bit: fc.nat(7) }),
      fc.record({ op: fc.constant("truncate"), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.record({ op: fc.constant("insert"), at: fc.double({ min: 0, max: 1, noNaN: true }), data: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
      fc.record({ op: fc.constant("delete"), at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 8 }) }),
    ), { minLength: 1, maxLength: 3 }) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("header"), edit: headerEdit }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("other-id"), other: fc.string({ minLength: 1, maxLength: 10 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("random"), data: fc.uint8Array({ maxLength: 200 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("prefix"), len: fc.nat(80) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "empty" }) },
    { weight: 1, arbitrary: fc.constantFrom({ kind: "directory" }, { kind: "fifo" }, { kind: "symlink-valid" }, { kind: "symlink-dangling" }, { kind: "symlink-dir" }) },
  ),
  record: fc.record({
    version: fc.oneof(fc.nat(5), fc.integer({ min: 0, max: 0xffffffff })),
    appliedSeq: fc.oneof(fc.nat(10_000), fc.constant(Number.MAX_SAFE_INTEGER)),
    bytes: fc.oneof(fc.uint8Array({ maxLength: 256 }), fc.integer({ min: 1000, max: 70_000 }).map((n) => new Uint8Array(n).fill(7))),
  }),
});

const layout = fc.record({
  id,
  generations: fc.uniqueArray(generation, { minLength: 0, maxLength: 4, selector: (g) => g.number }),
  temps: fc.array(fc.constantFrom("000000000001.snap.tmp", "9.snap.tmp", "x.snap.tmp", "1.snap.bak"), { maxLength: 2 }),
  idDirIsFile: fc.oneof({ weight: 60, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
});

function editHeader(file, id, edit) {
  const L = Buffer.byteLength(id, "utf8");
  const b = Buffer.from(file);
  const v = edit.value;
  const offsets = { magic: [0, 6], format: [6, 2], idLength: [8, 4], version: [12 + L, 4], appliedSeq: [16 + L, 8], bodyLength: [24 + L, 8], checksum: [32 + L, 8] };
  const [at, size] = offsets[edit.field];
  if (at + size > b.length) return b;
  for (let i = size - 1, x = v; i >= 0; i--, x >>= 8n) b[at + i] = Number(x & 0xffn);
  return b;
}

export async function fuzzSnapshotStore({ seed, count, timeLimitMs, only, log }) {
  const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const work = mkdtempSync(join(base, "pwfz-snap-"));
  const dir = join(work, "store");
  const corrupt = [];
  const store = new FileSnapshotStore({ dir, onCorrupt: (c) => corrupt.push(c) });
  const tally = new Tally();
  const kinds = new Tally();
  const failures = [];
  let inputs = 0;
  let peakRssKb = 0;
  const started = performance.now();

  // The encoder above must write exactly what save() writes.
  for (const record of [{ id: "example.counter", version: 1, appliedSeq: 7, bytes: new Uint8Array([1, 2, 3]) }, { id: "..", version: 0xffffffff, appliedSeq: 0, bytes: new Uint8Array(0) }]) {
    await store.save(record);
    const idDir = join(dir, safeId(record.id));
    const written = readFileSync(join(idDir, readdirSync(idDir)[0]));
    if (!written.equals(encodeRecord(record))) throw new Error(`the fuzzer's record encoder disagrees with FileSnapshotStore.save for ${record.id}`);
    rmSync(idDir, { recursive: true });
  }

  const property = fc.asyncProperty(layout, async (input) => {
    inputs++;
    if (inputs % 1000 === 0) peakRssKb = Math.max(peakRssKb, procStatus(process.pid)?.rssKb ?? 0);
    const idDir = join(dir, safeId(input.id));
    rmSync(idDir, { recursive: true, force: true });
    corrupt.length = 0;
    let expected;
    const skippedBefore = [];
    if (input.idDirIsFile) {
      writeFileSync(idDir, "not a directory");
      kinds.add("id-dir-is-a-file");
    } else {
      mkdirSync(idDir, { recursive: true });
      const sorted = [...input.generations].sort((a, b) => b.number - a.number);
      for (const g of sorted) {
        const name = `${String(g.number).padStart(g.digits, "0")}.snap`;
        const path = join(idDir, name);
        const record = { id: input.id, ...g.record };
        const good = encodeRecord(record);
        kinds.add(g.content.kind);
        let bytes;
        let intact = false;
        switch (g.content.kind) {
          case "valid":
            bytes = good;
            intact = true;
            break;
          case "mutated":
            bytes = mutate(good, g.content.muts);
            intact = bytes.equals(good);
            break;
          case "header":
            bytes = editHeader(good, input.id, g.content.edit);
            intact = bytes.equals(good);
            break;
          case "other-id":
            bytes = encodeRecord({ ...record, id: g.content.other });
            intact = g.content.other === input.id;
            break;
          case "random":
            bytes = Buffer.from(g.content.data);
            break;
          case "prefix":
            bytes = good.subarray(0, g.content.len);
            intact = bytes.equals(good);
            break;
          case "empty":
            bytes = Buffer.alloc(0);
            break;
          case "directory":
            mkdirSync(path);
            break;
          case "fifo":
            execFileSync("mkfifo", [path]);
            break;
          case "symlink-valid": {
            const target = join(work, `valid-${g.number}.snap`);
            writeFileSync(target, good);
            symlinkSync(target, path);
            intact = true;
            break;
          }
          case "symlink-dangling":
            symlinkSync(join(work, "nowhere"), path);
            break;
          case "symlink-dir":
            symlinkSync(work, path);
            break;
        }
        if (bytes) writeFileSync(path, bytes);
        if (expected === undefined) {
          if (intact) expected = { ...record, path };
          // A dangling symlink is a file that is gone: skipped without a report.
          else if (g.content.kind !== "symlink-dangling") skippedBefore.push(path);
        }
      }
      for (const t of input.temps) writeFileSync(join(idDir, t), "partial");
    }
    let outcome;
    let timer;
    const t0 = performance.now();
    try {
      outcome = await Promise.race([
        store.load(input.id).then((r) => ({ record: r })),
        new Promise((resolve) => (timer = setTimeout(() => resolve({ hang: true }), 2000))),
      ]);
    } catch (e) {
      outcome = { error: e };
    } finally {
      clearTimeout(timer);
    }
    const ms = performance.now() - t0;
    if (outcome.hang) {
      tally.add("hang");
      // Unblock a reader stuck on a FIFO, so the run can go on.
      for (const name of readdirSync(idDir)) {
        try {
          writeFileSync(join(idDir, name), "", { flag: "w" });
        } catch {
          // not a FIFO
        }
      }
      throw new Error(`load(${JSON.stringify(input.id)}) did not answer within 2 s`);
    }
    if (outcome.error) {
      const code = outcome.error.code ?? outcome.error.name;
      tally.add(`rejected:${code}`);
      // Counted apart: the id's directory is a file (a typed restore_failed whose cause is ENOTDIR).
      if (input.idDirIsFile && (code === "ENOTDIR" || (code === "restore_failed" && outcome.error.cause?.code === "ENOTDIR"))) return;
      throw new Error(`load(${JSON.stringify(input.id)}) rejected: ${outcome.error.stack}`);
    }
    const got = outcome.record;
    if (expected === undefined) {
      if (got !== undefined) throw new Error(`load returned a record (version ${got.version}, seq ${got.appliedSeq}) but no intact generation exists`);
      tally.add(input.generations.length ? "none-intact" : "empty");
    } else {
      if (!got) throw new Error(`load returned nothing, but ${expected.path} is intact`);
      if (got.id !== input.id || got.version !== expected.version || got.appliedSeq !== expected.appliedSeq || !Buffer.from(got.bytes).equals(Buffer.from(expected.bytes))) {
        throw new Error(`load returned the wrong record: version ${got.version} seq ${got.appliedSeq} (${got.bytes.length} bytes), expected ${expected.path}`);
      }
      tally.add(skippedBefore.length ? "loaded-older" : "loaded-newest");
    }
    for (const path of skippedBefore) {
      if (!corrupt.some((c) => c.path === path)) throw new Error(`skipped ${path} without reporting it through onCorrupt`);
    }
    for (const c of corrupt) tally.add(`corrupt:${c.reason.replace(/[0-9"]+.*$/, "").trim()}`);
    if (!input.idDirIsFile) {
      const left = readdirSync(idDir).filter((n) => /^\d+\.snap\.tmp$/.test(n));
      if (left.length) throw new Error(`temp files left after load: ${left.join(", ")}`);
    }
    if (ms > 1000) tally.add("slow-load");
  });

  try {
    await fc.assert(property, {
      seed,
      numRuns: count,
      interruptAfterTimeLimit: timeLimitMs,
      markInterruptAsFailure: false,
      ...(only !== undefined ? { path: String(only) } : {}),
      endOnFailure: true,
    });
  } catch (e) {
    failures.push({ kind: "property", detail: propertyFailure(e) });
  }
  log(`store dir ${dir}`);
  rmSync(work, { recursive: true, force: true });
  // The loader runs in this process: the largest VmRSS sampled during the target (every 1,000 inputs).
  return { target: "snapshot-load", failures, inputs, tally, kinds, ms: performance.now() - started, peakRssKb: Math.max(peakRssKb, procStatus(process.pid)?.rssKb ?? 0) };
}
