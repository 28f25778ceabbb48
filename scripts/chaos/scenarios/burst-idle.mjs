// burst-idle: the demo's pattern. A snapshot, then a big burst to counter
// that leaves ~30k payloads in the replay buffer and thousands un-acked, a
// SIGKILL, and then nothing more is dispatched: the relaunch must finish the
// replay and the redelivery by itself, and every dispatch must settle.
const WARM_UP = 5_000;
const BURST = 36_000;
const BURST_OUTSTANDING = 8_000;
/** Fewer un-acked payloads than this at the kill and the cycle did not test what it should. */
const MIN_UNACKED_AT_KILL = 1_000;
const MAX_CYCLES = 20;

export default {
  name: "burst-idle",
  summary: "snapshot, a 36k burst to counter (256 B bodies, 8k outstanding), SIGKILL with thousands un-acked, then no dispatch: all must settle",
  async run(t) {
    const host = await t.startHost({ plugins: ["counter"], snapshotIntervalMs: 0 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true, body: new Uint8Array(256) });
    const until = Date.now() + t.args.durationMs;
    let cycles = 0;
    let landed = 0;
    for (let cycle = 0; cycle < MAX_CYCLES && (cycle === 0 || Date.now() < until); cycle++) {
      cycles++;
      // Some traffic, then the snapshot the replay will start from.
      await t.load(host, counter, { maxOutstanding: 4_000, until: Infinity, maxCount: WARM_UP });
      if (await t.settle()) break;
      await host.snapshot("counter");
      // The burst: everything after the snapshot goes to the replay buffer once acked.
      await t.load(host, counter, { maxOutstanding: BURST_OUTSTANDING, until: Infinity, maxCount: BURST });
      const s = host.status().find((x) => x.name === "counter");
      const unacked = counter.pending;
      const replayBefore = t.restored.length;
      t.kill(host, "counter", "SIGKILL after the burst");
      if (unacked >= MIN_UNACKED_AT_KILL) landed++;
      t.log(`cycle ${cycle}: killed counter with ${unacked} dispatches un-acked (inFlight ${s?.inFlight}, queued ${s?.queued}); no further dispatch`);
      // Idle: nothing more is dispatched; every dispatch must settle by itself.
      const stuck = await t.settle();
      const restored = t.restored.slice(replayBefore).find((r) => r.plugin === "counter");
      if (restored) t.log(`cycle ${cycle}: relaunch restored seq ${restored.appliedSeq} and had ${restored.replayed} payloads to replay`);
      if (stuck) break;
    }
    t.note(`${cycles} cycles, ${landed} killed with >= ${MIN_UNACKED_AT_KILL} dispatches un-acked`);
    if (landed === 0) t.fail(`no cycle killed counter with at least ${MIN_UNACKED_AT_KILL} dispatches un-acked: the scenario did not exercise its fault`);
    await t.checkState(host, counter);
  },
};
