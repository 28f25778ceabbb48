#!/usr/bin/env node
/** The plugwire CLI: argv → library calls. */
import { parseArgs } from "node:util";
import { PlugwireError } from "@plugwire/proto";
import { demo } from "./demo.js";
import { run } from "./run.js";

const HELP = `plugwire: run plugins out of process

Usage:
  plugwire run --config FILE [--log-level LEVEL]   run a host from a YAML config until SIGINT/SIGTERM
  plugwire demo [--duration-ms MS]                 run the demo mesh with the example plugins (npm start)
  plugwire --help                                  show this help

Config file (YAML):
  dataDir: ./.plugwire             # plugin data dirs and snapshots (default .plugwire next to the file)
  snapshotIntervalMs: 30000        # 0 disables periodic snapshots
  peers:                           # optional: peers the in-memory directory starts with
    - { nodeId: <hex>, name: alice, x25519: <hex> }
  plugins:                         # priority order: the first plugin to claim a kind wins
    - name: echo
      command: node                # relative paths resolve against the config file's directory
      args: [plugins-example/dist/echo.js]
      capabilities: [control]      # peers, control, identity
      config: { any: value }       # handed to the plugin in Start
      restart: permanent           # permanent | transient | temporary

See docs/ for the protocol and every per-plugin option.
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case "run": {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: "string", short: "c" }, "log-level": { type: "string", default: "info" }, help: { type: "boolean", short: "h" } },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      if (!values.config) throw new PlugwireError("invalid_argument", "plugwire run needs --config FILE (see plugwire --help)");
      await run({ configPath: values.config, logLevel: values["log-level"] ?? "info" });
      return -1; // keeps running until a signal
    }
    case "demo": {
      const { values } = parseArgs({ args: rest, options: { "duration-ms": { type: "string", default: "15000" }, help: { type: "boolean", short: "h" } } });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      const durationMs = Number(values["duration-ms"]);
      if (!Number.isFinite(durationMs) || durationMs < 1000) throw new PlugwireError("invalid_argument", "--duration-ms must be at least 1000");
      return demo({ durationMs, out: process.stdout });
    }
    default:
      throw new PlugwireError("invalid_argument", `unknown command '${command}'; run plugwire --help`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`plugwire: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
