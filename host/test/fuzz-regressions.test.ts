/**
 * Regressions found by the fuzzers (fuzz/, `npm run fuzz`): each case is the
 * smallest input that broke a real process, replayed against real processes.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ENV, MAGIC_COOKIE_VALUE, PluginService, connect, health } from "@plugwire/proto";
import { alive, example, fixture } from "./helpers.js";

/** Runs the fuzz-host fixture; rejects if it does not exit 0 within `ms` (it is SIGKILLed then). */
function runHost(dataDir: string, op: string, ms = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [fixture("fuzz-host"), dataDir, op], { timeout: ms, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`host '${op}' failed (${error.killed ? `killed after ${ms} ms: it hung` : `exit ${error.code}`}):\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split("\n").at(-1)!) as Record<string, unknown>);
    });
  });
}

/** Every `*.snap` file under `dir`, with its directory. */
function snapFiles(dir: string): Array<{ dir: string; name: string }> {
  const found: Array<{ dir: string; name: string }> = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) found.push(...snapFiles(path));
    else if (/^\d+\.snap$/.test(name)) found.push({ dir, name });
  }
  return found;
}

describe("fuzz regressions", { timeout: 120_000 }, () => {
  test("snapshot loader: a FIFO, a directory or a device in place of the newest generation is skipped, not read (it hung the host, even its exit)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pwt-fuzzreg-"));
    try {
      assert.deepEqual(await runHost(dataDir, "fill:5"), { filled: "5" });
      const snaps = snapFiles(join(dataDir, "snapshots"));
      assert.equal(snaps.length > 0, true, "the first host stored a snapshot");
      const { dir, name } = snaps.sort((a, b) => Number.parseInt(b.name) - Number.parseInt(a.name))[0]!;
      const next = (k: number): string => join(dir, `${String(Number.parseInt(name) + k).padStart(name.length - ".snap".length, "0")}.snap`);
      execFileSync("mkfifo", [next(3)]);
      mkdirSync(next(2));
      symlinkSync("/dev/zero", next(1));
      // Before the fix, the loader's readFile blocked a libuv thread on the FIFO for good: start never finished.
      const state = await runHost(dataDir, "state");
      assert.equal(state.gen, 5, "the intact generation under them is restored");
      assert.equal(state.restoredVersion, 1);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test(
    "SDK: an error whose text is not well-formed UTF-16 (Start with config_json '😀') is answered, not a crash",
    {
      todo:
        "open: grpc-js encodeURI()s the status details and throws URIError on a lone surrogate, which kills the plugin. " +
        "JSON.parse('😀') names the token '\\ud83d'. Fix in proto/src/errors.ts toServiceStatus (details: err.message.toWellFormed()) or sdk/src/serve.ts",
    },
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "pwt-fz-"));
      const token = randomBytes(24).toString("base64url");
      const child = spawn(process.execPath, [example("echo")], {
        env: {
          PATH: process.env.PATH,
          [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
          [ENV.protocolVersions]: "1",
          [ENV.socketDir]: dir,
          [ENV.authToken]: token,
          [ENV.instanceId]: "echo-fz",
          [ENV.hostAddress]: `unix://${join(dir, "host.sock")}`,
        },
        stdio: ["pipe", "pipe", "pipe"],
      });
      try {
        const address = await new Promise<string>((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (d: Buffer) => {
            out += d.toString();
            const m = /address=(\S+)/.exec(out);
            if (m) resolve(m[1]!);
          });
          child.once("exit", (code) => reject(new Error(`echo exited ${code} before its handshake`)));
        });
        const plugin = connect(PluginService, `unix://${address}`, { token });
        try {
          await assert.rejects(plugin.client.start({ dataDir: dir, instanceId: "echo-fz", configJson: "😀", capabilities: [] }, { deadlineMs: 10_000 }));
        } finally {
          plugin.close();
        }
        const probe = connect(health.Health, `unix://${address}`, { token });
        try {
          await probe.client.check({}, { deadlineMs: 10_000 });
        } finally {
          probe.close();
        }
        assert.equal(alive(child.pid!), true, "the plugin is still running");
      } finally {
        child.kill("SIGKILL");
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
