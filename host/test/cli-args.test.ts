/**
 * Usage errors of the admin commands are reported before any host is looked
 * for, and stray arguments are refused instead of being ignored (red team:
 * `plugwire status extra` ran as `plugwire status`; `plugwire restart` with
 * no NAME and no host complained about the host).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");

function plugwire(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: repo, timeout: 30_000 }, (error, _stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stderr });
    });
  });
}

describe("admin command arguments", () => {
  const config = ["-c", "/nonexistent/plugwire.yaml"];
  for (const [args, message] of [
    [["status", "extra"], "plugwire status takes no arguments, not 'extra' (it shows every plugin)"],
    [["restart"], "plugwire restart needs a plugin NAME (see plugwire status)"],
    [["stop"], "plugwire stop needs a plugin NAME (see plugwire status)"],
    [["snapshot", "a", "b"], "plugwire snapshot takes one plugin NAME, not also 'b'"],
    [["restart", "echo", "--replay", "3"], "--replay belongs to plugwire dead-letters, not restart"],
  ] as const) {
    it(`plugwire ${args.join(" ")}: exit 1, "${message}"`, async () => {
      const r = await plugwire([...args, ...config]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `plugwire: ${message}\n`);
    });
  }
});
