/**
 * The CLI as a user runs it, through the committed bin shim (bin/plugwire.mjs,
 * what `npx plugwire` runs in this repo), against the demo config
 * plugins-example/plugwire.yaml: `plugwire run` composes the host and the
 * admin API; `plugwire send` and `status` reach it through the data dir's
 * admin.address (and over --admin-port); SIGTERM stops it and leaves no
 * plugin process, no admin.address and no run dir.
 *
 * The config is the demo's own, with only its dataDir moved to a temp dir and
 * each plugin's cwd pinned to plugins-example, so a host a developer runs from
 * the repo is not disturbed. Waits are for output lines and exits, bounded.
 */
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { parseDocument } from "yaml";
import { alive, assertGone } from "./helpers.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");
const DEMO_CONFIG = join(repo, "plugins-example", "plugwire.yaml");
const TEST_TIMEOUT_MS = 60_000;
const SRC = "01".repeat(32);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion. */
function plugwire(args: string[], input?: string): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: repo, timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
    child.stdin?.end(input ?? "");
  });
}

/** The demo config with its dataDir in `dir` and each plugin's cwd pinned; returns its path. */
function demoConfigIn(dir: string): string {
  const doc = parseDocument(readFileSync(DEMO_CONFIG, "utf8"));
  doc.set("dataDir", join(dir, "data"));
  const plugins = doc.get("plugins") as { items: unknown[] };
  plugins.items.forEach((_, i) => doc.setIn(["plugins", i, "cwd"], join(repo, "plugins-example")));
  const path = join(dir, "plugwire.yaml");
  writeFileSync(path, doc.toString());
  return path;
}

