/*
 * Snapshot stores: where the host keeps the state of stateful plugins.
 *
 * FileSnapshotStore layout: `<dir>/<safe id>/<generation>.snap`. The safe id is
 * the id with every byte outside [A-Za-z0-9._-] percent-encoded (UTF-8, "%XX");
 * the ids "." and ".." are written "%2E" and "%2E%2E". The generation is a
 * zero-padded increasing integer, so the newest file has the highest number.
 *
 * Record format (integers big-endian, L = id length in bytes):
 *
 *   offset   size  field
 *   0        6     magic "PWSNAP"
 *   6        2     record format version, u16 (= 1)
 *   8        4     L, u32
 *   12       L     id, UTF-8
 *   12+L     4     snapshot version, u32
 *   16+L     8     applied_seq, u64
 *   24+L     8     N = body length, u64
 *   32+L     32    SHA-256 over bytes [0, 32+L) followed by the body
 *   64+L     N     body
 */
import { createHash } from "node:crypto";
import { constants, mkdirSync, type Stats } from "node:fs";
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** One snapshot of a stateful plugin. */
export interface SnapshotRecord {
  /** Stateful surface id of the plugin (e.g. "example.counter"). */
  id: string;
  /** The plugin's snapshot format version. */
  version: number;
  /** Seq of the last payload whose effect the state includes. */
  appliedSeq: number;
  bytes: Uint8Array;
}

/** Where snapshots are kept. Implementations must be safe to call concurrently. */
export interface SnapshotStore {
  /** Durably store a new generation for `id`. */
  save(record: SnapshotRecord): Promise<void>;
  /** The newest readable generation, or undefined when none. Corrupt generations are skipped (and reported through the onCorrupt callback). */
  load(id: string): Promise<SnapshotRecord | undefined>;
  /** Drop every generation for `id` (used when a plugin reports UnsupportedVersion). */
  discard(id: string): Promise<void>;
}

/** A stored generation that was skipped because it could not be read. */
export interface CorruptSnapshot {
  id: string;
  path: string;
  reason: string;
}

/** Keeps the latest record per id in memory. For tests and hosts that need no durability. */
export class MemorySnapshotStore implements SnapshotStore {
  private readonly records = new Map<string, SnapshotRecord>();

  async save(record: SnapshotRecord): Promise<void> {
    checkRecord(record);
    this.records.set(record.id, copyRecord(record));
  }

  async load(id: string): Promise<SnapshotRecord | undefined> {
    const record = this.records.get(id);
    return record && copyRecord(record);
  }

  async discard(id: string): Promise<void> {
    this.records.delete(id);
  }
}

export interface FileSnapshotStoreOptions {
  /** Root directory; created (recursive, mode 0o700) if missing. */
  dir: string;
  /** How many generations to keep per id. Default 3. */
  generations?: number;
  /**
   * Called for each corrupt, truncated or unknown-format file that load skips.
   * Default: a process warning with code PLUGWIRE_CORRUPT_SNAPSHOT.
   */
  onCorrupt?: (c: CorruptSnapshot) => void;
}

const MAGIC = Buffer.from("PWSNAP", "latin1");
const FORMAT_VERSION = 1;
const CHECKSUM_SIZE = 32;
const GENERATION_DIGITS = 12;
const SNAP = /^(\d+)\.snap$/;
const TMP = /^\d+\.snap\.tmp$/;

/**
 * Stores snapshots as checksummed files, keeping the last few generations per
 * id (see the format at the top of this file). Each save goes to a temp file
 * that is fsynced and renamed, and the directory is fsynced after the rename.
 * Load returns the newest generation that validates and reports the others
 * through `onCorrupt`. Operations on one id are serialized within this
 * instance; only one instance (process) should use a directory at a time.
 */
export class FileSnapshotStore implements SnapshotStore {
  private readonly dir: string;
  private readonly generations: number;
  private readonly onCorrupt: (c: CorruptSnapshot) => void;
  private readonly queues = new Map<string, Promise<void>>();

