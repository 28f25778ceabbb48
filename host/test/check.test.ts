/**
 * `plugwire check` is the conformance kit (@plugwire/check, tested in
 * check/test): the CLI hands its arguments over, and the kit reads handshake
 * lines exactly as the host does.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { CHECKS, parseHandshakeLine, type CheckReport } from "@plugwire/check";
import { parseHandshake } from "../src/handshake/parse.js";
import { example } from "./helpers.js";

const CLI = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "cli", "main.js");

function plugwire(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

const SOCK = "/tmp/pw-ab12cd/echo-1.sock";
/** Lines a plugin might print, well-formed or not. */
const LINES = [
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE transport=grpc address=${SOCK} network=unix protocol=1 extra=yes`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=${SOCK} transport=grpc `,
  `PLUGWIRE_HANDSHAKE  protocol=1\tnetwork=unix address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=2 network=unix address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=one network=unix address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address= transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 protocol=1 network=unix address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=/tmp/my dir/echo-1.sock transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=relative.sock transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=tcp address=127.0.0.1:7000 transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=tcp address=10.0.0.1:7000 transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=pipe address=${SOCK} transport=grpc`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=${SOCK} transport=http`,
  `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=${SOCK}\x1b[0m transport=grpc`,
  "PLUGWIRE_HANDSHAKE",
  "PLUGWIRE_HANDSHAKEprotocol=1",
  "listening on /tmp/x.sock",
];

describe("plugwire check", () => {
  it("reads every handshake line as the host does", () => {
    for (const line of LINES) {
      for (const accepted of [[1], [1, 2]]) {
        assert.deepEqual(parseHandshakeLine(line, accepted), parseHandshake(line, accepted), `${JSON.stringify(line)} with versions ${accepted}`);
      }
    }
  });

  it("runs the kit: --help, and a report with every check", async () => {
    const help = await plugwire(["check", "--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^Usage: plugwire check \[--json\] \[--timeout-ms N\] \[--exit-margin-ms N\] -- COMMAND \[ARGS\.\.\.\]\n/);
    const run = await plugwire(["check", "--json", "--timeout-ms", "5000", "--exit-margin-ms", "1500", "--", process.execPath, example("echo")]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const report = JSON.parse(run.stdout) as CheckReport;
    assert.deepEqual(report.checks.map((c) => c.id), CHECKS.map((c) => c.id));
    assert.equal(report.failed, 0);
  });

  it("reports argument errors as plugwire errors, with the usage", async () => {
    const none = await plugwire(["check"]);
    assert.equal(none.code, 1);
    assert.equal(
      none.stderr,
      "plugwire: give the plugin's command after --: plugwire check [--json] [--timeout-ms N] [--exit-margin-ms N] -- COMMAND [ARGS...] (e.g. plugwire check -- node my-plugin.js)\n",
    );
  });
});
