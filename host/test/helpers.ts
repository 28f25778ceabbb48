/**
 * Shared test helpers: a host wired to recording ports, fixture paths, and
 * the no-leftover-process check every suite runs in teardown.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { createHost, MemoryPeerDirectory, type Host, type HostOptions, type PluginConfig } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..");

/** Path of a compiled fixture plugin in host/test/fixtures. */
export function fixture(name: string): string {
  return join(here, "fixtures", `${name}.js`);
}

/** Path of a compiled example plugin. */
export function example(name: string): string {
  return join(repo, "plugins-example", "dist", `${name}.js`);
}

/** A plugin config that runs a compiled JS file with this node. */
export function nodePlugin(name: string, script: string, extra: Partial<PluginConfig> = {}): PluginConfig {
  const { args = [], ...rest } = extra;
  return { name, command: process.execPath, args: [script, ...args], ...rest };
}

/** Everything the control port was asked to send. */
export interface Sent {
  kind: "direct" | "routed";
  peer: string;
  frame: string;
}

export interface TestHost {
  host: Host;
  directory: MemoryPeerDirectory;
  sent: Sent[];
  dataDir: string;
  /** Every plugin pid seen while the host ran. */
  pids: Set<number>;
  /** Stops the host, asserts no plugin process is left, and removes the data dir. */
  close(): Promise<void>;
}

export const SEED = new Uint8Array(32).fill(7);

export function testHost(plugins: PluginConfig[], options: Partial<HostOptions> = {}): TestHost {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "pwt-"));
  const directory = new MemoryPeerDirectory();
  const sent: Sent[] = [];
  const host = createHost({
    plugins,
    dataDir,
    logger: pino({ level: process.env.PLUGWIRE_TEST_LOG ?? "silent" }),
    snapshotIntervalMs: 0,
    ports: {
      peers: directory,
      control: {
        sendDirect: (peer, frame) => {
          sent.push({ kind: "direct", peer: Buffer.from(peer).toString("hex"), frame: Buffer.from(frame).toString() });
        },
        sendRouted: (dst, frame) => {
          sent.push({ kind: "routed", peer: Buffer.from(dst).toString("hex"), frame: Buffer.from(frame).toString() });
          return dst[0] === 1;
        },
      },
      identity: { signingSeed: () => SEED },
    },
    ...options,
  });
  const pids = new Set<number>();
  host.on("plugin:state", () => {
    for (const s of host.status()) if (s.pid) pids.add(s.pid);
  });
  return {
    host,
    directory,
    sent,
    dataDir,
    pids,
    async close() {
      try {
        await host.stop();
        for (const s of host.status()) if (s.pid) pids.add(s.pid);
        assertGone(pids);
      } finally {
        if (!options.dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw e;
  }
}

/** Throws if any of these processes still exists. */
export function assertGone(pids: Iterable<number>): void {
  const left = [...pids].filter(alive);
  if (left.length > 0) throw new Error(`plugin processes left behind: ${left.join(", ")}`);
}

/** Resolves with the first event of `name` that matches `predicate`, or rejects after `timeoutMs`. */
export function waitFor<T>(
  emitter: { on(name: string, l: (arg: T) => void): unknown; off(name: string, l: (arg: T) => void): unknown },
  name: string,
  predicate: (arg: T) => boolean = () => true,
  timeoutMs = 20_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(name, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${name}`));
    }, timeoutMs);
    const listener = (arg: T): void => {
      if (!predicate(arg)) return;
      clearTimeout(timer);
      emitter.off(name, listener);
      resolve(arg);
    };
    emitter.on(name, listener);
  });
}

/** A 32-byte node id filled with `n`. */
export function peer(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

/** A loopback TCP port free right now (attach mode listens on a fixed port, as a Service would give). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}
