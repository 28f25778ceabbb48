/** Streams a snapshot out of a plugin, and a stored one back into it. */
import { create } from "@bufbuild/protobuf";
import { PlugwireError, RestoreRequestSchema, SNAPSHOT_CHUNK_BYTES } from "@plugwire/proto";
import type { DialedPlugin } from "../transport/dial.js";
import type { SnapshotRecord } from "./store.js";

/** Takes a snapshot; fails with snapshot_too_large past `maxBytes`. */
export async function takeSnapshot(
  client: DialedPlugin["plugin"],
  plugin: string,
  maxBytes: number,
  deadlineMs: number,
): Promise<SnapshotRecord> {
  const stream = client.snapshot({}, { deadlineMs });
  let header: { id: string; version: number; appliedSeq: number; size: number } | undefined;
  const chunks: Uint8Array[] = [];
  let received = 0;
  try {
    for await (const message of stream) {
      if (message.part.case === "header") {
        if (header) throw misordered(plugin, "a second header");
        const h = message.part.value;
        header = { id: h.id, version: h.version, appliedSeq: Number(h.appliedSeq), size: Number(h.sizeBytes) };
        if (header.size > maxBytes) throw tooLarge(plugin, header.size, maxBytes);
      } else if (message.part.case === "chunk") {
        if (!header) throw misordered(plugin, "a chunk before its header");
        received += message.part.value.byteLength;
        if (received > header.size) {
          throw new PlugwireError("snapshot_failed", `plugin '${plugin}' sent a snapshot longer than its header says (${header.size} bytes)`, { plugin });
        }
        if (received > maxBytes) throw tooLarge(plugin, received, maxBytes);
        chunks.push(message.part.value);
      }
    }
  } catch (e) {
    stream.cancel();
    throw PlugwireError.from(e, "snapshot_failed", plugin);
  }
  if (!header) throw new PlugwireError("snapshot_failed", `plugin '${plugin}' sent a snapshot without a header`, { plugin });
  if (received !== header.size) {
    throw new PlugwireError(
      "snapshot_failed",
      `plugin '${plugin}' sent a truncated snapshot: its header says ${header.size} bytes but ${received} arrived`,
      { plugin },
    );
  }
  const bytes = chunks.length === 1 ? chunks[0]! : new Uint8Array(Buffer.concat(chunks, received));
  return { id: header.id, version: header.version, appliedSeq: header.appliedSeq, bytes };
}

function misordered(plugin: string, what: string): PlugwireError {
  return new PlugwireError(
    "snapshot_failed",
    `plugin '${plugin}' sent ${what} in its Snapshot stream; the stream is one header, then chunks (docs/protocol.md §10). The snapshot was discarded`,
    { plugin },
  );
}

function tooLarge(plugin: string, size: number, max: number): PlugwireError {
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
