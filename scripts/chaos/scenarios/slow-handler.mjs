// slow-handler: a stateful fixture whose handler takes 1 s per payload and
// answers each with an effect, SIGKILLed every few seconds. Few payloads, but
// each kill catches one mid-handler, with others queued behind it.
export default {
  name: "slow-handler",
  summary: "a stateful fixture taking 1 s per payload (and sending one effect each), SIGKILLed every --kill-every-ms (default 2500)",
  async run(t) {
    const plugin = t.plugin("slow-counter", { config: { delayMs: 1_000 } });
    // Snapshots every 2 s: a relaunch then has a slow payload or two to replay, as well as
    // up to 4 to redeliver, and still settles well within the 10 s stuck bound.
    const host = await t.startHost({ plugins: [plugin], snapshotIntervalMs: 2_000 });
    const slow = t.ledger({ kind: "slow.hit", plugin: "slow-counter", perPeer: true, tag: "s" });
    const until = Date.now() + t.args.durationMs;
    await Promise.all([
      t.load(host, slow, { maxOutstanding: 4, until }),
      t.every(t.args.killEveryMs ?? 2_500, until, () => t.kill(host, "slow-counter")),
    ]);
    await t.settle();
    await t.checkState(host, slow);
  },
};
