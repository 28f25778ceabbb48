/**
 * A watched child process: its exit (a crash, unless we asked for it), the
 * tail of its stderr, and its memory from /proc (VmRSS sampled, VmHWM peak).
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { procStatus } from "./util.mjs";

export class Watched {
  /** `onLine(obj)` receives every JSON line of stdout; other lines are kept in the tail. */
  constructor(command, args, { env, onLine, sampleMs = 250 } = {}) {
    this.child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] });
    this.pid = this.child.pid;
    this.stderrTail = "";
    this.stdoutTail = "";
    this.expectedExit = false;
    this.exit = undefined;
    this.peakRssKb = 0;
    this.hwmKb = 0;
    this.samples = [];
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exit = { code, signal, expected: this.expectedExit, at: Date.now() };
        clearInterval(this.sampler);
        resolve(this.exit);
      });
    });
    this.child.on("error", () => undefined);
    this.child.stdin.on("error", () => undefined);
    this.child.stderr.on("data", (d) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-8192);
    });
    createInterface({ input: this.child.stdout }).on("line", (line) => {
      if (line.startsWith("{")) {
        try {
          onLine?.(JSON.parse(line));
          return;
        } catch {
          // not ours
        }
      }
      this.stdoutTail = (this.stdoutTail + line + "\n").slice(-8192);
      onLine?.(line);
    });
    this.sampler = setInterval(() => this.sample(), sampleMs);
    this.sampler.unref();
  }

  /** Reads VmRSS and VmHWM now; returns false once the process is gone. */
  sample() {
    const s = procStatus(this.pid);
    if (!s) return false;
    if (s.rssKb !== undefined) {
      this.peakRssKb = Math.max(this.peakRssKb, s.rssKb);
      this.samples.push(s.rssKb);
      if (this.samples.length > 4000) this.samples.splice(0, 2000);
    }
    if (s.hwmKb !== undefined) this.hwmKb = Math.max(this.hwmKb, s.hwmKb);
    return true;
  }

  get alive() {
    return this.exit === undefined;
  }

  send(line) {
    if (this.alive) this.child.stdin.write(`${line}\n`);
  }

  /** Ends stdin and waits up to `ms` for an exit; then SIGKILL. */
  async close(ms = 15_000) {
    this.expectedExit = true;
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), ms);
    await this.exited;
    clearTimeout(timer);
    return this.exit;
  }

  kill() {
    this.expectedExit = true;
    if (this.alive) this.child.kill("SIGKILL");
  }
}

/** True while a process with this pid exists (and is not a zombie we cannot see). */
export function pidAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}
