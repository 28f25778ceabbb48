/**
 * A forgotten peer survives a plugin crash, in every language's counter:
 * forgets are sequenced items of the Deliver stream, kept for replay like
 * payloads, so restoring a snapshot taken before the forget and replaying the
 * items after it forgets the peer again, in its place.
 *
 * Real processes: the TypeScript counter (plugins-example/dist/counter.js),
 * the Python counter (plugins-example/python/counter.py, run by the venv of
 * scripts/setup-polyglot.sh), the Go counter (plugins-example/go/bin/counter-go,
 * built by the same script) and the Rust counter (target/release/counter-rust,
 * idem). A language whose example is not built is skipped
 * with the command that builds it.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { hex, type HostEvents, type PluginConfig } from "../src/index.js";
import { alive, example, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

type StateEvent = HostEvents["plugin:state"][0];
type Restored = HostEvents["snapshot:restored"][0];

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const python = join(repo, "plugins-example", "python", ".venv", "bin", "python");
const counterGo = join(repo, "plugins-example", "go", "bin", "counter-go");
const counterRust = join(repo, "target", "release", "counter-rust");

interface Counter {
  language: string;
  /** The plugin's config, and the file that must exist for it to run. */
  plugin: PluginConfig;
  needs: string;
  /** How to build `needs` when it is missing. */
  build: string;
  hitKind: string;
}

const counters: Counter[] = [
  {
    language: "TypeScript",
    plugin: nodePlugin("counter", example("counter")),
    needs: example("counter"),
    build: "npm run build",
    hitKind: "counter.hit",
  },
  {
    language: "Python",
    plugin: { name: "counter-py", command: python, args: [join(repo, "plugins-example", "python", "counter.py")] },
    needs: python,
    build: "bash scripts/setup-polyglot.sh (needs python3 with venv)",
    hitKind: "counter-py.hit",
  },
  {
    language: "Go",
    plugin: { name: "counter-go", command: counterGo },
    needs: counterGo,
    build: "bash scripts/setup-polyglot.sh (needs go)",
    hitKind: "counter-go.hit",
  },
  {
    language: "Rust",
    plugin: { name: "counter-rust", command: counterRust },
    needs: counterRust,
    build: "bash scripts/setup-polyglot.sh (needs cargo)",
    hitKind: "rust.hit",
  },
];

const a = peer(0xa1);
const b = peer(0xb2);
const hit = new TextEncoder().encode("hit");
const decoder = new TextDecoder();

/** SIGKILLs the plugin's process and waits for a new launch to be ready and for its restore. */
async function crash(t: TestHost, name: string): Promise<Restored> {
  const s = t.host.status().find((p) => p.name === name);
  assert.equal(s?.state, "ready");
  assert.ok(s.pid, "a ready plugin has a pid");
  t.pids.add(s.pid);
  const exited = waitFor<HostEvents["plugin:exit"][0]>(t.host, "plugin:exit", (e) => e.plugin === name && e.pid === s.pid, 30_000);
  const ready = waitFor<StateEvent>(t.host, "plugin:state", (e) => e.plugin === name && e.state === "ready", 30_000);
  const restored = waitFor<Restored>(t.host, "snapshot:restored", (e) => e.plugin === name, 30_000);
  process.kill(s.pid, "SIGKILL");
  assert.equal((await exited).signal, "SIGKILL");
  const [event] = await Promise.all([restored, ready]);
  assert.equal(alive(s.pid), false);
  const now = t.host.status().find((p) => p.name === name);
  assert.notEqual(now?.pid, s.pid, "a new process runs the plugin");
  return event;
}

describe("a forgotten peer stays forgotten across a crash, in each language's counter", { timeout: 120_000 }, () => {
  for (const counter of counters) {
    test(`${counter.language} (${counter.plugin.name})`, { timeout: 60_000 }, async (ctx) => {
      if (!existsSync(counter.needs)) {
        ctx.skip(`${counter.language} counter not built: ${counter.needs} is missing; run ${counter.build}`);
        return;
      }
      const name = counter.plugin.name;
      const t = testHost([counter.plugin]);
      const dispatch = (src: Uint8Array, n: number) =>
        Promise.all(Array.from({ length: n }, () => t.host.dispatch(src, counter.hitKind, hit)));
      const counts = async (): Promise<{ appliedSeq: number; counts: Record<string, number> }> => {
        const record = await t.host.snapshot(name);
        assert.ok(record, `${name} is stateful and ready, so it has a snapshot`);
        return { appliedSeq: record.appliedSeq, counts: JSON.parse(decoder.decode(record.bytes)) as Record<string, number> };
      };
      try {
        await t.host.start();
        // seqs 1-7: 5 hits from A, 2 from B; a durable snapshot covers them.
        await dispatch(a, 5);
        await dispatch(b, 2);
        assert.deepEqual(await counts(), { appliedSeq: 7, counts: { [hex(a)]: 5, [hex(b)]: 2 } });

        // seq 8: the forget; seq 9: one more hit from B. No snapshot covers these.
        const forgot = await t.host.peerForgotten(a);
        assert.deepEqual(forgot.failed, [], "every plugin applied the forget");
        await dispatch(b, 1);

        // The crash: the new launch restores the snapshot at seq 7 and gets
        // seqs 8 and 9 replayed, the forget among them.
        const restored = await crash(t, name);
        assert.equal(restored.appliedSeq, 7, "the snapshot taken before the forget was restored");

        // Once a new hit (seq 10) is applied, so is everything before it.
        await dispatch(b, 1);
        const after = await counts();
        assert.equal(after.appliedSeq, 10);
        assert.equal(hex(a) in after.counts, false, `the forgotten peer is back: ${JSON.stringify(after.counts)}`);
        assert.deepEqual(after.counts, { [hex(b)]: 4 });

        // The plugin goes on counting, a forgotten peer anew.
        await dispatch(a, 1);
        assert.deepEqual((await counts()).counts, { [hex(a)]: 1, [hex(b)]: 4 });
      } finally {
        await t.close();
      }
    });
  }
});
