// kill-during-replay: counter acks a burst of ~30k payloads after a snapshot,
// is SIGKILLed with nothing un-acked (so its relaunch has only replay to do),
// and is SIGKILLed again while that relaunch is still replaying. A probe
// payload dispatched when the relaunch restored its snapshot queues behind
// the replay: if it is still pending at the second kill, the kill landed
// during the replay (or the redelivery right after it, which is empty here).
const BURST = 30_000;
const MAX_ROUNDS = 40;
/** When no kill has landed by the end of the duration, go on this long at most. */
const EXTRA_MS = 15_000;

export default {
  name: "kill-during-replay",
  summary: "counter replays ~30k payloads after a SIGKILL and is SIGKILLed again before the replay ends",
  async run(t) {
    const host = await t.startHost({ plugins: ["counter"], snapshotIntervalMs: 0 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const until = Date.now() + t.args.durationMs;
    const hardUntil = until + EXTRA_MS;
    const nextRestore = () =>
      new Promise((resolve) => {
        const timer = setTimeout(() => done(undefined), 20_000);
        const on = (e) => {
          if (e.plugin === "counter") done(e);
        };
        const done = (e) => {
          clearTimeout(timer);
          host.off("snapshot:restored", on);
          resolve(e);
        };
        host.on("snapshot:restored", on);
      });
    let replayMs = 150; // estimate, refined from each measured replay
    let landed = 0;
    let rounds = 0;
    const replays = [];
    for (let round = 0; round < MAX_ROUNDS; round++) {
      if (round > 0 && Date.now() >= (landed > 0 ? until : hardUntil)) break;
      rounds++;
      await host.snapshot("counter");
      await t.load(host, counter, { maxOutstanding: 4_000, until: Infinity, maxCount: BURST });
      if (await t.settle()) break;

      // First kill: nothing is un-acked, so the relaunch has the burst to replay.
      let restored = nextRestore();
      t.kill(host, "counter", "SIGKILL with the replay buffer full");
      let r = await restored;
      if (!r) {
        t.fail(`round ${round}: counter did not restore within 20 s of the first kill`);
        break;
      }
      const peer = t.randomPeer();
      const probe = counter.dispatch(host, peer.src, peer.hex);
      const delayMs = Math.floor(t.rand() * replayMs * 0.8);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      const inReplay = counter.isPending(probe);
      restored = nextRestore();
      const killed = t.kill(host, "counter", "SIGKILL during replay") ?? t.killProcessesOf("counter", "SIGKILL during replay")[0];
      if (killed !== undefined && inReplay) landed++;
      replays.push(r.replayed);

      // The next relaunch replays again; time it with a probe to aim the next kill.
      r = await restored;
      if (!r) {
        t.fail(`round ${round}: counter did not restore within 20 s of the second kill`);
        break;
      }
      const t1 = Date.now();
      const probe2 = counter.dispatch(host, peer.src, peer.hex);
      if (await t.settle()) break;
      if (!counter.isPending(probe2)) replayMs = Math.max(20, 0.5 * replayMs + 0.5 * (Date.now() - t1));
      t.log(`round ${round}: replay of ${r.replayed} payloads took ~${Math.round(replayMs)} ms; second kill ${delayMs} ms after restore ${inReplay ? "landed during the replay" : "came after the replay"}`);
    }
    const sizes = replays.length ? ` (replays of ${Math.min(...replays)}..${Math.max(...replays)} payloads)` : "";
    t.note(`${landed} of ${rounds} second kills landed while the relaunch was still replaying${sizes}`);
    if (landed === 0) t.fail("no kill landed while a relaunch was replaying: the scenario did not exercise its fault");
    await t.checkState(host, counter);
  },
};
