/** Snapshot and Restore, for plugins that describe a stateful surface. */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { ERROR_DETAIL_TRAILER, PlugwireError, health, type SnapshotHeader, type StatefulSurface } from "@plugwire/proto";
import type { DialedPlugin } from "./dial.js";
import { describeExit, type ExitSeen } from "./process.js";
import type { Session, SnapshotSeen } from "./session.js";
import { CheckFailure, fail, pass, skip, type Check, type Outcome } from "./types.js";
import { describeFailure, grpcCodeOf, statusName } from "./util.js";

const GARBAGE_BYTES = 257;
/** How long a plugin that stopped answering may take to be seen exiting, in ms. */
const CRASH_NOTICE_MS = 1_000;
/** How many bytes short of its size_bytes the truncated restore is. */
const TRUNCATED_BY = 100;
/** How far past the newest version the kit asks for an unsupported one. */
const UNSUPPORTED_VERSION_OFFSET = 1000;

type HeaderInit = Pick<SnapshotHeader, "id" | "version" | "appliedSeq" | "sizeBytes">;

/** Reads a whole Snapshot stream; a malformed stream throws a CheckFailure. */
export async function readSnapshot(conn: DialedPlugin, deadlineMs: number): Promise<{ header: SnapshotHeader; bytes: Buffer; chunks: number }> {
  let header: SnapshotHeader | undefined;
  const chunks: Buffer[] = [];
  for await (const message of conn.plugin.snapshot({}, { deadlineMs })) {
    if (message.part.case === "header") {
      if (header || chunks.length > 0) throw new CheckFailure("the Snapshot stream carried a second header; send exactly one header, first");
      header = message.part.value;
    } else if (message.part.case === "chunk") {
      if (!header) throw new CheckFailure("the Snapshot stream sent a chunk before its header; the header comes first");
      chunks.push(Buffer.from(message.part.value));
    }
  }
  if (!header) throw new CheckFailure("the Snapshot stream ended without a header");
  return { header, bytes: Buffer.concat(chunks), chunks: chunks.length };
}

/** Streams a snapshot into Restore: a header, then the bytes in one chunk. */
async function restore(conn: DialedPlugin, header: HeaderInit, bytes: Uint8Array, deadlineMs: number): Promise<void> {
  const { stream, response } = conn.plugin.restore({ deadlineMs });
  stream.write({ part: { case: "header", value: header } });
  if (bytes.length > 0) stream.write({ part: { case: "chunk", value: bytes } });
  stream.end();
  await response;
}

function statefulOf(session: Session): StatefulSurface | undefined {
  return session.main!.description?.stateful;
}

const NOT_STATEFUL = "the plugin is not stateful (Describe reported no stateful surface)";

/**
 * Bytes the plugin can read, of other state than it holds now, for restores
 * it must refuse for another reason: its snapshot from the middle of the
 * delivery phase (or its latest one).
 */
function offeredBytes(session: Session): Buffer {
  return session.earlierSnapshot?.bytes ?? session.snapshot?.bytes ?? Buffer.alloc(0);
}

/** An applied_seq other than the plugin's, for restores it must refuse. */
function offeredAppliedSeq(session: Session): bigint {
  const current = session.snapshot?.header.appliedSeq ?? 0n;
  const earlier = session.earlierSnapshot?.header.appliedSeq;
  return earlier !== undefined && earlier !== current ? earlier : current + 1_000_000n;
}

/**
 * After a refused call: the main launch's exit if the call crashed it, else
 * undefined. A Health.Check round trip shows it is alive without waiting.
 */
async function crashOf(session: Session): Promise<ExitSeen | undefined> {
  const main = session.main!;
  try {
    await main.conn!.health.check({ service: "" }, { deadlineMs: session.timeoutMs });
    return main.proc.exitInfo;
  } catch {
    // Unreachable: it crashed, or it is about to be reported as gone.
    return main.proc.exitedWithin(CRASH_NOTICE_MS);
  }
}

/** Runs `body` only for a stateful plugin. */
function statefulCheck(check: Omit<Check, "run"> & { run(session: Session, stateful: StatefulSurface): Promise<Outcome> }): Check {
  return {
    ...check,
    async run(session) {
      const stateful = statefulOf(session);
      return stateful ? check.run(session, stateful) : skip(NOT_STATEFUL);
    },
  };
}

