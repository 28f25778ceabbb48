// double-kill: a ready plugin is SIGKILLed, and 50 ms later whatever process
// that plugin has then (its relaunch, still starting) is SIGKILLed too. When
// the relaunch is still in its backoff at 50 ms, it is killed as soon as its
// process appears instead, so every pair is a real double fault.
import { node, sleep } from "../lib/util.mjs";

const GAP_MS = 50;
/** How long to wait for a relaunch still in its backoff at GAP_MS. */
const SPAWN_WAIT_MS = 2_000;

export default {
  name: "double-kill",
  summary: "counter and echo under load; a ready plugin SIGKILLed twice, 50 ms apart (the second kill hits its relaunch)",
  async run(t) {
    const host = await t.startHost({ plugins: ["counter", "echo"], snapshotIntervalMs: 1_000 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const echo = t.ledger({ kind: "echo.ping", plugin: "echo", tag: "e" });
    const echoPeer = { src: node(0x40), hex: "40".repeat(32) };
    const until = Date.now() + t.args.durationMs;
    let pairs = 0;
    let atGap = 0;
    let atSpawn = 0;
    await Promise.all([
      t.load(host, counter, { maxOutstanding: 2_000, until }),
      t.load(host, echo, { maxOutstanding: 1_000, until, next: () => echoPeer }),
      t.every(t.args.killEveryMs ?? 1_500, until, async () => {
        const first = t.killRandomReady(host, "first of two kills");
        if (!first) return;
        pairs++;
        await sleep(GAP_MS);
        if (t.killProcessesOf(first.plugin, `second kill, ${GAP_MS} ms after the first`).length > 0) {
          atGap++;
          return;
        }
        // Still in its restart backoff: kill the relaunch the moment it spawns.
        for (const by = Date.now() + SPAWN_WAIT_MS; Date.now() < by; ) {
          await sleep(5);
          if (t.killProcessesOf(first.plugin, "second kill, as the relaunch spawned").length > 0) {
            atSpawn++;
            return;
          }
        }
      }),
    ]);
    await t.settle();
    t.note(`${pairs} double kills: the second hit the relaunch ${GAP_MS} ms after the first ${atGap} times, as it spawned (after its backoff) ${atSpawn} times, never ${pairs - atGap - atSpawn} times`);
    if (atGap + atSpawn === 0) t.fail("no second kill found a process to kill: the scenario did not exercise its fault");
    await t.checkState(host, counter);
  },
};
