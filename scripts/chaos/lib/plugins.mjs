// The plugins chaos runs: the TypeScript examples, the slow fixture, and the
// Python and Go examples when they are built. Every config carries marker
// variables (CHAOS_RUN, CHAOS_PLUGIN, CHAOS_HOST) so the plugin's processes
// can be found in /proc whatever happens to the host that started them.
import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * Supervision settings for chaos: kills every second would trip the
 * crash-loop quarantine (more than 5 restarts in 60 s) and push the backoff
 * towards 30 s; chaos wants the plugins back quickly. Everything else keeps
 * its default, the hang detection (ackTimeoutMs 30 s) included.
 */
export const CHAOS_POLICY = { maxRestarts: 10_000, backoffMaxMs: 500 };

/** The Python, Go and Rust examples, each undefined when not built. */
export function polyglotExamples(repo) {
  const python = join(repo, "plugins-example", "python", ".venv", "bin", "python");
  const pyPlugin = join(repo, "plugins-example", "python", "counter.py");
  const goBinary = (name) => {
    const path = join(repo, "plugins-example", "go", "bin", name);
    return existsSync(path) ? { command: path, args: [] } : undefined;
  };
  return {
    python: existsSync(python) && existsSync(pyPlugin) ? { command: python, args: [pyPlugin] } : undefined,
    go: goBinary("presence-go"),
    goCounter: goBinary("counter-go"),
    rust: existsSync(join(repo, "target", "release", "counter-rust"))
      ? { command: join(repo, "target", "release", "counter-rust"), args: [] }
      : undefined,
  };
}

/**
 * The host config of plugin `name`, marked with `run`. `overrides` may set
 * any PluginConfig field, extra `env`, and `hostTag` (CHAOS_HOST).
 */
export function pluginConfig(repo, run, name, overrides = {}) {
  const dist = join(repo, "plugins-example", "dist");
  const ts = (file, capabilities) => ({ command: process.execPath, args: [join(dist, file)], capabilities });
  const fixtures = join(repo, "scripts", "chaos", "fixtures");
  const poly = polyglotExamples(repo);
  const catalog = {
    counter: ts("counter.js", []),
    echo: ts("echo.js", ["control"]),
    presence: ts("presence.js", ["peers"]),
    "slow-counter": { command: process.execPath, args: [join(fixtures, "slow-counter.mjs")], capabilities: ["control"] },
    "counter-py": poly.python && { ...poly.python, capabilities: ["control"] },
    "presence-go": poly.go && { ...poly.go, capabilities: ["peers", "control"] },
    "counter-go": poly.goCounter && { ...poly.goCounter, capabilities: ["control"] },
    "counter-rust": poly.rust && { ...poly.rust, capabilities: ["control"] },
  };
  const base = catalog[name];
  if (!base) throw new Error(`chaos: no plugin '${name}' in the catalog, or it is not built`);
  const { env, hostTag, ...rest } = overrides;
  return {
    name,
    ...base,
    ...CHAOS_POLICY,
    ...rest,
    env: { ...env, CHAOS_RUN: run, CHAOS_PLUGIN: name, ...(hostTag ? { CHAOS_HOST: hostTag } : {}) },
  };
}