export const snapshotCheck = statefulCheck({
  id: "snapshot",
  title: "Snapshot streams a header, then chunks that add up to size_bytes",
  needs: ["start"],
  mainLaunch: true,
  async run(session, stateful) {
    let snap;
    try {
      snap = await readSnapshot(session.main!.conn!, session.timeoutMs);
    } catch (e) {
      if (e instanceof CheckFailure) return fail(e.message);
      return fail(`Snapshot failed: ${describeFailure(e)}`);
    }
    const { header, bytes } = snap;
    if (header.id !== stateful.id) return fail(`the snapshot header's id is '${header.id}', but Describe's stateful id is '${stateful.id}'`);
    if (header.sizeBytes !== BigInt(bytes.length)) {
      return fail(`the header says size_bytes=${header.sizeBytes}, but the chunks carried ${bytes.length} bytes; set size_bytes to the total length`);
    }
    const log = session.delivery;
    if (log && log.through === log.sentThrough && header.appliedSeq !== log.through) {
      return fail(
        `the header says applied_seq=${header.appliedSeq}, but the plugin had applied and acked every item through seq ${log.through}; applied_seq is the seq of the last item applied (payload or peer_forgotten)`,
      );
    }
    session.snapshot = { header, bytes };
    return pass(`'${header.id}' v${header.version}, applied_seq ${header.appliedSeq}, ${bytes.length} bytes in ${snap.chunks} chunk(s)`);
  },
});

export const restoreOwnCheck = statefulCheck({
  id: "restore-own",
  title: "the plugin's own snapshot restores cleanly",
  needs: ["snapshot"],
  mainLaunch: true,
  async run(session) {
    const { header, bytes } = session.snapshot!;
    try {
      await restore(session.main!.conn!, header, bytes, session.timeoutMs);
    } catch (e) {
      return fail(`Restore of the snapshot it just took (v${header.version}, ${bytes.length} bytes) failed: ${describeFailure(e)}`);
    }
    return pass(`v${header.version}, ${bytes.length} bytes restored`);
  },
});

export const restoreUnsupportedCheck = statefulCheck({
  id: "restore-unsupported-version",
  title: "Restore of an unknown version fails with UnsupportedVersion",
  needs: ["start"],
  mainLaunch: true,
  async run(session, stateful) {
    const version = Math.max(...stateful.snapshotVersions) + UNSUPPORTED_VERSION_OFFSET;
    // Readable bytes of other state, and another applied_seq: a plugin that takes either shows it in 'restore-keeps-state'.
    const bytes = offeredBytes(session);
    const header = { id: stateful.id, version, appliedSeq: offeredAppliedSeq(session), sizeBytes: BigInt(bytes.length) };
    const how = `fail with status FAILED_PRECONDITION and the ${ERROR_DETAIL_TRAILER} trailer ErrorDetail{unsupported_version{version, expected}} (docs/protocol.md §11), leaving the state untouched`;
    try {
      await restore(session.main!.conn!, header, bytes, session.timeoutMs);
    } catch (e) {
      const code = grpcCodeOf(e);
      const err = PlugwireError.from(e);
      if (err.code !== "unsupported_version") {
        const trailer = err.detail ? `a ${ERROR_DETAIL_TRAILER} trailer of kind ${err.detail.kind.case}` : `no ${ERROR_DETAIL_TRAILER} trailer`;
        return fail(`Restore of version ${version} failed with ${statusName(code)} and ${trailer}; ${how}`);
      }
      if (code !== grpc.status.FAILED_PRECONDITION) {
        return fail(`Restore of version ${version} sent UnsupportedVersion with status ${statusName(code)}; ${how}`);
      }
      const detail = err.detail?.kind.case === "unsupportedVersion" ? err.detail.kind.value : undefined;
      if (detail && detail.version !== version) return fail(`UnsupportedVersion names version ${detail.version}, but the snapshot was version ${version}`);
      return pass(`version ${version}: FAILED_PRECONDITION with UnsupportedVersion{version ${version}, expected [${detail?.expected.join(", ") ?? ""}]}`);
    }
    return fail(`Restore of version ${version} succeeded, but Describe lists only ${stateful.snapshotVersions.join(", ")}; ${how}`);
  },
});

export const restoreGarbageCheck = statefulCheck({
  id: "restore-garbage",
  title: "Restore of garbage bytes fails with RestoreFailed, without crashing",
  needs: ["start"],
  mainLaunch: true,
  async run(session, stateful) {
    const main = session.main!;
    const own = session.snapshot?.header.version;
    const version = own !== undefined && stateful.snapshotVersions.includes(own) ? own : stateful.snapshotVersions[0]!;
    const bytes = randomBytes(GARBAGE_BYTES);
    const header = { id: stateful.id, version, appliedSeq: offeredAppliedSeq(session), sizeBytes: BigInt(bytes.length) };
    const what = `Restore of ${bytes.length} random bytes (a valid header, version ${version})`;
    try {
      await restore(main.conn!, header, bytes, session.timeoutMs);
    } catch (e) {
      const exit = await crashOf(session);
      if (exit) {
        return fail(`${what} crashed the plugin: it ${describeExit(exit)}.${main.proc.stderrHint()} Catch decode errors and fail the call with RestoreFailed instead`);
      }
      const err = PlugwireError.from(e);
      if (err.code !== "restore_failed") {
        return fail(`${what} failed with ${describeFailure(e)}, not as RestoreFailed; fail with INVALID_ARGUMENT and the ${ERROR_DETAIL_TRAILER} trailer ErrorDetail{restore_failed{details}}`);
      }
      try {
        const r = await main.conn!.health.check({ service: "" }, { deadlineMs: session.timeoutMs });
        if (r.status !== health.HealthCheckResponse_ServingStatus.SERVING) {
          return fail(`after a refused restore, Health answered ${health.HealthCheckResponse_ServingStatus[r.status]}; a failed Restore is not fatal`);
        }
      } catch (healthError) {
        return fail(`after a refused restore, Health.Check failed: ${describeFailure(healthError)}`);
      }
      return pass(`RestoreFailed (${statusName(grpcCodeOf(e))}); still SERVING`);
    }
    return fail(`${what} succeeded; validate restored bytes (decode them, check invariants; add a magic number or checksum if any bytes would decode) and fail with RestoreFailed`);
  },
});

