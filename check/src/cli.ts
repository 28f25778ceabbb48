/**
 * `plugwire check [--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS…]`
 * (or `plugwire-check …`): argv → runCheck → output and exit code.
 */
import { parseArgs } from "node:util";
import { PlugwireError } from "@plugwire/proto";
import { formatJson, formatResult, formatSummary } from "./report.js";
import { DEFAULT_EXIT_MARGIN_MS, DEFAULT_TIMEOUT_MS, runCheck } from "./runner.js";

const OPTIONS = "[--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS...]";

/** The usage line, for the program name the kit is run as. */
export function checkUsage(program = "plugwire check"): string {
  return `${program} ${OPTIONS}`;
}

function help(program: string): string {
  return `Usage: ${checkUsage(program)}

Runs the plugwire conformance checks against a plugin written in any
language: the kit acts as a host, launches COMMAND several times, serves
HostService, and reports each check as ✓ (passed), ✗ (failed) or -
(skipped). Exits 0 when no check failed, 1 when one did or the arguments
are wrong. See docs/conformance.md.

  --json              print a machine-readable report instead
  --timeout-ms N      handshake timeout, call deadline and ack wait (default ${DEFAULT_TIMEOUT_MS})
  --exit-margin-ms N  slack on top of the timing limits (the exit limits, the 20 ms ack
                      interval) for a loaded machine (default ${DEFAULT_EXIT_MARGIN_MS}); a time within the
                      margin passes
`;
}

function parseMs(value: string | undefined, flag: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min) {
    throw new PlugwireError("invalid_argument", `${flag} must be a whole number of milliseconds, at least ${min}; got '${value}'`);
  }
  return n;
}

export interface CheckCommandOptions {
  /** Where the report goes; default stdout. */
  out?: NodeJS.WritableStream;
  /** How the user ran the kit, for the usage line: "plugwire check" (default) or "plugwire-check". */
  program?: string;
}

/**
 * Runs the check command on `argv` (the arguments after "check"); resolves
 * with the process exit code. Throws an `invalid_argument` PlugwireError for
 * bad arguments, whose message the caller prints.
 */
export async function checkCommand(argv: readonly string[], options: CheckCommandOptions = {}): Promise<number> {
  const out = options.out ?? process.stdout;
  const program = options.program ?? "plugwire check";
  const dashes = argv.indexOf("--");
  const own = dashes === -1 ? [...argv] : argv.slice(0, dashes);
  const { values, positionals } = parseArgs({
    args: own,
    allowPositionals: true,
    options: {
      json: { type: "boolean" },
      "timeout-ms": { type: "string" },
      "exit-margin-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    out.write(help(program));
    return 0;
  }
  const command = dashes === -1 ? positionals : argv.slice(dashes + 1);
  if (command.length === 0 || (dashes !== -1 && positionals.length > 0)) {
    throw new PlugwireError("invalid_argument", `give the plugin's command after --: ${checkUsage(program)} (e.g. ${program} -- node my-plugin.js)`);
  }
  const json = values.json ?? false;
  const timeoutMs = parseMs(values["timeout-ms"], "--timeout-ms", 1);
  const exitMarginMs = parseMs(values["exit-margin-ms"], "--exit-margin-ms", 0);
  const controller = new AbortController();
  const interrupted = (signal: NodeJS.Signals): void => {
    controller.abort(); // kills every plugin process the kit started
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    if (!json) out.write(`${program} -- ${command.join(" ")}\n`);
    const report = await runCheck({
      command: command[0]!,
      args: command.slice(1),
      timeoutMs,
      exitMarginMs,
      signal: controller.signal,
      onResult: json ? undefined : (r) => out.write(formatResult(r)),
    });
    out.write(json ? formatJson(report) : formatSummary(report));
    return report.failed === 0 ? 0 : 1;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  }
}
