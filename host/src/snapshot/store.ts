/*
 * Snapshot stores: where the host keeps the state of stateful plugins.
 *
 * State is keyed by the plugin that owns it (its configured name) and its
 * stateful id: a plugin that declares another plugin's id never reads,
 * replaces or discards that plugin's snapshots.
 *
 * FileSnapshotStore layout, under the store dir (default `<dataDir>/snapshots`):
 *
 *   @plugins/<safe plugin>/<safe id>/<generation>.snap   state of plugin <plugin>
 *   <safe id>/<generation>.snap                          no owner given (the layout
 *                                                        before plugins owned state)
 *
 * A safe name is the name with every byte outside [A-Za-z0-9._-] percent-encoded
 * (UTF-8, "%XX"); "." and ".." are written "%2E" and "%2E%2E". No safe id can
 * be "@plugins", so the two layouts never meet. The generation is a zero-padded
 * increasing integer, so the newest file has the highest number. Directories
 * are created 0700 (an existing store dir, owner dir or id dir looser than
 * that is tightened), files 0600.
 *
 * Upgrading from the ownerless layout: the first `load(id, plugin)` that
 * finds no state of `plugin` for `id` but finds `<safe id>/` adopts it: the
 * directory is renamed into `@plugins/<safe plugin>/` (reported through
 * onAdopt). The old layout cannot say which plugin wrote it, so it goes to
 * the first plugin that declares the id after the upgrade; the host refuses
 * a second plugin declaring the same id (see docs/supervision.md).
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
 *
 * The checksum detects damage, not forgery: it has no key.
 */
