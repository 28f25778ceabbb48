#!/usr/bin/env node
/** The plugwire CLI: argv → library calls. */
import { parseArgs } from "node:util";
import { PlugwireError } from "@plugwire/proto";
import { checkCommand } from "@plugwire/check";
import { demo } from "./demo.js";
import { run } from "./run.js";
import { deadLettersCommand, resolveAdmin, type AdminTarget, restartCommand, sendCommand, snapshotCommand, statusCommand, stopCommand, upgradeCommand } from "./admin-commands.js";
import { configHelp } from "./config-schema.js";
import { sendRequest } from "./send-args.js";
import { newCommand } from "./new.js";

const HELP = `plugwire: run plugins out of process

Usage:
  plugwire run --config FILE [--log-level LEVEL] [--metrics-port PORT] [ADMIN FLAGS]
                                     run a host from a YAML config until SIGINT/SIGTERM
  plugwire status [--json]           state, pid (or remote address and connection), restarts, queue depth, last exit of each plugin
  plugwire restart NAME              restart a plugin (snapshot first); brings back a failed plugin
  plugwire stop NAME                 stop a plugin through the shutdown ladder
  plugwire upgrade NAME [--command CMD] [--arg ARG]...
                                     hot upgrade: replace a running plugin's build with CMD and
                                     the ARGs (each defaults to the current ones, so with neither
                                     a binary replaced on disk is picked up; give --arg once per
                                     argument, --arg=-x for one that starts with -), handing its
                                     state over with no payload lost; if the new build fails
                                     (start, health check, Start, Restore) it is rolled back and
                                     the running build keeps serving. The new command is not
                                     written to the config file: update it there too
  plugwire snapshot [NAME]           snapshot one stateful plugin, or all
  plugwire dead-letters NAME [--replay SEQ]
                                     list a plugin's dead letters, or dispatch one again
  plugwire send NAME|--kind KIND --src HEX (--body TEXT | --body-hex HEX | --body-file FILE) [--json]
                                     dispatch a payload (to plugin NAME's only kind, or to KIND)
                                     and print the outcome and the effects its handler produced;
                                     --body-file - reads standard input; exits 1 on a handler error
  plugwire demo [--duration-ms MS] [--deadline-ms MS]
                                     run the demo mesh with the example plugins (npm start);
                                     exits 1 naming what is stuck if it has not finished by the
                                     deadline (default: duration + 60 s)
  plugwire check [--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS...]
                                     run the conformance checks against a plugin (docs/conformance.md)
  plugwire new --lang ts|python|go|rust NAME [--stateful] [--dir DIR]
                                     write a ready plugin project (plugwire new --help)
  plugwire --help                    show this help

Admin flags of plugwire run (the admin API always listens on a unix socket in a private
dir, and needs the bearer token in <dataDir>/admin.token, made 0600 on the first run):
  --admin-port PORT             also serve it on TCP (0 picks a port; the log line says which)
  --admin-host ADDR             address of that port (default 127.0.0.1); a non-loopback
                                address needs TLS
  --admin-tls-cert FILE, --admin-tls-key FILE
                                serve the port over TLS with this PEM certificate and key
  --admin-tls-ca FILE           and require client certificates signed by this CA (mTLS)
  --admin-max-body-bytes N      largest request body but Dispatch's, also after
                                decompression (default 1 MiB)
  --admin-max-dispatch-body-bytes N
                                largest Dispatch request body (default 16 MiB)
  --no-dashboard                do not serve the web dashboard at / of the admin port
                                (default: served; the log prints a one-time login URL;
                                config 'dashboard: false' too; docs/dashboard.md)

status, restart, stop, upgrade, snapshot, dead-letters and send talk to a running 'plugwire run':
  -c, --config FILE  the config it runs (default ./plugwire.yaml); its data dir holds the admin
                     address and token
  --admin ADDR       or the admin socket path / http(s)://HOST:PORT directly
  --admin-token-file FILE
                     the admin token (default: $PLUGWIRE_ADMIN_TOKEN, else <dataDir>/admin.token)
  --admin-tls-ca FILE, --admin-tls-cert FILE, --admin-tls-key FILE
                     for an https:// address: the CA to trust, the client certificate and key

${configHelp()}
Example (plugins-example/plugwire.yaml):
  dataDir: ../.plugwire
  plugins:
    - name: echo
      command: node
      args: [dist/echo.js]
      capabilities: [control]

See docs/configuration.md for the config, docs/ for the protocol.
`;

/** The flags by which status, restart, stop, upgrade, snapshot, dead-letters and send find the admin API. */
const ADMIN_CLIENT_OPTIONS = {
  config: { type: "string", short: "c" },
  admin: { type: "string" },
  "admin-token-file": { type: "string" },
  "admin-tls-ca": { type: "string" },
  "admin-tls-cert": { type: "string" },
  "admin-tls-key": { type: "string" },
} as const;

