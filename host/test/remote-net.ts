/**
 * Two network namespaces joined by a veth pair, for the attach-mode tests:
 * one for the host (10.231.N.1) and one for the plugin (10.231.N.2). The test
 * makes them and removes them; processes run in them with `ip netns exec`.
 * Also: the host process (fixtures/remote-host.ts) driven over stdio, and a
 * plain supervisor script that restarts the plugin (a stand-in for
 * Kubernetes).
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { join } from "node:path";

export interface NetPair {
  hostNs: string;
  pluginNs: string;
  hostIp: string;
  pluginIp: string;
  /** The plugin side's veth interface (for `ip link set ... down`). */
  pluginIf: string;
  /** Runs `ip` inside the plugin's namespace. */
  inPlugin(args: string[]): void;
  destroy(): void;
}

function ip(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/**
 * Why these tests cannot run here, or undefined when they can. Under CI=true
 * a machine that runs as root with `ip` available is expected to support
 * namespaces: there, a failure to create one is returned as `fail`, not a skip.
 */
export function netnsSupport(): { skip?: string; fail?: string } {
  if (process.platform !== "linux") return { skip: "network namespaces need Linux" };
  if (process.getuid?.() !== 0) return { skip: "creating network namespaces needs root (run the suite as root, or in CI's root container)" };
  if (spawnSync("ip", ["-V"], { stdio: "ignore" }).status !== 0) return { skip: "the `ip` command (iproute2) is not installed" };
  const probe = `pwprobe${process.pid}`;
  const made = spawnSync("ip", ["netns", "add", probe], { encoding: "utf8" });
  if (made.status !== 0) {
    const why = `\`ip netns add\` failed: ${(made.stderr || "").trim() || `status ${made.status}`}`;
    return process.env.CI === "true" ? { fail: `${why} (CI=true on a root machine with iproute2: namespaces are expected to work)` } : { skip: why };
  }
  spawnSync("ip", ["netns", "del", probe], { stdio: "ignore" });
  return {};
}

let pairs = 0;

/**
 * Deletes namespaces this helper made for a test process that is gone (one
 * that was SIGKILLed could not run its cleanup): pwh-PID-N / pwp-PID-N.
 */
function removeStaleNamespaces(): void {
  const list = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout ?? "";
  for (const m of list.matchAll(/^(pw[hp]-(\d+)-\d+)\b/gm)) {
    const pid = Number(m[2]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) spawnSync("ip", ["netns", "del", m[1]!], { stdio: "ignore" });
  }
}

export function createNetPair(): NetPair {
  removeStaleNamespaces();
  const n = pairs++;
  const subnet = (process.pid + n * 7) % 250;
  const hostNs = `pwh-${process.pid}-${n}`;
  const pluginNs = `pwp-${process.pid}-${n}`;
  // Interface names hold at most 15 bytes.
  const hostIf = `vh${process.pid}x${n}`.slice(0, 15);
  const pluginIf = `vp${process.pid}x${n}`.slice(0, 15);
  const hostIp = `10.231.${subnet}.1`;
  const pluginIp = `10.231.${subnet}.2`;
  const destroy = (): void => {
    // Deleting a namespace deletes the veth end in it, and so the pair.
    spawnSync("ip", ["netns", "del", hostNs], { stdio: "ignore" });
    spawnSync("ip", ["netns", "del", pluginNs], { stdio: "ignore" });
    spawnSync("ip", ["link", "del", hostIf], { stdio: "ignore" });
  };
  try {
    ip(["netns", "add", hostNs]);
    ip(["netns", "add", pluginNs]);
    ip(["link", "add", hostIf, "type", "veth", "peer", "name", pluginIf]);
    ip(["link", "set", hostIf, "netns", hostNs]);
    ip(["link", "set", pluginIf, "netns", pluginNs]);
    for (const [ns, dev, addr] of [
      [hostNs, hostIf, hostIp],
      [pluginNs, pluginIf, pluginIp],
    ] as const) {
      ip(["-n", ns, "addr", "add", `${addr}/30`, "dev", dev]);
      ip(["-n", ns, "link", "set", dev, "up"]);
      ip(["-n", ns, "link", "set", "lo", "up"]);
    }
  } catch (e) {
    destroy();
    throw e;
  }
  return { hostNs, pluginNs, hostIp, pluginIp, pluginIf, inPlugin: (args) => ip(["-n", pluginNs, ...args]), destroy };
}

/** Kills a detached child's whole process group; ignores one already gone. */
export function killGroup(child: ChildProcess | undefined, signal: NodeJS.Signals = "SIGKILL"): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // gone
  }
}

/** Resolves when `child` has exited (at once if it already has). */
export function exitedOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

type Line = Record<string, unknown>;

