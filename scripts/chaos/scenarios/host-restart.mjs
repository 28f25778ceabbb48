// host-restart: a host in a child process runs counter (with echo and
// presence) under load and is SIGKILLed; its plugins must exit by themselves
// (stdin EOF). A new host on the same data dir restores counter. Then that
// host runs load and plugin kills of its own, is stopped gracefully with a
// burst in flight, and a third host checks the state that stop saved.
//
// What "exact" means after a host crash (see docs/guarantees.md, Chaos matrix):
// the replay buffer lived in the dead host's memory, so the restored state is
// the newest durable snapshot, at applied_seq S. The first host numbered its
// payloads in dispatch order from seq 1, so the state must equal exactly the
// first S dispatches: no more, no less. Every one of them must have resolved
// in the first host before that snapshot was stored, and S must be at least
// the newest snapshot the first host reported as stored. Payloads the first
// host acked after S are the documented loss window of a host crash: reported,
// not failed. After the graceful stop the state must equal those S dispatches
// plus everything the second host acked.
import { fork } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { markedProcesses, prng, sigkill, sleep, withTimeout } from "../lib/util.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const FIRST_HOST_SNAPSHOT_MS = 500;
const FINAL_BURST = 5_000;

export default {
  name: "host-restart",
  summary: "SIGKILL a host (in a child process) under load; a new host on the same data dir restores exactly the snapshot's prefix; then a graceful stop under load",
  async run(t) {
    const seed = Math.floor(t.rand() * 2 ** 32);
    const durationMs = t.args.durationMs;

    // ---------------------------------------------------------------- host 1
    const child = fork(
      join(here, "..", "host-child.mjs"),
      [
        JSON.stringify({
          repo: t.repo,
          run: t.run,
          dataDir: t.dataDir,
          seed,
          logPath: `${t.logPath}.host1`,
          snapshotIntervalMs: FIRST_HOST_SNAPSHOT_MS,
          maxOutstanding: 2_000,
          maxMs: durationMs + 60_000,
        }),
      ],
      { stdio: ["ignore", "inherit", "inherit", "ipc"] },
    );
    const first = { dispatched: 0, ackedPrefix: 0, acked: 0, rejected: 0, pids: new Set(), snapshots: [], ready: false };
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.on("message", (m) => {
      first.dispatched = Math.max(first.dispatched, m.dispatched);
      first.ackedPrefix = Math.max(first.ackedPrefix, m.ackedPrefix);
      first.acked = Math.max(first.acked, m.acked);
      first.rejected = Math.max(first.rejected, m.rejected);
      for (const pid of m.pids) first.pids.add(pid);
      if (m.type === "ready") first.ready = true;
      if (m.type === "snapshot") first.snapshots.push({ appliedSeq: m.appliedSeq, ackedPrefix: m.ackedPrefix });
    });
    try {
      const readyBy = Date.now() + 30_000;
      while (!first.ready && Date.now() < readyBy && child.exitCode === null) await sleep(20);
      if (!first.ready) throw new Error("the first host did not get ready within 30 s");
      t.log(`first host (pid ${child.pid}) ready; plugins ${[...first.pids].join(", ")}`);
      // Kill it in the middle of its run, once it has stored at least one snapshot.
      const killAt = Date.now() + durationMs * (0.35 + 0.2 * t.rand());
      while (Date.now() < killAt || (first.snapshots.length === 0 && Date.now() < killAt + 5_000)) await sleep(10);
    } finally {
      sigkill(child.pid);
    }
    t.fault({ what: "SIGKILL of the host process", plugin: "host", pid: child.pid });
    await withTimeout(exited, 10_000, "the first host to exit after SIGKILL");
    t.extraPayloads += first.dispatched;
    const hostAcked = first.acked;
    t.log(
      `first host SIGKILLed after ${first.dispatched} dispatches (${hostAcked} acked as last reported, ${first.rejected} rejected); ` +
        `snapshots stored through seq ${first.snapshots.map((s) => s.appliedSeq).join(", ") || "none"}`,
    );
    if (first.rejected > 0) t.fail(`the first host rejected ${first.rejected} dispatches with no fault injected`);
    for (const s of first.snapshots) {
      if (s.ackedPrefix < s.appliedSeq) {
        t.fail(`the first host stored a snapshot through seq ${s.appliedSeq} when only ${s.ackedPrefix} dispatches had resolved`);
      }
    }

    // Its plugins notice stdin EOF and exit by themselves.
    let left = markedProcesses(t.run).filter((p) => p.host === "1");
    for (let waited = 0; left.length > 0 && waited < 5_000; waited += 100) {
      await sleep(100);
      left = markedProcesses(t.run).filter((p) => p.host === "1");
    }
    if (left.length > 0) {
      t.extraOrphans += left.length;
      t.fail(`${left.length} plugins of the SIGKILLed host still alive 5 s later: ${left.map((p) => `${p.plugin} ${p.pid}`).join(", ")}`);
      for (const p of left) sigkill(p.pid);
    }

    // ---------------------------------------------------------------- host 2
    const before = t.restored.length;
    const host2 = await t.startHost({
      plugins: ["counter", "echo", "presence"].map((n) => t.plugin(n, { hostTag: "2" })),
      snapshotIntervalMs: 1_000,
    });
    const restored = t.restored.slice(before).find((r) => r.plugin === "counter");
    const S = restored?.appliedSeq ?? 0;
    const newest = Math.max(0, ...first.snapshots.map((s) => s.appliedSeq));
    if (S < newest) t.fail(`the new host restored seq ${S}, older than the snapshot through seq ${newest} the first host had stored`);
    if (S > first.dispatched) t.fail(`the new host restored seq ${S}, beyond the ${first.dispatched} payloads the first host dispatched`);
    // The first S dispatches, rebuilt from the seed.
    const random = prng(seed);
    const base = {};
    for (let i = 0; i < S; i++) {
      const k = t.lib.hex(t.peerIds[Math.floor(random() * t.peerIds.length)]);
      base[k] = (base[k] ?? 0) + 1;
    }
    const minus = (counts) => {
      const out = { ...counts };
      for (const [k, n] of Object.entries(base)) {
        out[k] = (out[k] ?? 0) - n;
        if (out[k] === 0) delete out[k];
      }
      return out;
    };
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    try {
      const state = await t.readState(host2, "counter");
      const verdict = counter.checkState(minus(state.counts));
      if (verdict.exact) verdict.summary = `equals the first host's first ${S} dispatches`;
      t.judgeState("counter after the host SIGKILL", verdict, state.appliedSeq);
    } catch (e) {
      t.stateChecks.push({ label: "counter after the host SIGKILL", exact: undefined });
      t.fail(`could not read counter's restored state: ${e.message}`);
    }
    const window = Math.max(0, hostAcked - S);
    t.note(`first host: ${hostAcked}+ acked, restored through seq ${S}: ${window}+ acked payloads after the last snapshot are the documented loss window of a host crash`);

    // Load and plugin kills on the second host, on top of the restored state.
    const until = Date.now() + Math.max(1_000, durationMs * 0.4);
    await Promise.all([
      t.load(host2, counter, { maxOutstanding: 2_000, until }),
      t.every(t.args.killEveryMs ?? 1_000, until, () => t.kill(host2, "counter")),
    ]);
    await t.settle();
    // A graceful stop with a burst in flight: the final snapshot must cover every dispatch that resolved.
    for (let i = 0; i < FINAL_BURST; i++) {
      const p = t.randomPeer();
      counter.dispatch(host2, p.src, p.hex);
    }
    // Let the host write a window's worth to the plugin, so the stop finds payloads in flight.
    await sleep(5);
    const inFlight = host2.status().find((s) => s.name === "counter")?.inFlight ?? 0;
    const pending = counter.pending;
    await t.stopHost(host2);
    t.note(`graceful stop with ${pending} dispatches pending, ${inFlight} of them in flight`);
    if (counter.pending > 0) t.fail(`${counter.pending} dispatches still pending after host.stop() returned`);

    // ---------------------------------------------------------------- host 3
    const host3 = await t.startHost({ plugins: [t.plugin("counter", { hostTag: "3" })], snapshotIntervalMs: 0 });
    try {
      const state = await t.readState(host3, "counter");
      const verdict = counter.checkState(minus(state.counts));
      if (verdict.exact) verdict.summary = `equals the first host's first ${S} dispatches plus the ${counter.acked} the second host acked`;
      t.judgeState("counter after a graceful stop under load", verdict, state.appliedSeq);
    } catch (e) {
      t.stateChecks.push({ label: "counter after a graceful stop under load", exact: undefined });
      t.fail(`could not read counter's state after the graceful stop: ${e.message}`);
    }
    await t.stopHost(host3);
  },
};