import { createHash } from "node:crypto";
import { constants, mkdirSync, statSync, chmodSync, type Stats } from "node:fs";
import { chmod, mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { PlugwireError } from "@plugwire/proto";

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

/**
 * Where snapshots are kept. Implementations must be safe to call concurrently.
 *
 * `plugin` is the configured name of the plugin that owns the state; the host
 * always passes it, and an implementation must keep the state of different
 * plugins apart even when they declare the same id. Without it (tools,
 * tests), records are keyed by id alone.
 */
export interface SnapshotStore {
  /** Durably store a new generation for `id` of `plugin`. */
  save(record: SnapshotRecord, plugin?: string): Promise<void>;
  /** The newest readable generation, or undefined when none. Corrupt generations are skipped (and reported through the onCorrupt callback). */
  load(id: string, plugin?: string): Promise<SnapshotRecord | undefined>;
  /** Drop every generation for `id` of `plugin` (used when a plugin reports UnsupportedVersion). */
  discard(id: string, plugin?: string): Promise<void>;
}

/** A stored generation that was skipped because it could not be used. */
export interface CorruptSnapshot {
  id: string;
  /** The plugin whose snapshot it is, when the store was told. */
  plugin?: string;
  path: string;
  reason: string;
}

/** Ownerless snapshots of an id that a plugin adopted (see the layout above). */
export interface AdoptedSnapshots {
  id: string;
  plugin: string;
  from: string;
  to: string;
}

/** Keeps the latest record per (plugin, id) in memory. For tests and hosts that need no durability. */
export class MemorySnapshotStore implements SnapshotStore {
  private readonly records = new Map<string, SnapshotRecord>();

  async save(record: SnapshotRecord, plugin?: string): Promise<void> {
    checkRecord(record);
    this.records.set(memoryKey(record.id, plugin), copyRecord(record));
  }

  async load(id: string, plugin?: string): Promise<SnapshotRecord | undefined> {
    let record = this.records.get(memoryKey(id, plugin));
    if (!record && plugin !== undefined) {
      // Adopt an ownerless record, as the file store does.
      record = this.records.get(memoryKey(id, undefined));
      if (record) {
        this.records.delete(memoryKey(id, undefined));
        this.records.set(memoryKey(id, plugin), record);
      }
    }
    return record && copyRecord(record);
  }

  async discard(id: string, plugin?: string): Promise<void> {
    this.records.delete(memoryKey(id, plugin));
  }
}

function memoryKey(id: string, plugin: string | undefined): string {
  return JSON.stringify([plugin ?? null, id]);
}

export interface FileSnapshotStoreOptions {
  /** Root directory; created (recursive, mode 0o700) if missing, tightened to 0o700 if looser. */
  dir: string;
  /** How many generations to keep per id. Default 3. */
  generations?: number;
  /**
   * Called for each corrupt, truncated or unknown-format file that load skips,
   * and for an old generation that could not be pruned.
   * Default: a process warning with code PLUGWIRE_CORRUPT_SNAPSHOT.
   */
  onCorrupt?: (c: CorruptSnapshot) => void;
  /** Called when a plugin adopts ownerless snapshots. Default: a process warning with code PLUGWIRE_ADOPTED_SNAPSHOT. */
  onAdopt?: (a: AdoptedSnapshots) => void;
}

const MAGIC = Buffer.from("PWSNAP", "latin1");
const FORMAT_VERSION = 1;
const CHECKSUM_SIZE = 32;
const GENERATION_DIGITS = 12;
const SNAP = /^(\d+)\.snap$/;
const TMP = /^\d+\.snap\.tmp$/;
/** Directory of the owned layout; no safe id can be this name. */
const OWNED_ROOT = "@plugins";
/** Longest safe id or plugin name: one path segment (NAME_MAX). */
const MAX_SEGMENT_BYTES = 255;

/** Why `id` cannot be a stateful id the file store keeps, or undefined when it can. */
export function statefulIdProblem(id: string): string | undefined {
  if (id === "") return "it is empty";
  const safe = safeId(id);
  if (safe.length > MAX_SEGMENT_BYTES) {
    return `it is ${Buffer.byteLength(id)} bytes, ${safe.length} once percent-encoded for the snapshot store, over the limit of ${MAX_SEGMENT_BYTES}`;
  }
  return undefined;
}

/**
 * Stores snapshots as checksummed files, keeping the last few generations per
 * id (see the format at the top of this file). Each save goes to a temp file
 * that is fsynced and renamed, and the directory is fsynced after the rename.
 * Load returns the newest generation that validates and reports the others
 * through `onCorrupt`; a generation that exists but cannot be read (an I/O or
 * permission error) fails the load instead, since the older one it would
 * fall back to may lack acked payloads. File system errors are PlugwireErrors
 * (snapshot_failed for save and discard, restore_failed for load) that name
 * the plugin, the path and what to do. Operations on one id are serialized
 * within this instance; only one instance (process) should use a directory
 * at a time.
 */
export class FileSnapshotStore implements SnapshotStore {
  private readonly dir: string;
  private readonly generations: number;
  private readonly onCorrupt: (c: CorruptSnapshot) => void;
  private readonly onAdopt: (a: AdoptedSnapshots) => void;
  private readonly queues = new Map<string, Promise<void>>();

  constructor(options: FileSnapshotStoreOptions) {
    const generations = options.generations ?? 3;
    if (!Number.isInteger(generations) || generations < 1) {
      throw new RangeError(`generations must be an integer >= 1, got ${generations}`);
    }
    this.dir = options.dir;
    this.generations = generations;
    this.onCorrupt = options.onCorrupt ?? warnCorrupt;
    this.onAdopt = options.onAdopt ?? warnAdopted;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const stats = statSync(this.dir);
      if (!stats.isDirectory()) throw Object.assign(new Error("not a directory"), { code: "EEXIST", path: this.dir });
      if ((stats.mode & 0o077) !== 0) tighten(this.dir);
    } catch (e) {
      throw new PlugwireError(
        "invalid_config",
        `the snapshot store directory ${this.dir} cannot be used: ${explainFsError(e, this.dir)}. ` +
          `Fix it, or point the host at another dataDir (or store).`,
        { cause: e },
      );
    }
  }

  save(record: SnapshotRecord, plugin?: string): Promise<void> {
    checkRecord(record);
    const idDir = this.idDir(record.id, plugin);
    return this.exclusive(idDir, async () => {
      const fail = (e: unknown, path: string): PlugwireError =>
        new PlugwireError(
          "snapshot_failed",
          `could not save the snapshot of ${owner(record.id, plugin)}: ${explainFsError(e, path)}. The previous snapshot is kept, ` +
            `and the payloads since it stay in the host's replay buffer.`,
          { plugin, cause: e },
        );
      try {
        await this.makeDirs(idDir);
      } catch (e) {
        throw fail(e, idDir);
      }
      let snaps: Generation[];
      try {
        ({ snaps } = await scan(idDir));
      } catch (e) {
        throw fail(e, idDir);
      }
      const name = String((snaps[0]?.generation ?? 0) + 1).padStart(GENERATION_DIGITS, "0") + ".snap";
      const path = join(idDir, name);
      const tmp = `${path}.tmp`;
      const header = encodeHeader(record);
      try {
        // Never write through whatever sits at the temp path (a leftover, a symlink).
        await removeIfExists(tmp);
        const file = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          await writeAll(file, header, 0);
          await writeAll(file, record.bytes, header.length);
          await file.sync();
        } catch (e) {
          await file.close();
          await removeIfExists(tmp).catch(() => undefined);
          throw e;
        }
        await file.close();
        await rename(tmp, path);
        await syncDir(idDir);
      } catch (e) {
        await removeIfExists(tmp).catch(() => undefined);
        throw fail(e, (e as NodeJS.ErrnoException).path ?? tmp);
      }
      await this.prune(idDir, record.id, plugin);
    });
  }

  load(id: string, plugin?: string): Promise<SnapshotRecord | undefined> {
    const idDir = this.idDir(id, plugin);
    return this.exclusive(idDir, async () => {
      const fail = (e: unknown, path: string): PlugwireError =>
        new PlugwireError(
          "restore_failed",
          `could not read the snapshots of ${owner(id, plugin)}: ${explainFsError(e, path)}. The snapshot files were left as they are; ` +
            `fix this and restart the plugin${plugin === undefined ? "" : ` (host.restart('${plugin}') or \`plugwire restart ${plugin}\`)`}.`,
          { plugin, cause: e },
        );
      let scanned: { snaps: Generation[]; temps: string[] };
      try {
        if (plugin !== undefined) await this.adopt(id, plugin, idDir);
        scanned = await scan(idDir);
      } catch (e) {
        throw fail(e, (e as NodeJS.ErrnoException).path ?? idDir);
      }
      for (const tmp of scanned.temps) await removeIfExists(tmp).catch(() => undefined);
      for (const { path } of scanned.snaps) {
        let data: Buffer | string | undefined;
        try {
          data = await readRecordFile(path);
        } catch (e) {
          throw fail(e, path);
        }
        if (!data) continue;
        const result = typeof data === "string" ? data : decodeRecord(data, id);
        if (typeof result !== "string") return result;
        this.onCorrupt({ id, plugin, path, reason: result });
      }
      return undefined;
    });
  }

  discard(id: string, plugin?: string): Promise<void> {
    const idDir = this.idDir(id, plugin);
    return this.exclusive(idDir, async () => {
      try {
        await rm(idDir, { recursive: true, force: true });
      } catch (e) {
        throw new PlugwireError(
          "snapshot_failed",
          `could not discard the snapshots of ${owner(id, plugin)}: ${explainFsError(e, idDir)}. Remove ${idDir} by hand.`,
          { plugin, cause: e },
        );
      }
    });
  }

  private idDir(id: string, plugin: string | undefined): string {
    return plugin === undefined ? join(this.dir, safeId(id)) : join(this.dir, OWNED_ROOT, safeId(plugin), safeId(id));
  }

  /** Creates `idDir` and its parents up to the store dir (0700), fsyncing each dir that got a new entry. */
  private async makeDirs(idDir: string): Promise<void> {
    const created = await mkdir(idDir, { recursive: true, mode: 0o700 });
    if (created === undefined) return;
    for (let dir = idDir; ; dir = dirname(dir)) {
      await syncDir(dirname(dir));
      if (dir === created || dirname(dir) === dir) break;
    }
  }

  /** Moves the ownerless snapshots of `id` to `plugin` if it has none of its own. */
  private async adopt(id: string, plugin: string, idDir: string): Promise<void> {
    if (await exists(idDir)) return;
    const legacy = join(this.dir, safeId(id));
    let stats: Stats;
    try {
      stats = await stat(legacy);
    } catch (e) {
      if (isENOENT(e)) return;
      throw e;
    }
    if (!stats.isDirectory()) return;
    await this.makeDirs(dirname(idDir));
    try {
      await rename(legacy, idDir);
    } catch (e) {
      if (isENOENT(e)) return; // taken meanwhile
      throw e;
    }
    await chmod(idDir, 0o700);
    await syncDir(this.dir);
    await syncDir(dirname(idDir));
    this.onAdopt({ id, plugin, from: legacy, to: idDir });
  }

  /** Removes generations beyond the newest `generations`, and temp leftovers; a failure is reported, not thrown (the new generation is stored). */
  private async prune(idDir: string, id: string, plugin: string | undefined): Promise<void> {
    let found: { snaps: Generation[]; temps: string[] };
    try {
      found = await scan(idDir);
    } catch (e) {
      this.onCorrupt({ id, plugin, path: idDir, reason: `could not list old generations to prune: ${explainFsError(e, idDir)}` });
      return;
    }
    const { snaps, temps } = found;
    for (const path of [...snaps.slice(this.generations).reverse().map((s) => s.path), ...temps]) {
      try {
        // A generation is ours to remove whatever sits there (a directory in place of a file, too).
        await rm(path, { recursive: true, force: true });
      } catch (e) {
        this.onCorrupt({ id, plugin, path, reason: `could not remove this old generation: ${explainFsError(e, path)}` });
      }
    }
  }

  /** Runs `task` after every earlier task for `key` has settled. */
  private exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(key) ?? Promise.resolve()).then(task);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }
}

/** Makes a directory 0700; best effort (a directory of another owner is left as it is). */
function tighten(dir: string): void {
  try {
    chmodSync(dir, 0o700);
  } catch {
    // not ours to change
  }
}

/** "plugin 'p' (stateful id 'x')", or "stateful id 'x'" when no plugin was given. */
function owner(id: string, plugin: string | undefined): string {
  return plugin === undefined ? `stateful id '${id}'` : `plugin '${plugin}' (stateful id '${id}')`;
}

/**
 * A file system error as a sentence that names the path and says what to do,
 * instead of a bare errno code.
 */
export function explainFsError(e: unknown, fallbackPath: string): string {
  const err = e as NodeJS.ErrnoException | null;
  const path = typeof err?.path === "string" ? err.path : fallbackPath;
  switch (err?.code) {
    case "ENOSPC":
      return `the file system holding ${path} is full (ENOSPC); free space on it, or move the data dir to a larger one`;
    case "EDQUOT":
      return `the disk quota of the host's user is exhausted writing ${path} (EDQUOT); free space or raise the quota`;
    case "EACCES":
    case "EPERM":
      return `permission denied on ${path} (${err.code}); give the host's user read and write access to it`;
    case "ENOTDIR":
      return `a part of ${path} is a file where a directory belongs (ENOTDIR); move that file away`;
    case "EEXIST":
      return `${path} exists but is not a directory (EEXIST); move it away so that the directory can be created`;
    case "EISDIR":
      return `${path} is a directory where a file belongs (EISDIR); move it away`;
    case "EROFS":
      return `${path} is on a read-only file system (EROFS); remount it read-write or move the data dir`;
    case "ENAMETOOLONG":
      return `the path ${path} is too long (ENAMETOOLONG); use a shorter data dir or stateful id`;
    case "ELOOP":
      return `${path} is a loop of symbolic links (ELOOP); remove the link`;
    case "EIO":
      return `an I/O error occurred on ${path} (EIO); check the disk`;
    case "EMFILE":
    case "ENFILE":
      return `too many open files while opening ${path} (${err.code}); raise the open-files limit`;
    default: {
      const message = e instanceof Error ? e.message : String(e);
      return `${message}${err?.code ? "" : ` (${path})`}`;
    }
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
interface Generation {
  generation: number;
  path: string;
}

async function scan(idDir: string): Promise<{ snaps: Generation[]; temps: string[] }> {
  let names: string[];
  try {
    names = await readdir(idDir);
  } catch (e) {
    if (isENOENT(e)) return { snaps: [], temps: [] };
    throw e;
  }
  const snaps: Generation[] = [];
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

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if (isENOENT(e)) return false;
    throw e;
  }
}

function isENOENT(e: unknown): boolean {
  return (e as NodeJS.ErrnoException | null)?.code === "ENOENT";
}

function warnCorrupt(c: CorruptSnapshot): void {
  process.emitWarning(`skipped snapshot ${c.path} of ${owner(c.id, c.plugin)}: ${c.reason}`, { code: "PLUGWIRE_CORRUPT_SNAPSHOT" });
}

function warnAdopted(a: AdoptedSnapshots): void {
  process.emitWarning(`plugin '${a.plugin}' adopted the ownerless snapshots of stateful id '${a.id}': moved ${a.from} to ${a.to}`, {
    code: "PLUGWIRE_ADOPTED_SNAPSHOT",
  });
}
