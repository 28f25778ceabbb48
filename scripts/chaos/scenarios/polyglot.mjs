// polyglot: the Python counter (hits and pings), the Go examples
// (presence-go: echo-go pings and lookups; counter-go, when built: hits and
// pings) and the Rust counter (counter-rust: rust.hit and rust.ping) under
// load and random SIGKILLs. A language whose example is not built is skipped
// with the command that builds it; with none built, the whole scenario is
// skipped.
import { node } from "../lib/util.mjs";

export default {
  name: "polyglot",
  summary: "the Python counter, the Go presence (and counter-go) and the Rust counter examples under load and random SIGKILLs (skipped when not built)",
  async run(t) {
    const poly = t.polyglot();
    const build = "run `bash scripts/setup-polyglot.sh` to build it";
    if (!poly.python) t.note(`Python example not built (plugins-example/python/.venv): ${build}`);
    if (!poly.go) t.note(`Go example not built (plugins-example/go/bin/presence-go): ${build}`);
    if (!poly.rust) t.note(`Rust example not built (target/release/counter-rust): ${build}`);
    if (!poly.python && !poly.go && !poly.rust) {
      t.skip(`none of the Python, Go and Rust examples is built; ${build}`);
      return;
    }
    const plugins = [
      ...(poly.python ? ["counter-py"] : []),
      ...(poly.go ? ["presence-go"] : []),
      ...(poly.go && poly.goCounter ? ["counter-go"] : []),
      ...(poly.rust ? ["counter-rust"] : []),
    ];
    const host = await t.startHost({ plugins, snapshotIntervalMs: 1_000 });
    const until = Date.now() + t.args.durationMs;
    const pingPeer = { src: node(0x41), hex: "41".repeat(32) };
    const loads = [];
    const counters = [];
    // prefix: of the counter's kinds (counter-rust claims rust.hit and rust.ping).
    const counterLoad = (plugin, tag, prefix = plugin) => {
      const hits = t.ledger({ kind: `${prefix}.hit`, plugin, perPeer: true });
      const pings = t.ledger({ kind: `${prefix}.ping`, plugin, tag });
      counters.push(hits);
      loads.push(t.load(host, hits, { maxOutstanding: 200, until }), t.load(host, pings, { maxOutstanding: 100, until, next: () => pingPeer }));
    };
    if (poly.python) counterLoad("counter-py", "p");
    if (plugins.includes("counter-go")) counterLoad("counter-go", "c");
    if (poly.rust) counterLoad("counter-rust", "r", "rust");
    if (poly.go) {
      const pings = t.ledger({ kind: "echo-go.ping", plugin: "presence-go", tag: "g" });
      const who = t.ledger({ kind: "presence-go.who", plugin: "presence-go", body: new Uint8Array() });
      loads.push(t.load(host, pings, { maxOutstanding: 500, until, next: () => pingPeer }), t.load(host, who, { maxOutstanding: 16, until }));
    }
    t.note(`plugins: ${plugins.join(", ")}`);
    await Promise.all([...loads, t.every(t.args.killEveryMs ?? 1_000, until, () => t.killRandomReady(host))]);
    await t.settle();
    for (const hits of counters) await t.checkState(host, hits);
  },
};
