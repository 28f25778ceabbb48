/**
 * A real `plugwire run` for the dashboard and Grafana tests: the demo config
 * (plugins-example/plugwire.yaml: echo, counter, presence) with its dataDir
 * in a temp dir, plus any extra plugins, on a TCP admin port and a metrics
 * port (both picked by the OS). Its JSON log lines are kept and can be
 * waited for; stop() sends SIGTERM (SIGKILL after a bound) and checks that no
 * plugin process is left.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { adminClient, type AdminClient } from "../src/admin/client.js";
import { alive } from "./helpers.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const BIN = join(repo, "bin", "plugwire.mjs");
const DEMO_CONFIG = join(repo, "plugins-example", "plugwire.yaml");

export type LogRecord = Record<string, unknown>;

export interface LiveHost {
  dir: string;
  child: ChildProcess;
  /** http://127.0.0.1:PORT of the admin API (and the dashboard). */
  adminUrl: string;
  /** The dashboard's one-time login URL, from the log. */
  loginUrl: string | undefined;
  metricsUrl: string;
  token: string;
  client: AdminClient;
  logs: LogRecord[];
  /** Resolves with the first log record (seen so far or later) that matches, within timeoutMs. */
  waitForLog(match: (r: LogRecord) => boolean, what: string, timeoutMs?: number): Promise<LogRecord>;
  /** SIGTERM, then SIGKILL after 15 s; kills any plugin pid given that is still alive. */
  stop(pluginPids?: number[]): Promise<void>;
}

export interface LiveHostOptions {
  /** Extra plugin entries for the config (YAML mappings). */
  plugins?: Array<Record<string, unknown>>;
  /** Extra top-level config keys. */
  config?: Record<string, unknown>;
  args?: string[];
}

export async function startLiveHost(options: LiveHostOptions = {}): Promise<LiveHost> {
  const dir = mkdtempSync(join(tmpdir(), "pwt-live-"));
  const doc = parseDocument(readFileSync(DEMO_CONFIG, "utf8"));
  doc.set("dataDir", join(dir, "data"));
  for (const [k, v] of Object.entries(options.config ?? {})) doc.set(k, v);
  const plugins = doc.get("plugins") as { items: unknown[] };
  plugins.items.forEach((_, i) => doc.setIn(["plugins", i, "cwd"], join(repo, "plugins-example")));
  for (const p of options.plugins ?? []) (doc.get("plugins") as { add(v: unknown): void }).add(doc.createNode(p));
  const configPath = join(dir, "plugwire.yaml");
  writeFileSync(configPath, doc.toString());

  const child = spawn(process.execPath, [BIN, "run", "--config", configPath, "--admin-port", "0", "--metrics-port", "0", ...(options.args ?? [])], {
    cwd: repo,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const logs: LogRecord[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      logs.push(JSON.parse(line) as LogRecord);
    } catch {
      return;
    }
    for (const w of [...waiters]) w();
  });
  let exitCode: number | null | undefined;
  child.once("exit", (code) => {
    exitCode = code;
    for (const w of [...waiters]) w();
  });
  const waitForLog = (match: (r: LogRecord) => boolean, what: string, timeoutMs = 30_000): Promise<LogRecord> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(match);
        if (found) {
          done();
          resolve(found);
        } else if (exitCode !== undefined) {
          done();
          reject(new Error(`plugwire run exited (${exitCode}) before logging ${what}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no log line ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  const stop = async (pluginPids: number[] = []): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    // (pid 0 is "no process": kill(0) would signal our own process group)
    for (const pid of pluginPids) if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const listening = await waitForLog((r) => r.msg === "admin API listening; try 'plugwire status'", "'admin API listening'");
    const metrics = await waitForLog((r) => r.msg === "metrics listening", "'metrics listening'");
    const adminUrl = `http://127.0.0.1:${String(listening.adminPort)}`;
    const token = readFileSync(join(dir, "data", "admin.token"), "utf8").trim();
    const dashboard = logs.find((r) => typeof r.loginUrl === "string");
    return {
      dir,
      child,
      adminUrl,
      loginUrl: dashboard?.loginUrl as string | undefined,
      metricsUrl: String(metrics.url),
      token,
      client: adminClient(adminUrl, { token }),
      logs,
      waitForLog,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
