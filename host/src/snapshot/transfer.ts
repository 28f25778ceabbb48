/** Streams a snapshot out of a plugin, and a stored one back into it. */
import { create } from "@bufbuild/protobuf";
import { PlugwireError, RestoreRequestSchema, SNAPSHOT_CHUNK_BYTES } from "@plugwire/proto";
import type { DialedPlugin } from "../transport/dial.js";
import type { SnapshotRecord } from "./store.js";

/** What the host knows of the plugin, against which a snapshot header is checked as soon as it arrives. */
export interface SnapshotExpectation {
  /** The stateful id the plugin's Describe declared. */
  id: string;
  /** The snapshot versions the plugin's Describe listed. */
  versions: readonly number[];
  /** The highest seq sent to the plugin so far (an applied_seq cannot be past it). */
  highestSeq: () => number;
}

/** Chunks that carry no bytes a snapshot may have (the SDKs send none). */
const MAX_EMPTY_CHUNKS = 16;

/**
 * Takes a snapshot. The stream is checked as it arrives, and refused (the
 * call cancelled, nothing kept) at the first message that breaks the rules:
 * a chunk before the header, a second header, a message with neither, a
 * header whose id, version or applied_seq is not what `expect` allows, a
 * size_bytes over `maxBytes` (snapshot_too_large), or a chunk that takes the
 * bytes past size_bytes. Fewer bytes than size_bytes is refused at the end.
 * No more than size_bytes (so at most `maxBytes`) is ever buffered: one
 * buffer of size_bytes is allocated when the header passed its checks, and
 * the chunks are copied into it as they arrive (no concatenation at the end).
 */
export async function takeSnapshot(
  client: DialedPlugin["plugin"],
  plugin: string,
  maxBytes: number,
  deadlineMs: number,
  expect?: SnapshotExpectation,
): Promise<SnapshotRecord> {
  const stream = client.snapshot({}, { deadlineMs });
  let header: { id: string; version: number; appliedSeq: number; size: number } | undefined;
  // The record's bytes, allocated once from the header's size (checked
  // against maxBytes first), and filled chunk by chunk as they arrive: one
  // copy, made while the next chunks are on their way, and never a second
  // buffer of the whole state for a concatenation at the end.
  let bytes: Buffer | undefined;
  let received = 0;
  let emptyChunks = 0;
  try {
    for await (const message of stream) {
      if (message.part.case === "header") {
        if (header) throw misordered(plugin, "a second header");
        const h = message.part.value;
        if (h.sizeBytes > BigInt(maxBytes)) throw tooLarge(plugin, h.sizeBytes, maxBytes);
        if (expect) checkHeader(plugin, h, expect);
        header = { id: h.id, version: h.version, appliedSeq: Number(h.appliedSeq), size: Number(h.sizeBytes) };
        bytes = Buffer.allocUnsafeSlow(header.size);
      } else if (message.part.case === "chunk") {
        if (!header) throw misordered(plugin, "a chunk before its header");
        const chunk = message.part.value;
        if (chunk.byteLength === 0 && ++emptyChunks > MAX_EMPTY_CHUNKS) throw misordered(plugin, `more than ${MAX_EMPTY_CHUNKS} empty chunks`);
        received += chunk.byteLength;
        if (received > header.size) {
          throw new PlugwireError(
            "snapshot_failed",
            `plugin '${plugin}' sent more snapshot bytes than its header announced (${header.size}): at least ${received} arrived. ` +
              `The snapshot was discarded at once and the previous one is kept; the plugin must send exactly size_bytes bytes (docs/protocol.md §10)`,
            { plugin },
          );
        }
        bytes!.set(chunk, received - chunk.byteLength);
      } else {
        throw misordered(plugin, "a message with neither a header nor a chunk");
      }
    }
  } catch (e) {
    stream.cancel();
    throw PlugwireError.from(e, "snapshot_failed", plugin);
  }
  if (!header) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a snapshot without a header; the previous snapshot is kept. The stream is one header, then chunks (docs/protocol.md §10)`,
      { plugin },
    );
  }
  if (received !== header.size) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a truncated snapshot: its header says ${header.size} bytes but ${received} arrived. ` +
        `The snapshot was discarded and the previous one is kept; the plugin must send exactly size_bytes bytes (docs/protocol.md §10)`,
      { plugin },
    );
  }
  // A Buffer, as the bytes a decoded chunk had been (received === header.size here).
  return { id: header.id, version: header.version, appliedSeq: header.appliedSeq, bytes: bytes! };
}

