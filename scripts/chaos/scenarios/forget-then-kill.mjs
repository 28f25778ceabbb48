// forget-then-kill: a peer A sends payloads to counter, a snapshot covers
// them, A is forgotten (host.peerForgotten), and counter is SIGKILLed. After
// recovery A must be absent. Rounds alternate with the other order: counter
// is SIGKILLed first and A forgotten while it is restarting. Other peers keep
// sending throughout.
import { node, withTimeout } from "../lib/util.mjs";

const HITS_FROM_A = 100;

export default {
  name: "forget-then-kill",
  summary: "payloads from peer A, a snapshot, host.peerForgotten(A), SIGKILL counter (and the reverse order); after recovery A is absent",
  async run(t) {
    const host = await t.startHost({ plugins: ["counter"], snapshotIntervalMs: 0 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const until = Date.now() + t.args.durationMs;
    const told = { "forget-then-kill": { ok: 0, failed: 0 }, "kill-then-forget": { ok: 0, failed: 0 } };
    let rounds = 0;
    const forgetRound = async (round) => {
      const variant = round % 2 === 0 ? "forget-then-kill" : "kill-then-forget";
      const src = node(0x80 + (round % 100));
      const a = t.lib.hex(src);
      for (let i = 0; i < HITS_FROM_A; i++) counter.dispatch(host, src, a);
      // A's payloads acked and in a snapshot: the state the relaunch restores holds A.
      const deadline = Date.now() + 10_000;
      while ((counter.peers.get(a)?.pending ?? 0) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      if ((counter.peers.get(a)?.pending ?? 0) > 0) {
        t.fail(`round ${round}: peer A's payloads not acked within 10 s`);
        return;
      }
      await withTimeout(host.snapshot("counter"), 30_000, "snapshot before the forget").catch((e) => t.log(`round ${round}: snapshot failed: ${e.message}`));
      const forget = async () => {
        const result = await withTimeout(host.peerForgotten(src), 15_000, "peerForgotten");
        counter.forget(a);
        const failed = result.failed.find((f) => f.plugin === "counter");
        told[variant][failed ? "failed" : "ok"]++;
        if (failed) t.log(`round ${round} (${variant}): counter not told: ${failed.error.message}`);
      };
      if (variant === "forget-then-kill") {
        await forget();
        t.kill(host, "counter", "SIGKILL after a forget");
      } else {
        t.kill(host, "counter", "SIGKILL before a forget");
        await forget();
      }
      rounds++;
      if (!(await t.waitState(host, "counter", "ready"))) t.fail(`round ${round}: counter not ready 15 s after the kill`);
    };
    await Promise.all([
      t.load(host, counter, { maxOutstanding: 500, until }),
      t.every(t.args.killEveryMs ?? 800, until, forgetRound),
    ]);
    if (rounds < 2) await forgetRound(rounds);
    if (rounds < 2) await forgetRound(rounds);
    await t.settle();
    t.note(
      `${rounds} forgets; counter told: ${Object.entries(told)
        .map(([v, r]) => `${v} ok ${r.ok} failed ${r.failed}`)
        .join(", ")}`,
    );
    await t.checkState(host, counter);
  },
};
