// freeze: a plugin that hangs without crashing. Under load on counter and
// echo, a random ready plugin is SIGSTOPped every --kill-every-ms (default
// 2500, or a quarter of the run if shorter). The first freeze is left in
// place, the next thawed, and so on. A thawed one gets SIGCONT after 200 ms, a stall shorter
// than the hang detection: the plugin must carry on with nothing lost and no
// restart needed. The others stay frozen: the host must find the plugin hung
// (health checks time out), SIGKILL it, restart it with its state restored,
// and redeliver what it held. Health checks are tightened so detection takes
// about a second; everything else keeps its default.
import { node, sleep } from "../lib/util.mjs";

const THAW_AFTER_MS = 200;
const HEALTH = { healthIntervalMs: 300, healthTimeoutMs: 300, healthFailures: 2 };

function signal(pid, sig) {
  try {
    process.kill(pid, sig);
    return true;
  } catch (e) {
    if (e.code === "ESRCH") return false;
    throw e;
  }
}

export default {
  name: "freeze",
  summary: "counter and echo under load; a random ready plugin SIGSTOPped every --kill-every-ms (default 2500, or a quarter of the run): every other one is thawed after 200 ms, the rest stay frozen until the host finds them hung and restarts them",
  async run(t) {
    const host = await t.startHost({ plugins: [t.plugin("counter", HEALTH), t.plugin("echo", HEALTH)], snapshotIntervalMs: 1_000 });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const echo = t.ledger({ kind: "echo.ping", plugin: "echo", tag: "e" });
    const echoPeer = { src: node(0x40), hex: "40".repeat(32) };
    const hung = [];
    host.on("plugin:exit", (e) => {
      if (e.reason === "hung") hung.push(e.pid);
    });
    const frozen = new Set();
    const until = Date.now() + t.args.durationMs;
    let round = 0;
    let thawed = 0;
    await Promise.all([
      t.load(host, counter, { maxOutstanding: 2_000, until }),
      t.load(host, echo, { maxOutstanding: 1_000, until, next: () => echoPeer }),
      // Short runs (CI's 5 s) still get a freeze left in place and a thawed one.
      t.every(t.args.killEveryMs ?? Math.min(2_500, Math.max(500, t.args.durationMs / 4)), until, async () => {
        const ready = host.status().filter((s) => s.state === "ready" && s.pid);
        if (ready.length === 0) return;
        const victim = ready[Math.floor(t.rand() * ready.length)];
        // The first is left frozen: the fault that matters most happens in any run.
        const thaw = round++ % 2 === 1;
        t.pidsSeen.add(victim.pid);
        if (!signal(victim.pid, "SIGSTOP")) return;
        t.fault({ what: thaw ? `SIGSTOP, SIGCONT after ${THAW_AFTER_MS} ms` : "SIGSTOP (left frozen)", plugin: victim.name, pid: victim.pid });
        if (thaw) {
          await sleep(THAW_AFTER_MS);
          if (signal(victim.pid, "SIGCONT")) thawed++;
        } else {
          frozen.add(victim.pid);
        }
      }),
    ]);
    await t.settle();
    // A frozen process the host never killed would be a hang it missed.
    const missed = [...frozen].filter((pid) => !hung.includes(pid) && signal(pid, 0));
    for (const pid of missed) signal(pid, "SIGCONT");
    t.note(`${round} freezes: ${thawed} thawed after ${THAW_AFTER_MS} ms, ${frozen.size} left frozen; the host found ${hung.length} plugin launches hung and restarted them`);
    if (frozen.size === 0) t.fail("no plugin was left frozen: the scenario did not exercise its fault");
    if (missed.length > 0) t.fail(`the host never found ${missed.length} frozen plugin process(es) hung: pids ${missed.join(", ")}`);
    await t.checkState(host, counter);
  },
};
