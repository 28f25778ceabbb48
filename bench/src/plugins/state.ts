#!/usr/bin/env node
// bench state: a stateful plugin holding one large byte array, for snapshot
// and restore throughput.
//   bench.state.fill   body {size, seed}: replace the state with `size` bytes
//   bench.state.report body {reportTo}: send timings and a checksum as JSON
// Timestamps are epoch milliseconds with sub-ms precision
// (performance.timeOrigin + performance.now()), comparable with the host's.
import { performance } from "node:perf_hooks";
import { definePlugin, RestoreFailedError, serve } from "@plugwire/sdk";

let state: Uint8Array = new Uint8Array(0);
const times: Record<string, number> = {};

function wallNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Cheap checksum over every 4099th byte plus the length. */
function checksum(bytes: Uint8Array): number {
  let h = bytes.byteLength >>> 0;
  for (let i = 0; i < bytes.byteLength; i += 4099) h = (Math.imul(h, 31) + bytes[i]!) >>> 0;
  return h;
}

function fill(size: number, seed: number): Uint8Array {
  // A 64 KiB seeded block, repeated: incompressible enough, and fast to build.
  const block = new Uint8Array(65536);
  let a = seed >>> 0;
  for (let i = 0; i < block.length; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    block[i] = a >>> 24;
  }
  const out = new Uint8Array(size);
  for (let off = 0; off < size; off += block.length) out.set(block.subarray(0, Math.min(block.length, size - off)), off);
  return out;
}

export const stateBench = definePlugin({
  name: "bench-state",
  payloadKinds: ["bench.state.fill", "bench.state.report"],
  start() {
    times.startDoneAt = wallNow();
  },
  async handlePayload(payload, ctx) {
    const req = JSON.parse(Buffer.from(payload.body).toString("utf8")) as { size?: number; seed?: number; reportTo?: string };
    if (payload.kind === "bench.state.fill") {
      state = fill(req.size ?? 0, req.seed ?? 1);
      return;
    }
    const report = { kind: "state", size: state.byteLength, checksum: checksum(state), pid: process.pid, ...times };
    await ctx.control.sendDirect(new Uint8Array(Buffer.from(req.reportTo ?? "", "hex")), new TextEncoder().encode(JSON.stringify(report)));
  },
  stateful: {
    id: "bench.state",
    versions: [1],
    snapshot() {
      times.snapshotCalledAt = wallNow();
      return { version: 1, bytes: state };
    },
    restore({ bytes }) {
      times.restoreCalledAt = wallNow();
      if (!(bytes instanceof Uint8Array)) throw new RestoreFailedError("snapshot bytes are not a Uint8Array");
      state = bytes;
      times.restoreDoneAt = wallNow();
    },
  },
});

void serve(stateBench);