/** Refuses a header whose id, version or applied_seq the plugin could not rightly send. */
function checkHeader(plugin: string, h: { id: string; version: number; appliedSeq: bigint }, expect: SnapshotExpectation): void {
  if (h.id !== expect.id) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a snapshot for stateful id ${JSON.stringify(h.id)}, but its Describe declared ${JSON.stringify(expect.id)}; ` +
        `the snapshot was discarded and the previous one is kept. A plugin snapshots only its own declared id.`,
      { plugin },
    );
  }
  if (!expect.versions.includes(h.version)) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a snapshot in version ${h.version}, but its Describe lists snapshot versions ${expect.versions.join(", ")}; ` +
        `the snapshot was discarded, since the plugin could not restore it. Write a version it declares.`,
      { plugin },
    );
  }
  const highest = expect.highestSeq();
  if (h.appliedSeq > BigInt(highest)) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a snapshot with applied_seq ${h.appliedSeq}, but the host has sent it nothing past seq ${highest}; ` +
        `the snapshot was discarded. Its Snapshot must report the seq of the last item its state includes.`,
      { plugin },
    );
  }
}

function misordered(plugin: string, what: string): PlugwireError {
  return new PlugwireError(
    "snapshot_failed",
    `plugin '${plugin}' sent ${what} in its Snapshot stream; the stream is one header, then chunks (docs/protocol.md §10). The snapshot was discarded`,
    { plugin },
  );
}

function tooLarge(plugin: string, size: bigint, max: number): PlugwireError {
  return new PlugwireError(
    "snapshot_too_large",
    `plugin '${plugin}' produced a ${size}-byte snapshot, over the ${max}-byte limit; raise maxSnapshotBytes or shrink the plugin's state`,
    { plugin },
  );
}

/** Streams a stored snapshot into the plugin in chunks. */
export async function restoreSnapshot(client: DialedPlugin["plugin"], record: SnapshotRecord, deadlineMs: number): Promise<void> {
  const { stream, response } = client.restore({ deadlineMs });
  // The plugin may fail the call (or die) while chunks are still being
  // written: stop writing then, and never leave `response` rejected and
  // unobserved, which would crash the host with an unhandled rejection.
  let settled = false;
  const done = response.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  const write = async (message: Parameters<typeof stream.write>[0]): Promise<void> => {
    if (settled || stream.write(message)) return;
    let onDrain!: () => void;
    const drained = new Promise<void>((resolve) => stream.once("drain", (onDrain = resolve)));
    await Promise.race([drained, done]);
    stream.off("drain", onDrain);
  };
  await write(
    create(RestoreRequestSchema, {
      part: {
        case: "header",
        value: {
          id: record.id,
          version: record.version,
          appliedSeq: BigInt(record.appliedSeq),
          sizeBytes: BigInt(record.bytes.byteLength),
        },
      },
    }),
  );
  for (let offset = 0; offset < record.bytes.byteLength && !settled; offset += SNAPSHOT_CHUNK_BYTES) {
    await write(create(RestoreRequestSchema, { part: { case: "chunk", value: record.bytes.subarray(offset, offset + SNAPSHOT_CHUNK_BYTES) } }));
  }
  stream.end();
  await response;
}
