// steady: the original chaos run. Steady, bounded load on counter, echo and
// presence while a random ready plugin is SIGKILLed every --kill-every-ms.
import { node } from "../lib/util.mjs";

export default {
  name: "steady",
  summary: "steady load on counter, echo and presence; a random ready plugin SIGKILLed every --kill-every-ms (default 1000)",
  async run(t) {
    const host = await t.startHost({ plugins: ["counter", "echo", "presence"], snapshotIntervalMs: 1_000 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const echo = t.ledger({ kind: "echo.ping", plugin: "echo", tag: "e" });
    const presence = t.ledger({ kind: "presence.who", plugin: "presence", body: new Uint8Array() });
    const echoPeer = { src: node(0x40), hex: "40".repeat(32) };
    const until = Date.now() + t.args.durationMs;
    await Promise.all([
      t.load(host, counter, { maxOutstanding: 2_000, until }),
      t.load(host, echo, { maxOutstanding: 2_000, until, next: () => echoPeer }),
      t.load(host, presence, { maxOutstanding: 64, until }),
      t.every(t.args.killEveryMs ?? 1_000, until, () => t.killRandomReady(host)),
    ]);
    await t.settle();
    await t.checkState(host, counter);
  },
};