/** The host process in its namespace, driven one JSON line at a time. */
export class RemoteHostProc {
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  readonly stderr: string[] = [];
  private waiters: { match: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];

  constructor(ns: string, script: string, config: object) {
    this.child = spawn("ip", ["netns", "exec", ns, process.execPath, script, JSON.stringify(config)], {
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env },
    });
    createInterface({ input: this.child.stdout! }).on("line", (text) => {
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        return;
      }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(line)) return true;
        w.resolve(line);
        return false;
      });
    });
    createInterface({ input: this.child.stderr! }).on("line", (text) => {
      this.stderr.push(text);
      if (this.stderr.length > 200) this.stderr.shift();
    });
  }

  /** The next line (from `from` on in `lines`) that matches, within `timeoutMs`. */
  waitLine(match: (l: Line) => boolean, timeoutMs: number, what: string, from = this.lines.length): Promise<Line> {
    const seen = this.lines.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; host stderr tail:\n${this.stderr.slice(-15).join("\n")}`));
      }, timeoutMs);
      const done = (l: Line): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push({ match, resolve: done });
    });
  }

  /** Sends a command and waits for its reply. */
  async command(cmd: Line, timeoutMs = 60_000): Promise<Line> {
    const from = this.lines.length;
    this.child.stdin!.write(`${JSON.stringify(cmd)}\n`);
    return this.waitLine((l) => l.reply === cmd.op, timeoutMs, `the reply to ${JSON.stringify(cmd)}`, from);
  }

  /** Index to pass to waitLine so only events after now count. */
  mark(): number {
    return this.lines.length;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin!.end();
      const gone = exitedOf(this.child);
      const timer = setTimeout(() => killGroup(this.child), 15_000);
      await gone;
      clearTimeout(timer);
    }
    killGroup(this.child);
  }
}

/**
 * A plain supervisor: a shell loop in the plugin's namespace that starts the
 * plugin again whenever it exits (Kubernetes' restartPolicy: Always, without
 * the backoff). The current plugin pid is in `pidFile`; each start appends a
 * line to `startsFile`.
 */
export class Supervisor {
  readonly child: ChildProcess;
  readonly pidFile: string;
  readonly startsFile: string;
  readonly stopFile: string;
  readonly stderr: string[] = [];
  private serving = 0;
  private servingWaiters: { n: number; resolve: () => void }[] = [];

  constructor(ns: string, dir: string, command: string[], env: Record<string, string>) {
    this.pidFile = join(dir, "plugin.pid");
    this.startsFile = join(dir, "plugin.starts");
    this.stopFile = join(dir, "supervisor.stop");
    writeFileSync(this.startsFile, "");
    const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
    const script = `while [ ! -e '${this.stopFile}' ]; do ${quoted} & echo $! > '${this.pidFile}'; echo start >> '${this.startsFile}'; wait $!; done`;
    this.child = spawn("ip", ["netns", "exec", ns, "bash", "-c", script], { detached: true, stdio: ["ignore", "ignore", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env } });
    createInterface({ input: this.child.stderr! }).on("line", (text) => {
      this.stderr.push(text);
      if (this.stderr.length > 200) this.stderr.shift();
      if (text.includes("serving attach mode")) {
        this.serving++;
        this.servingWaiters = this.servingWaiters.filter((w) => {
          if (this.serving < w.n) return true;
          w.resolve();
          return false;
        });
      }
    });
  }

  /** How many times a plugin process has said it serves. */
  get servingCount(): number {
    return this.serving;
  }

  /** Waits until the plugin has said "serving" `n` times in all. */
  waitServing(n: number, timeoutMs: number): Promise<void> {
    if (this.serving >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the plugin did not serve (${n} times) within ${timeoutMs} ms; its stderr:\n${this.stderr.slice(-15).join("\n")}`)), timeoutMs);
      this.servingWaiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /**
   * The running plugin's pid. The shell rewrites the file at each start, so a
   * read can find it empty: it is read again (bounded), and never returns 0 or
   * less, which process.kill would take for a whole process group.
   */
  pluginPid(): number {
    for (let i = 0; i < 1000; i++) {
      const pid = existsSync(this.pidFile) ? Number(readFileSync(this.pidFile, "utf8").trim()) : NaN;
      if (Number.isInteger(pid) && pid > 1) return pid;
      spawnSync("sleep", ["0.01"]);
    }
    throw new Error(`no plugin pid in ${this.pidFile}`);
  }

  async close(): Promise<void> {
    writeFileSync(this.stopFile, "");
    const pid = existsSync(this.pidFile) ? Number(readFileSync(this.pidFile, "utf8").trim()) : NaN;
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    killGroup(this.child);
    await exitedOf(this.child);
  }
}
