#!/usr/bin/env node
// bench sink: `bench.sink<suffix>` payloads are acked and otherwise ignored;
// `bench.lookup<suffix>` times sequential ctx.peers.lookupName round trips and
// reports them as JSON, sent (as the payload's effect) to the payload's source.
// BENCH_KIND_SUFFIX lets many copies run in one host with distinct kinds.
import { definePlugin, serve } from "@plugwire/sdk";

const suffix = process.env.BENCH_KIND_SUFFIX ?? "";
const SINK = `bench.sink${suffix}`;
const LOOKUP = `bench.lookup${suffix}`;

interface LookupRequest {
  /** Lookups to time. */
  n: number;
  /** Untimed lookups first. */
  warmup: number;
  /** Stop early after this long. */
  maxMs: number;
  /** Peer (hex) to report to. */
  reportTo: string;
}

export const sink = definePlugin({
  name: "bench-sink",
  payloadKinds: [SINK, LOOKUP],
  handlePayload(payload, ctx) {
    if (payload.kind === SINK) return;
    return (async () => {
      const req = JSON.parse(Buffer.from(payload.body).toString("utf8")) as LookupRequest;
      let name: string | undefined;
      for (let i = 0; i < req.warmup; i++) name = await ctx.peers.lookupName(payload.src);
      const times: number[] = [];
      const deadline = process.hrtime.bigint() + BigInt(req.maxMs) * 1_000_000n;
      for (let i = 0; i < req.n; i++) {
        const t0 = process.hrtime.bigint();
        name = await ctx.peers.lookupName(payload.src);
        const t1 = process.hrtime.bigint();
        times.push(Number(t1 - t0) / 1000);
        if (t1 > deadline) break;
      }
      times.sort((a, b) => a - b);
      const at = (p: number): number => times[Math.min(times.length - 1, Math.max(0, Math.ceil((p / 100) * times.length) - 1))]!;
      const report = {
        kind: "lookup",
        count: times.length,
        name,
        p50Us: at(50),
        p99Us: at(99),
        meanUs: times.reduce((a, b) => a + b, 0) / times.length,
        minUs: times[0],
        maxUs: times[times.length - 1],
      };
      await ctx.control.sendDirect(new Uint8Array(Buffer.from(req.reportTo, "hex")), new TextEncoder().encode(JSON.stringify(report)));
    })();
  },
});

void serve(sink);
