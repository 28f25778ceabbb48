/**
 * One host per data dir (docs/supervision.md, "One host per data dir"), on
 * real processes and files:
 * - a second `plugwire run` on the data dir of a running host is refused,
 *   naming the holder, and the running host's state and admin address stay;
 * - the lock of a host that is gone (its pid no longer runs it) is taken over
 *   at once; one whose holder cannot be checked (another machine) only once
 *   it has not been refreshed for LOCK_STALE_MS;
 * - stop() gives the lock back.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";
import { LOCK_FILE, LOCK_STALE_MS } from "../src/data-lock.js";
import { example, nodePlugin, peer, testHost } from "./helpers.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");
const T = 60_000;

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: repo, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

function lockOf(dataDir: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(dataDir, LOCK_FILE), "utf8")) as Record<string, unknown>;
}

describe("one host per data dir", () => {
  it("a second `plugwire run` on a running host's data dir is refused, naming the holder; the first host's state is untouched", { timeout: T }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pwlock-"));
    const t = testHost([nodePlugin("counter", example("counter"))], { dataDir });
    try {
      await t.host.start();
      for (let i = 0; i < 5; i++) await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
      await t.host.snapshot("counter");
      assert.equal(lockOf(dataDir).pid, process.pid, "the running host holds the lock");
      const config = join(dataDir, "second.yaml");
      writeFileSync(config, `dataDir: ${dataDir}\nplugins:\n  - name: counter\n    command: ${process.execPath}\n    args: [${example("counter")}]\n`);
      const second = await runCli(["run", "--config", config]);
      assert.equal(second.code, 1, `the second host must exit 1; stdout: ${second.stdout}\nstderr: ${second.stderr}`);
      const output = second.stdout + second.stderr;
      assert.match(output, new RegExp(`in use by another plugwire host \\(pid ${process.pid} `), output);
      assert.match(output, /Stop that host first, or give this one a dataDir of its own/);
      assert.equal(lockOf(dataDir).pid, process.pid, "the refused host left the lock alone");
      // The first host carries on, and its state is its own.
      for (let i = 0; i < 3; i++) await t.host.dispatch(peer(1), "counter.hit", new Uint8Array(0));
      const record = await t.host.snapshot("counter");
      assert.ok(record);
      assert.equal(Number(record.appliedSeq), 8, "8 payloads, all from the first host");
    } finally {
      await t.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("stop() gives the lock back; a gone holder's lock is taken over at once; an unverifiable one only once stale", { timeout: T }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pwlock-"));
    const lockPath = join(dataDir, LOCK_FILE);
    try {
      const a = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      await a.host.start();
      await a.close();
      assert.throws(() => readFileSync(lockPath), /ENOENT/, "stop() removed the lock");

      // A holder that is gone: a process of this machine and pid namespace that exited.
      const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
      const mine = { ...JSON.parse(JSON.stringify(lockTemplate())), pid: Number(gone.stdout), startTime: "1" };
      writeFileSync(lockPath, JSON.stringify(mine));
      const b = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      await b.host.start();
      assert.equal(lockOf(dataDir).pid, process.pid, "the gone holder's lock was taken over");
      await b.close();

      // A holder on another machine: refused while its lock is fresh, taken over once stale.
      writeFileSync(lockPath, JSON.stringify({ ...lockTemplate(), pid: 1, bootId: "another-machine", hostname: "elsewhere" }));
      const c = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      await assert.rejects(c.host.start(), (e: Error) => {
        assert.match(e.message, /in use by another plugwire host \(pid 1 on elsewhere/);
        assert.match(e.message, /cannot be checked from here/);
        return true;
      });
      const old = new Date(Date.now() - LOCK_STALE_MS - 5_000);
      utimesSync(lockPath, old, old);
      const d = testHost([nodePlugin("counter", example("counter"))], { dataDir });
      await d.host.start();
      assert.equal(lockOf(dataDir).pid, process.pid, "the stale lock was taken over");
      await d.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

/** The fields of a lock file as this process would write them (what the host compares). */
function lockTemplate(): Record<string, unknown> {
  const stat = readFileSync("/proc/self/stat", "utf8");
  return {
    pid: process.pid,
    startTime: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19],
    bootId: readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim(),
    pidNamespace: spawnSync("readlink", ["/proc/self/ns/pid"], { encoding: "utf8" }).stdout.trim(),
    hostname: "vm",
    since: new Date().toISOString(),
  };
}
