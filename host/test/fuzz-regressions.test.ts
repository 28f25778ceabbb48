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
import * as grpc from "@grpc/grpc-js";
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

  test("HostService: 16 MiB requests of millions of tiny fields, sent without a token, are refused cheaply (four of them killed the host out of memory)", async () => {
    const child = spawn(process.execPath, [fixture("host-proc")], { stdio: ["ignore", "pipe", "pipe"] });
    let info: { pids: number[]; runDir: string; dataDir: string } | undefined;
    try {
      info = await new Promise((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          if (out.includes("\n")) resolve(JSON.parse(out.split("\n")[0]!));
        });
        child.once("exit", (code) => reject(new Error(`host exited ${code} before it was ready`)));
      });
      // Field 15, varint 0, repeated: protobuf-es kept each one as an unknown field.
      const body = Buffer.alloc(16 * 1024 * 1024 - 64);
      for (let i = 0; i < body.length; i += 2) body[i] = 0x78;
      const client = new grpc.Client(`unix://${join(info!.runDir, "host.sock")}`, grpc.credentials.createInsecure(), {
        "grpc.max_send_message_length": 16 * 1024 * 1024,
      });
      const call = (path: string, request: Buffer): Promise<grpc.ServiceError | undefined> =>
        new Promise((resolve) => {
          client.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, request, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err) => resolve(err ?? undefined));
        });
      const started = performance.now();
      const errors = await Promise.all(Array.from({ length: 4 }, () => call("/plugwire.v1.HostService/LookupName", body)));
      for (const e of errors) assert.ok(e && e.code !== grpc.status.UNAVAILABLE, `the host answered each request (got ${e?.code} ${e?.details})`);
      assert.ok(performance.now() - started < 10_000, "refused within 10 s");
      assert.equal(alive(child.pid!), true, "the host is still running");
      const after = await call("/plugwire.v1.HostService/GetSigningSeed", Buffer.alloc(0));
      assert.equal(after?.code, grpc.status.UNAUTHENTICATED, "and still answers");
      client.close();
    } finally {
      child.kill("SIGTERM");
      if (info) {
        rmSync(info.dataDir, { recursive: true, force: true });
        rmSync(info.runDir, { recursive: true, force: true });
      }
    }
  });

  test(
    "SDK: an error whose text is not well-formed UTF-16 (Start with config_json '😀') is answered, not a crash",
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