/** Resolves with the first JSON log line on the child's stdout whose msg is `msg`. */
function logLine(child: ChildProcess, msg: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => {
      lines.close();
      reject(new Error(`no '${msg}' log line within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      lines.close();
    };
    lines.on("line", (line) => {
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg !== msg) return;
        done();
        resolve(record);
      } catch {
        // not a log line
      }
    });
    child.once("exit", (code) => {
      done();
      reject(new Error(`plugwire run exited (${code}) before logging '${msg}'`));
    });
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

describe("plugwire CLI against the demo config", () => {
  it("run, send, status over the socket and TCP, then SIGTERM leaves nothing behind", { timeout: TEST_TIMEOUT_MS }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-cli-"));
    const config = demoConfigIn(dir);
    const host = spawn(process.execPath, [BIN, "run", "--config", config, "--admin-port", "0"], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
    let pids: number[] = [];
    try {
      const listening = await logLine(host, "admin API listening; try 'plugwire status'");
      const socket = String(listening.admin);
      assert.equal(readFileSync(join(dir, "data", "admin.address"), "utf8"), `${socket}\n`);
      assert.match(socket, /\/pw-[^/]+\/admin\.sock$/);

      const echo = await plugwire(["send", "echo", "--src", SRC, "--body", "hi", "-c", config]);
      assert.equal(echo.stderr, "");
      assert.match(echo.stdout, /^acked by echo \(kind echo\.ping\) in \d+ ms\neffects \(1\):\n {2}sendDirect to 0101010101010101…: 7 bytes "pong:hi"\n$/);
      assert.equal(echo.code, 0);

      const counter = await plugwire(["send", "--kind", "counter.hit", "--src", SRC, "--body-file", "-", "--config", config], "from stdin");
      assert.match(counter.stdout, /^acked by counter \(kind counter\.hit\) in \d+ ms\nno effects\n$/);
      assert.equal(counter.code, 0);

      const unknown = await plugwire(["send", "--kind", "nope", "--src", SRC, "--body", "x", "-c", config]);
      assert.equal(unknown.code, 1);
      assert.equal(
        unknown.stderr,
        "plugwire: no plugin claims payload kind 'nope' (from peer 0101010101010101); claimed kinds: echo.ping, counter.hit, presence.who. Add a plugin that lists it in its payload kinds.\n",
      );

      const status = await plugwire(["status", "--json", "--admin", `http://127.0.0.1:${String(listening.adminPort)}`, "-c", config]);
      assert.equal(status.code, 0, status.stderr);
      const plugins = JSON.parse(status.stdout) as Array<{ name: string; state: string; pid: number; lastAckedSeq: number }>;
      assert.deepEqual(
        plugins.map((p) => [p.name, p.state]),
        [["echo", "ready"], ["counter", "ready"], ["presence", "ready"]],
      );
      assert.equal(plugins.find((p) => p.name === "counter")!.lastAckedSeq, 1);
      pids = plugins.map((p) => p.pid);

      host.kill("SIGTERM");
      assert.equal(await exited(host), 0);
      assertGone(pids);
      assert.equal(existsSync(join(dir, "data", "admin.address")), false);
      assert.equal(existsSync(dirname(socket)), false);

      const gone = await plugwire(["status", "-c", config]);
      assert.equal(gone.code, 1);
      assert.equal(
        gone.stderr,
        `plugwire: no running host found for ${config} (no ${join(dir, "data", "admin.address")}); start one with 'plugwire run --config ${config}' or pass --admin SOCKET\n`,
      );
    } finally {
      if (host.exitCode === null && host.signalCode === null) {
        host.kill("SIGKILL");
        await exited(host);
      }
      for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("upgrade: a hot upgrade of the counter through the admin API keeps its count; a new build that cannot start is rolled back; status shows the spare", { timeout: TEST_TIMEOUT_MS }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-cli-up-"));
    const config = demoConfigIn(dir);
    const host = spawn(process.execPath, [BIN, "run", "--config", config], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
    const pids = new Set<number>();
    const seen = async (): Promise<Array<{ name: string; state: string; pid: number; standbyPid: number; standbyState: string; lastAckedSeq: number }>> => {
      const status = await plugwire(["status", "--json", "-c", config]);
      assert.equal(status.code, 0, status.stderr);
      const plugins = JSON.parse(status.stdout) as Array<{ name: string; state: string; pid: number; standbyPid: number; standbyState: string; lastAckedSeq: number }>;
      for (const p of plugins) for (const pid of [p.pid, p.standbyPid]) if (pid) pids.add(pid);
      return plugins;
    };
    try {
      await logLine(host, "admin API listening; try 'plugwire status'");
      for (let i = 0; i < 3; i++) assert.equal((await plugwire(["send", "--kind", "counter.hit", "--src", SRC, "--body", "x", "-c", config])).code, 0);
      const before = (await seen()).find((p) => p.name === "counter")!;
      assert.match(before.standbyState, /^(spawning|waiting)$/, "the stateful counter keeps a warm standby spare");
      assert.equal((await seen()).find((p) => p.name === "echo")!.standbyState, "off", "the stateless echo keeps none");

      const up = await plugwire(["upgrade", "counter", "-c", config]);
      assert.equal(up.stderr, "");
      assert.match(up.stdout, new RegExp(`^upgraded counter: pid ${before.pid} → \\d+, delivery held [\\d.]+ ms, state through seq 3 handed over; ready\n$`));
      assert.equal(up.code, 0);
      const after = (await seen()).find((p) => p.name === "counter")!;
      assert.notEqual(after.pid, before.pid);
      assert.equal((await plugwire(["send", "--kind", "counter.hit", "--src", SRC, "--body", "x", "-c", config])).code, 0);
      assert.equal((await seen()).find((p) => p.name === "counter")!.lastAckedSeq, 4);

      const bad = await plugwire(["upgrade", "counter", "--command", join(dir, "no-such-build"), "-c", config]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^plugwire: plugin 'counter' was not upgraded to '.*no-such-build .*': its new build could not be started: .*The upgrade was rolled back: the running build \(pid \d+\) keeps serving/s);
      assert.equal((await seen()).find((p) => p.name === "counter")!.pid, after.pid);

      host.kill("SIGTERM");
      assert.equal(await exited(host), 0);
      assertGone(pids);
    } finally {
      if (host.exitCode === null && host.signalCode === null) {
        host.kill("SIGKILL");
        await exited(host);
      }
      for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("SIGTERM while the plugins are still starting stops the host cleanly: exit 0, no plugin, run dir or lock left", { timeout: TEST_TIMEOUT_MS }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-cli-"));
    // A plugin that never prints its handshake line: the host stays in start() until the signal.
    const script = join(dir, "never-ready.mjs");
    const pidFile = join(dir, "slow.pid");
    writeFileSync(script, `import { writeFileSync } from "node:fs";\nwriteFileSync(${JSON.stringify(pidFile)}, String(process.pid));\nprocess.stderr.write("starting slowly\\n");\nsetInterval(() => {}, 1000);\n`);
    const config = join(dir, "plugwire.yaml");
    writeFileSync(config, `dataDir: ${join(dir, "data")}\nplugins:\n  - name: slow\n    command: ${process.execPath}\n    args: [${script}]\n    handshakeTimeoutMs: 60000\n`);
    const host = spawn(process.execPath, [BIN, "run", "--config", config], { cwd: repo, stdio: ["ignore", "pipe", "inherit"] });
    try {
      const starting = await logLine(host, "plugin starting");
      assert.equal(starting.plugin, "slow");
      // The plugin's own first line shows its process runs.
      await logLine(host, "starting slowly");
      const pid = Number(readFileSync(pidFile, "utf8"));
      assert.ok(pid > 0 && alive(pid), "the plugin runs");
      // This host's own socket dir, from the plugin's environment (other test files run hosts meanwhile).
      const runDir = readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .find((e) => e.startsWith("PLUGWIRE_SOCKET_DIR="))
        ?.slice("PLUGWIRE_SOCKET_DIR=".length);
      assert.ok(runDir && existsSync(runDir), "the host made its socket dir");
      host.kill("SIGTERM");
      assert.equal(await exited(host), 0, "a signal during start is a clean stop");
      assert.equal(existsSync(join(dir, "data", "host.lock")), false, "the data dir lock was given back");
      assert.equal(alive(pid), false, "the starting plugin was killed");
      assert.equal(existsSync(runDir), false, "the host's socket dir was removed");
    } finally {
      if (host.exitCode === null && host.signalCode === null) {
        host.kill("SIGKILL");
        await exited(host);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the bin shim says how to build when the CLI is not built", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pwt-shim-"));
    try {
      mkdirSync(join(dir, "bin"));
      copyFileSync(BIN, join(dir, "bin", "plugwire.mjs"));
      const r = await new Promise<Result>((resolve) => {
        execFile(process.execPath, [join(dir, "bin", "plugwire.mjs"), "status"], (error, stdout, stderr) =>
          resolve({ code: typeof error?.code === "number" ? error.code : 0, stdout, stderr }),
        );
      });
      assert.equal(r.code, 1);
      assert.equal(
        r.stderr,
        `plugwire: the CLI is not built yet (${join(dir, "host", "dist", "src", "cli", "main.js")} is missing). Run 'npm run build' (or 'npm start', which builds first) in ${dir}/, then try again.\n`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