/** Where a CLI command finds the admin API, from its flags. */
function adminTarget(values: {
  admin?: string;
  config?: string;
  "admin-token-file"?: string;
  "admin-tls-ca"?: string;
  "admin-tls-cert"?: string;
  "admin-tls-key"?: string;
}): AdminTarget {
  return {
    admin: values.admin,
    config: values.config,
    tokenFile: values["admin-token-file"],
    tlsCa: values["admin-tls-ca"],
    tlsCert: values["admin-tls-cert"],
    tlsKey: values["admin-tls-key"],
  };
}

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
        options: {
          config: { type: "string", short: "c" },
          "log-level": { type: "string", default: "info" },
          "metrics-port": { type: "string" },
          "admin-port": { type: "string" },
          "admin-host": { type: "string" },
          "admin-tls-cert": { type: "string" },
          "admin-tls-key": { type: "string" },
          "admin-tls-ca": { type: "string" },
          "admin-max-body-bytes": { type: "string" },
          "admin-max-dispatch-body-bytes": { type: "string" },
          "no-dashboard": { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
      });
      const bytes = (v: string | undefined, flag: string): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1) throw new PlugwireError("invalid_argument", `${flag} must be a whole number of bytes, at least 1`);
        return n;
      };
      const port = (v: string | undefined, flag: string): number | undefined => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 0 || n > 65535) throw new PlugwireError("invalid_argument", `${flag} must be a port number 0-65535`);
        return n;
      };
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      if (!values.config) throw new PlugwireError("invalid_argument", "plugwire run needs --config FILE (see plugwire --help)");
      await run({
        configPath: values.config,
        logLevel: values["log-level"] ?? "info",
        metricsPort: port(values["metrics-port"], "--metrics-port"),
        adminPort: port(values["admin-port"], "--admin-port"),
        adminHost: values["admin-host"],
        adminTlsCert: values["admin-tls-cert"],
        adminTlsKey: values["admin-tls-key"],
        adminTlsCa: values["admin-tls-ca"],
        adminMaxBodyBytes: bytes(values["admin-max-body-bytes"], "--admin-max-body-bytes"),
        adminMaxDispatchBodyBytes: bytes(values["admin-max-dispatch-body-bytes"], "--admin-max-dispatch-body-bytes"),
        dashboard: values["no-dashboard"] ? false : undefined,
      });
      return -1; // keeps running until a signal
    }
    case "status":
    case "restart":
    case "stop":
    case "snapshot":
    case "dead-letters": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          ...ADMIN_CLIENT_OPTIONS,
          json: { type: "boolean" },
          replay: { type: "string" },
          help: { type: "boolean", short: "h" },
        },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      // The arguments are checked before the admin API is looked for: a usage error says so even with no host running.
      const takesName = command !== "status";
      const needsName = command === "restart" || command === "stop" || command === "dead-letters";
      if (positionals.length > (takesName ? 1 : 0)) {
        const extra = positionals[takesName ? 1 : 0];
        throw new PlugwireError(
          "invalid_argument",
          takesName ? `plugwire ${command} takes one plugin NAME, not also '${extra}'` : `plugwire status takes no arguments, not '${extra}' (it shows every plugin)`,
        );
      }
      if (needsName && !positionals[0]) throw new PlugwireError("invalid_argument", `plugwire ${command} needs a plugin NAME (see plugwire status)`);
      if (values.replay !== undefined && command !== "dead-letters") throw new PlugwireError("invalid_argument", `--replay belongs to plugwire dead-letters, not ${command}`);
      const client = resolveAdmin(adminTarget(values));
      const name = positionals[0];
      const needName = (): string => {
        if (!name) throw new PlugwireError("invalid_argument", `plugwire ${command} needs a plugin NAME (see plugwire status)`);
        return name;
      };
      let output: string;
      if (command === "status") output = await statusCommand(client, values.json ?? false);
      else if (command === "restart") output = await restartCommand(client, needName());
      else if (command === "stop") output = await stopCommand(client, needName());
      else if (command === "snapshot") output = await snapshotCommand(client, name);
      else {
        const replay = values.replay === undefined ? undefined : Number(values.replay);
        if (replay !== undefined && !Number.isInteger(replay)) throw new PlugwireError("invalid_argument", "--replay takes a seq number");
        output = await deadLettersCommand(client, needName(), replay);
      }
      process.stdout.write(output);
      return 0;
    }
    case "upgrade": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          ...ADMIN_CLIENT_OPTIONS,
          command: { type: "string" },
          arg: { type: "string", multiple: true },
          help: { type: "boolean", short: "h" },
        },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      const name = positionals[0];
      if (!name) throw new PlugwireError("invalid_argument", "plugwire upgrade needs a plugin NAME (see plugwire status)");
      if (positionals.length > 1) {
        throw new PlugwireError("invalid_argument", `plugwire upgrade takes one plugin NAME; pass the new build's arguments with --arg (one per argument), not '${positionals[1]}'`);
      }
      process.stdout.write(await upgradeCommand(resolveAdmin(adminTarget(values)), name, values.command, values.arg));
      return 0;
    }
    case "send": {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          ...ADMIN_CLIENT_OPTIONS,
          kind: { type: "string", short: "k" },
          src: { type: "string" },
          body: { type: "string" },
          "body-hex": { type: "string" },
          "body-file": { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      const request = sendRequest({ plugin: positionals[0], extra: positionals.slice(1), ...values });
      const client = resolveAdmin(adminTarget(values));
      const { output, code } = await sendCommand(client, request, values.json ?? false);
      process.stdout.write(output);
      return code;
    }
    case "demo": {
      const { values } = parseArgs({
        args: rest,
        options: { "duration-ms": { type: "string", default: "15000" }, "deadline-ms": { type: "string" }, help: { type: "boolean", short: "h" } },
      });
      if (values.help) {
        process.stdout.write(HELP);
        return 0;
      }
      const durationMs = Number(values["duration-ms"]);
      if (!Number.isFinite(durationMs) || durationMs < 1000) throw new PlugwireError("invalid_argument", "--duration-ms must be at least 1000");
      const deadlineMs = values["deadline-ms"] === undefined ? durationMs + 60_000 : Number(values["deadline-ms"]);
      if (!Number.isFinite(deadlineMs) || deadlineMs <= durationMs) {
        throw new PlugwireError("invalid_argument", "--deadline-ms must be a number of ms larger than --duration-ms");
      }
      return demo({ durationMs, deadlineMs, out: process.stdout });
    }
    case "check":
      return checkCommand(rest);
    case "new":
      return newCommand(rest);
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
