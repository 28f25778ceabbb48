// kill-during-snapshot: counter and echo under load while counter is
// SIGKILLed in the middle of a snapshot, at three points in turn:
//   rpc          0-3 ms after host.snapshot() started (the Snapshot RPC is in flight)
//   before-save  when the store is handed the record, before it is written
//   after-save   after the store wrote it, before the host trims its replay buffer
// The store points are hit through a SnapshotStore wrapper around the file store.
import { join } from "node:path";
import { node, withTimeout } from "../lib/util.mjs";

const MODES = ["rpc", "before-save", "after-save"];

/** A FileSnapshotStore whose next save of `id` runs a hook before and after writing. */
class HookedStore {
  constructor(inner) {
    this.inner = inner;
    this.armed = undefined; // { id, when: "before" | "after", fire: () => void }
  }
  arm(id, when, fire) {
    this.armed = { id, when, fire };
  }
  async save(record, plugin) {
    const hook = this.armed?.id === record.id ? this.armed : undefined;
    if (hook?.when === "before") {
      this.armed = undefined;
      hook.fire();
    }
    await this.inner.save(record, plugin);
    if (hook?.when === "after") {
      this.armed = undefined;
      hook.fire();
    }
  }
  load(id, plugin) {
    return this.inner.load(id, plugin);
  }
  discard(id, plugin) {
    return this.inner.discard(id, plugin);
  }
}

export default {
  name: "kill-during-snapshot",
  summary: "counter and echo under load; counter SIGKILLed during the Snapshot RPC, before the store writes, and after it wrote",
  async run(t) {
    const store = new HookedStore(new t.lib.FileSnapshotStore({ dir: join(t.dataDir, "snapshots") }));
    const host = await t.startHost({ plugins: ["counter", "echo"], snapshotIntervalMs: 1_000, store });
    const counter = t.ledger({ kind: "counter.hit", plugin: "counter", perPeer: true });
    const echo = t.ledger({ kind: "echo.ping", plugin: "echo", tag: "e" });
    const echoPeer = { src: node(0x40), hex: "40".repeat(32) };
    const until = Date.now() + t.args.durationMs;
    const landed = { rpc: 0, "before-save": 0, "after-save": 0 };
    const tried = { rpc: 0, "before-save": 0, "after-save": 0 };
    const snapshotErrors = new Map();
    const killDuringSnapshot = async (round) => {
      if (host.status().find((s) => s.name === "counter")?.state !== "ready") return;
      const mode = MODES[round % MODES.length];
      tried[mode]++;
      let fired = false;
      if (mode !== "rpc") {
        store.arm("example.counter", mode === "before-save" ? "before" : "after", () => {
          fired = t.kill(host, "counter", `SIGKILL ${mode}`) !== undefined;
        });
      }
      let settled = false;
      const snap = host.snapshot("counter").then(
        () => (settled = true),
        (e) => {
          settled = true;
          snapshotErrors.set(e.code ?? "error", (snapshotErrors.get(e.code ?? "error") ?? 0) + 1);
        },
      );
      if (mode === "rpc") {
        await new Promise((resolve) => setTimeout(resolve, Math.floor(t.rand() * 4)));
        fired = !settled && t.kill(host, "counter", "SIGKILL during the Snapshot RPC") !== undefined;
      }
      await withTimeout(snap, 30_000, "a snapshot to finish or fail");
      store.armed = undefined;
      if (fired) landed[mode]++;
    };
    await Promise.all([
      t.load(host, counter, { maxOutstanding: 2_000, until }),
      t.load(host, echo, { maxOutstanding: 1_000, until, next: () => echoPeer }),
      t.every(t.args.killEveryMs ?? 700, until, killDuringSnapshot),
    ]);
    await t.settle();
    const errors = [...snapshotErrors].map(([c, n]) => `${c} ${n}`).join(", ") || "none";
    t.note(`kills landed / tried: ${MODES.map((m) => `${m} ${landed[m]}/${tried[m]}`).join(", ")}; snapshot errors: ${errors}`);
    if (MODES.every((m) => landed[m] === 0)) t.fail("no kill landed during a snapshot: the scenario did not exercise its fault");
    await t.checkState(host, counter);
  },
};