/** One restore a plugin must refuse, and why. */
interface RefusedRestore {
  what: string;
  header: HeaderInit;
  bytes: Uint8Array;
}

function refusedRestores(session: Session, stateful: StatefulSurface, version: number): RefusedRestore[] {
  const bytes = offeredBytes(session);
  const appliedSeq = offeredAppliedSeq(session);
  const header = (changes: Partial<HeaderInit>): HeaderInit => ({ id: stateful.id, version, appliedSeq, sizeBytes: BigInt(bytes.length), ...changes });
  return [
    { what: "a Restore of an unsupported version", header: header({ version: Math.max(...stateful.snapshotVersions) + UNSUPPORTED_VERSION_OFFSET }), bytes },
    { what: `a Restore whose id is not '${stateful.id}'`, header: header({ id: `${stateful.id}.other` }), bytes },
    { what: "a truncated Restore (fewer bytes than size_bytes)", header: header({ sizeBytes: BigInt(bytes.length + TRUNCATED_BY) }), bytes },
    { what: `a Restore of ${GARBAGE_BYTES} random bytes`, header: header({ sizeBytes: BigInt(GARBAGE_BYTES) }), bytes: randomBytes(GARBAGE_BYTES) },
  ];
}

/** What differs between two snapshots of what should be the same state, or undefined. */
function stateChange(before: SnapshotSeen, after: SnapshotSeen, compareBytes: boolean): string | undefined {
  if (after.header.appliedSeq !== before.header.appliedSeq) return `applied_seq became ${after.header.appliedSeq} (it was ${before.header.appliedSeq})`;
  if (after.header.version !== before.header.version) return `the snapshot version became ${after.header.version} (it was ${before.header.version})`;
  if (compareBytes && !after.bytes.equals(before.bytes)) return `the snapshot bytes changed (${before.bytes.length} bytes before, ${after.bytes.length} after)`;
  return undefined;
}

export const restoreKeepsStateCheck = statefulCheck({
  id: "restore-keeps-state",
  title: "a refused Restore (unsupported version, other id, truncated, garbage) leaves the state as it was",
  needs: ["restore-own"],
  mainLaunch: true,
  async run(session, stateful) {
    const conn = session.main!.conn!;
    const proc = session.main!.proc;
    const taken = session.snapshot!;
    const HOW = "check everything (id, size, version, the decoded state) before replacing any state or applied_seq, and change nothing when a check fails";
    try {
      // The state restore-own restored, after the refused restores of the two checks before this one.
      const baseline = await readSnapshot(conn, session.timeoutMs);
      const earlier = stateChange(taken, baseline, false);
      if (earlier) return fail(`after the refused restores of 'restore-unsupported-version' and 'restore-garbage', ${earlier}; ${HOW}`);
      // Two snapshots of one state should be the same bytes; when they are not, only applied_seq is compared.
      const again = await readSnapshot(conn, session.timeoutMs);
      const compareBytes = again.bytes.equals(baseline.bytes);
      const restores = refusedRestores(session, stateful, baseline.header.version);
      for (const r of restores) {
        let accepted = true;
        try {
          await restore(conn, r.header, r.bytes, session.timeoutMs);
        } catch {
          const exit = await crashOf(session);
          if (exit) return fail(`${r.what} crashed the plugin: it ${describeExit(exit)}.${proc.stderrHint()} Refuse it with RestoreFailed instead`);
          accepted = false;
        }
        if (accepted) return fail(`${r.what} was accepted; refuse it with RestoreFailed (UnsupportedVersion for a version not in snapshot_versions) and keep the state`);
        const after = await readSnapshot(conn, session.timeoutMs);
        const change = stateChange(baseline, after, compareBytes);
        if (change) return fail(`after ${r.what} was refused, ${change}; ${HOW}`);
      }
      const bytes = compareBytes ? " and the snapshot bytes" : " (the bytes were not compared: two snapshots of the same state differed)";
      return pass(`${restores.length} refused restores (unsupported version, other id, truncated, garbage) left applied_seq at ${baseline.header.appliedSeq}${bytes} unchanged`);
    } catch (e) {
      if (e instanceof CheckFailure) return fail(e.message);
      return fail(`Snapshot failed: ${describeFailure(e)}`);
    }
  },
});