  constructor(options: FileSnapshotStoreOptions) {
    const generations = options.generations ?? 3;
    if (!Number.isInteger(generations) || generations < 1) {
      throw new RangeError(`generations must be an integer >= 1, got ${generations}`);
    }
    this.dir = options.dir;
    this.generations = generations;
    this.onCorrupt = options.onCorrupt ?? warnCorrupt;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  save(record: SnapshotRecord): Promise<void> {
    checkRecord(record);
    return this.exclusive(record.id, async () => {
      const idDir = this.idDir(record.id);
      if (await mkdir(idDir, { recursive: true, mode: 0o700 })) await syncDir(this.dir);
      const { snaps } = await scan(idDir);
      const name = String((snaps[0]?.generation ?? 0) + 1).padStart(GENERATION_DIGITS, "0") + ".snap";
      const path = join(idDir, name);
      const tmp = `${path}.tmp`;
      const header = encodeHeader(record);
      const file = await open(tmp, "w", 0o600);
      try {
        await writeAll(file, header, 0);
        await writeAll(file, record.bytes, header.length);
        await file.sync();
      } catch (e) {
        await file.close();
        await removeIfExists(tmp);
        throw e;
      }
      await file.close();
      await rename(tmp, path);
      await syncDir(idDir);
      await this.prune(idDir);
    });
  }

  load(id: string): Promise<SnapshotRecord | undefined> {
    return this.exclusive(id, async () => {
      const { snaps, temps } = await scan(this.idDir(id));
      for (const tmp of temps) await removeIfExists(tmp);
      for (const { path } of snaps) {
        const data = await readRecordFile(path);
        if (!data) continue;
        const result = typeof data === "string" ? data : decodeRecord(data, id);
        if (typeof result !== "string") return result;
        this.onCorrupt({ id, path, reason: result });
      }
      return undefined;
    });
  }

  discard(id: string): Promise<void> {
    return this.exclusive(id, () => rm(this.idDir(id), { recursive: true, force: true }));
  }

  private idDir(id: string): string {
    return join(this.dir, safeId(id));
  }

  /** Removes generations beyond the newest `generations`, and temp leftovers. */
  private async prune(idDir: string): Promise<void> {
    const { snaps, temps } = await scan(idDir);
    for (const { path } of snaps.slice(this.generations).reverse()) await removeIfExists(path);
    for (const tmp of temps) await removeIfExists(tmp);
  }

  /** Runs `task` after every earlier task for `id` has settled. */
  private exclusive<T>(id: string, task: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(id) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(id, tail);
    void tail.then(() => {
      if (this.queues.get(id) === tail) this.queues.delete(id);
    });
    return result;
  }
}

/** The id as a single path segment: bytes outside [A-Za-z0-9._-] percent-encoded. */
function safeId(id: string): string {
  if (id === "." || id === "..") return id.replaceAll(".", "%2E");
  let out = "";
  for (const byte of Buffer.from(id, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9._-]/.test(c) ? c : "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function checkRecord(r: SnapshotRecord): void {
  if (typeof r.id !== "string" || r.id === "") throw new TypeError("snapshot id must be a non-empty string");
  if (!Number.isInteger(r.version) || r.version < 0 || r.version > 0xffffffff) {
    throw new RangeError(`snapshot version must be a u32, got ${r.version}`);
  }
  if (!Number.isSafeInteger(r.appliedSeq) || r.appliedSeq < 0) {
    throw new RangeError(`appliedSeq must be a non-negative safe integer, got ${r.appliedSeq}`);
  }
  if (!(r.bytes instanceof Uint8Array)) throw new TypeError("snapshot bytes must be a Uint8Array");
}

function copyRecord(r: SnapshotRecord): SnapshotRecord {
  return { id: r.id, version: r.version, appliedSeq: r.appliedSeq, bytes: Uint8Array.from(r.bytes) };
}

/** Header including the checksum, which covers the body as well. */
function encodeHeader(r: SnapshotRecord): Buffer {
  const id = Buffer.from(r.id, "utf8");
  const fixedEnd = 32 + id.length;
  const header = Buffer.alloc(fixedEnd + CHECKSUM_SIZE);
  MAGIC.copy(header, 0);
  header.writeUInt16BE(FORMAT_VERSION, 6);
  header.writeUInt32BE(id.length, 8);
  id.copy(header, 12);
  header.writeUInt32BE(r.version, 12 + id.length);
  header.writeBigUInt64BE(BigInt(r.appliedSeq), 16 + id.length);
  header.writeBigUInt64BE(BigInt(r.bytes.byteLength), 24 + id.length);
  checksum(header.subarray(0, fixedEnd), r.bytes).copy(header, fixedEnd);
  return header;
}

/** The record in `data`, or why it cannot be used. */
function decodeRecord(data: Buffer, expectedId: string): SnapshotRecord | string {
  if (data.length < 8) return `truncated: ${data.length} bytes is shorter than the record header`;
  if (!data.subarray(0, 6).equals(MAGIC)) return "bad magic: not a plugwire snapshot record";
  const format = data.readUInt16BE(6);
  if (format !== FORMAT_VERSION) return `unknown record format version ${format}`;
  if (data.length < 12) return `truncated: ${data.length} bytes is shorter than the record header`;
  const idLength = data.readUInt32BE(8);
  const fixedEnd = 32 + idLength;
  const bodyStart = fixedEnd + CHECKSUM_SIZE;
  if (data.length < bodyStart) return `truncated: file has ${data.length} bytes, header needs ${bodyStart}`;
  const bodyLength = data.readBigUInt64BE(24 + idLength);
  const expected = BigInt(bodyStart) + bodyLength;
  if (BigInt(data.length) < expected) return `truncated: file has ${data.length} bytes, record needs ${expected}`;
  if (BigInt(data.length) > expected) return `length mismatch: file has ${data.length} bytes, record needs ${expected}`;
  const body = data.subarray(bodyStart);
  if (!checksum(data.subarray(0, fixedEnd), body).equals(data.subarray(fixedEnd, bodyStart))) {
    return "checksum mismatch (SHA-256)";
  }
  const id = data.toString("utf8", 12, 12 + idLength);
  if (id !== expectedId) return `record is for id ${JSON.stringify(id)}, not ${JSON.stringify(expectedId)}`;
  const appliedSeq = data.readBigUInt64BE(16 + idLength);
  if (appliedSeq > BigInt(Number.MAX_SAFE_INTEGER)) return `applied_seq ${appliedSeq} is beyond Number.MAX_SAFE_INTEGER`;
  return { id, version: data.readUInt32BE(12 + idLength), appliedSeq: Number(appliedSeq), bytes: body };
}

function checksum(header: Uint8Array, body: Uint8Array): Buffer {
  return createHash("sha256").update(header).update(body).digest();
}

/** Generations newest first, and temp files, in `idDir` (empty when it does not exist). */
async function scan(idDir: string): Promise<{ snaps: Array<{ generation: number; path: string }>; temps: string[] }> {
  let names: string[];
  try {
    names = await readdir(idDir);
  } catch (e) {
    if (isENOENT(e)) return { snaps: [], temps: [] };
    throw e;
  }
  const snaps: Array<{ generation: number; path: string }> = [];
  const temps: string[] = [];
  for (const name of names) {
    const m = SNAP.exec(name);
    if (m) snaps.push({ generation: Number(m[1]), path: join(idDir, name) });
    else if (TMP.test(name)) temps.push(join(idDir, name));
  }
  snaps.sort((a, b) => b.generation - a.generation);
  return { snaps, temps };
}

async function writeAll(file: FileHandle, data: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < data.byteLength; ) {
    const { bytesWritten } = await file.write(data, done, data.byteLength - done, position + done);
    done += bytesWritten;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await open(path, "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/** Largest file `readFile` reads at once (2 GiB - 1); no record is that large. */
const MAX_READ_BYTES = 2 ** 31 - 1;

/**
 * A generation's bytes; why it cannot be a record when it is no regular file
 * or is too large to read; undefined when it no longer exists. The file is
 * opened non-blocking, so a FIFO in its place cannot block a thread of the
 * pool (and with it every file operation of the process, and its exit).
 */
async function readRecordFile(path: string): Promise<Buffer | string | undefined> {
  let file: FileHandle;
  try {
    file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (isENOENT(e)) return undefined;
    throw e;
  }
  try {
    const stats = await file.stat();
    if (!stats.isFile()) return `not a regular file but ${fileType(stats)}`;
    if (stats.size > MAX_READ_BYTES) return `${stats.size} bytes is too large for a snapshot record`;
    return await file.readFile();
  } finally {
    await file.close();
  }
}

function fileType(stats: Stats): string {
  if (stats.isDirectory()) return "a directory";
  if (stats.isFIFO()) return "a FIFO";
  if (stats.isSocket()) return "a socket";
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return "a device";
  return "of an unknown type";
}

async function removeIfExists(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if (!isENOENT(e)) throw e;
  }
}

function isENOENT(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

function warnCorrupt(c: CorruptSnapshot): void {
  process.emitWarning(`skipped snapshot ${c.path} of ${c.id}: ${c.reason}`, { code: "PLUGWIRE_CORRUPT_SNAPSHOT" });
}
