/**
 * Per-launch confinement of a plugin: its resource limits (memory, open
 * files, CPU time) and the reach of the final kill.
 *
 * Where the host may create cgroups (Linux, cgroup v1 with a memory or pids
 * hierarchy, or a pure cgroup v2 mount), every launch gets its own cgroup,
 * nested in the host's: the plugin enters it before its command runs (a
 * `/bin/sh` wrapper writes its pid to `cgroup.procs`, then sets the rlimits
 * and execs the command), so every descendant is in it too, including one
 * that calls setsid. At the end of the launch every process in the cgroup is
 * killed (cgroup.kill on v2, else SIGKILL to each pid of cgroup.procs until
 * it is empty), and the cgroup is removed. The memory limit is the cgroup's
 * (v1 memory.limit_in_bytes, v2 memory.max); its OOM kills are read from
 * memory.oom_control / memory.events.
 *
 * Without a usable cgroup, the memory limit falls back to RLIMIT_DATA (see
 * docs/configuration.md for its caveat), and the final kill scans /proc for
 * processes whose environment carries this launch's PLUGWIRE_SOCKET_DIR and
 * PLUGWIRE_INSTANCE_ID (unique per launch and host).
 *
 * openFiles and cpuSeconds are rlimits (RLIMIT_NOFILE, RLIMIT_CPU) in every
 * case: they bind each process of the plugin separately.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";

/** Resource limits of one plugin (config `limits`); each is optional. */
export interface PluginLimits {
  /** Memory of the plugin and its children, in MiB (a cgroup; else RLIMIT_DATA per process). */
  memoryMiB?: number;
  /** Open file descriptors per process (RLIMIT_NOFILE). */
  openFiles?: number;
  /** CPU time per process, in seconds (RLIMIT_CPU: SIGXCPU, then SIGKILL 2 s later). */
  cpuSeconds?: number;
}

export const LIMIT_KEYS = ["memoryMiB", "openFiles", "cpuSeconds"] as const;

/** Seconds between RLIMIT_CPU's soft limit (SIGXCPU) and its hard limit (SIGKILL). */
const CPU_HARD_MARGIN_S = 2;
/** Rounds of SIGKILL to the cgroup's processes before giving up (a fork bomb can refill it for a while). */
const KILL_ROUNDS = 200;
/** Time allowed for the cgroup to empty after the kills. */
const KILL_WAIT_MS = 3_000;
/** Retries of an emptied cgroup's removal while the kernel still reports it busy (10 ms apart). */
const RMDIR_RETRIES = 50;
const SHELL = "/bin/sh";
const OUT_OF_MEMORY = /out of memory|Cannot allocate memory|ENOMEM|allocation failed/i;
const TOO_MANY_FILES = /EMFILE|too many open files/i;

type CgroupFlavour = "v1" | "v2";

interface CgroupParent {
  flavour: CgroupFlavour;
  /** Directory of the host's own cgroup, in which launch cgroups are made. */
  dir: string;
  /** Whether a launch cgroup there can limit memory. */
  memory: boolean;
}

let cachedParent: CgroupParent | null | undefined;

/** Where this process can make child cgroups, or null. Detected once. Set PLUGWIRE_NO_CGROUP=1 to turn cgroups off. */
export function cgroupParent(): CgroupParent | null {
  if (cachedParent !== undefined) return cachedParent;
  cachedParent = detectCgroupParent();
  return cachedParent;
}

/** Forgets the detected cgroup parent (tests switch PLUGWIRE_NO_CGROUP). */
export function resetCgroupDetection(): void {
  cachedParent = undefined;
}

function ownCgroupPath(controller: string): string | undefined {
  let text: string;
  try {
    text = readFileSync("/proc/self/cgroup", "utf8");
  } catch {
    return undefined;
  }
  for (const line of text.split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (controllers === undefined || path === undefined) continue;
    if (controller === "" ? controllers === "" : controllers.split(",").includes(controller)) return path;
  }
  return undefined;
}

function canMakeChild(dir: string): boolean {
  const probe = join(dir, `plugwire-probe-${process.pid}-${randomBytes(3).toString("hex")}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the empty launch cgroups a host that died without stopping left
 * behind (`plugwire-<pid>-…` whose host pid is gone); a cgroup that still
 * holds processes cannot be removed and is left be.
 */
function sweepStale(dir: string): void {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = Number(/^plugwire-(\d+)-/.exec(entry)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // its host runs
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") continue;
    }
    try {
      rmdirSync(join(dir, entry));
    } catch {
      // not empty, or not ours
    }
  }
}

function detectCgroupParent(): CgroupParent | null {
  const parent = findCgroupParent();
  if (parent) sweepStale(parent.dir);
  return parent;
}

function findCgroupParent(): CgroupParent | null {
  if (process.platform !== "linux" || process.env.PLUGWIRE_NO_CGROUP === "1") return null;
  // A pure cgroup v2 mount.
  if (existsSync("/sys/fs/cgroup/cgroup.controllers")) {
    const path = ownCgroupPath("");
    if (path === undefined) return null;
    const dir = join("/sys/fs/cgroup", path);
    if (!canMakeChild(dir)) return null;
    let memory = false;
    try {
      memory = readFileSync(join(dir, "cgroup.subtree_control"), "utf8").split(/\s+/).includes("memory");
    } catch {
      memory = false;
    }
    return { flavour: "v2", dir, memory };
  }
  // cgroup v1: the memory hierarchy (it also tracks processes), else pids.
  for (const controller of ["memory", "pids"]) {
    const path = ownCgroupPath(controller);
    const mount = join("/sys/fs/cgroup", controller);
    if (path === undefined || !existsSync(join(mount, "cgroup.procs"))) continue;
    const dir = join(mount, path);
    if (canMakeChild(dir)) return { flavour: "v1", dir, memory: controller === "memory" };
  }
  return null;
}

/** How a launch is confined: "cgroup-v1", "cgroup-v2" or "none". */
export type Confinement = "cgroup-v1" | "cgroup-v2" | "none";

/** What the sandbox knew when the launch ended. */
export interface SandboxReport {
  /** OOM kills in the launch's cgroup. */
  oomKills: number;
  /** Processes killed at the end of the launch, besides the leader. */
  killed: number;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function readNumberField(file: string, key: string): number {
  try {
    const m = new RegExp(`^${key} (\\d+)$`, "m").exec(readFileSync(file, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** One launch's cgroup (if any) and rlimits. */
export class LaunchSandbox {
  readonly confinement: Confinement;
  private readonly cgroupDir: string | undefined;
  private readonly memoryInCgroup: boolean;
  private report: Promise<SandboxReport> | undefined;
  /** What the plugin's stderr said about a limit, at any time (a crash's stack trace can push it out of the tail). */
  private saidOutOfMemory = false;
  private saidTooManyFiles = false;
  private finalReport: SandboxReport | undefined;

  constructor(
    readonly limits: PluginLimits,
    /** PLUGWIRE_SOCKET_DIR and PLUGWIRE_INSTANCE_ID of the launch, for the /proc fallback. */
    private readonly socketDir: string,
    private readonly instanceId: string,
    private readonly logger: Logger,
  ) {
    const parent = cgroupParent();
    let dir: string | undefined;
    if (parent) {
      const candidate = join(parent.dir, `plugwire-${process.pid}-${instanceId}-${randomBytes(3).toString("hex")}`);
      try {
        mkdirSync(candidate);
        dir = candidate;
        if (limits.memoryMiB !== undefined && parent.memory) {
          const bytes = String(Math.floor(limits.memoryMiB * 1024 * 1024));
          if (parent.flavour === "v1") {
            writeFileSync(join(dir, "memory.limit_in_bytes"), bytes);
            // No swap either, where the kernel accounts it.
            if (existsSync(join(dir, "memory.memsw.limit_in_bytes"))) {
              try {
                writeFileSync(join(dir, "memory.memsw.limit_in_bytes"), bytes);
              } catch {
                // swap accounting off: the memory limit alone applies
              }
            }
          } else {
            writeFileSync(join(dir, "memory.max"), bytes);
            try {
              if (existsSync(join(dir, "memory.swap.max"))) writeFileSync(join(dir, "memory.swap.max"), "0");
            } catch {
              // no swap controller: the memory limit alone applies
            }
          }
        }
      } catch (e) {
        logger.warn({ err: String(e), cgroup: candidate }, "could not set up the launch's cgroup; confining it with rlimits only");
        if (dir) this.removeCgroup(dir);
        dir = undefined;
      }
    }
    this.cgroupDir = dir;
    this.confinement = dir ? (parent!.flavour === "v1" ? "cgroup-v1" : "cgroup-v2") : "none";
    this.memoryInCgroup = dir !== undefined && parent!.memory;
  }

  /** Whether a stderr line is worth passing to noteStderr (a limit that only stderr can reveal is set). */
  get watchesStderr(): boolean {
    return this.limits.openFiles !== undefined || (this.limits.memoryMiB !== undefined && !this.memoryInCgroup);
  }

  /** Reads a stderr line for signs of a limit hit (EMFILE; out of memory under RLIMIT_DATA). */
  noteStderr(line: string): void {
    if (OUT_OF_MEMORY.test(line)) this.saidOutOfMemory = true;
    if (TOO_MANY_FILES.test(line)) this.saidTooManyFiles = true;
  }

  /** How memoryMiB is enforced for this launch. */
  get memoryMechanism(): "cgroup" | "RLIMIT_DATA" {
    return this.memoryInCgroup ? "cgroup" : "RLIMIT_DATA";
  }

  /**
   * The file and args to spawn: `command` as it is, or a /bin/sh wrapper
   * that joins the cgroup, sets the rlimits and execs `command`.
   */
  wrap(command: string, args: readonly string[]): { file: string; args: string[]; wrapped: boolean } {
    const steps: string[] = [];
    const fail = (what: string): string => `{ echo ${shellQuote(`plugwire: could not ${what}`)} >&2; exit 125; }`;
    if (this.cgroupDir) steps.push(`echo $$ > ${shellQuote(join(this.cgroupDir, "cgroup.procs"))} || ${fail(`join the cgroup ${this.cgroupDir}`)}`);
    const { openFiles, cpuSeconds, memoryMiB } = this.limits;
    if (openFiles !== undefined) steps.push(`ulimit -n ${openFiles} || ${fail(`set the open-files limit (openFiles: ${openFiles})`)}`);
    if (cpuSeconds !== undefined) {
      steps.push(
        `ulimit -S -t ${cpuSeconds} && ulimit -H -t ${cpuSeconds + CPU_HARD_MARGIN_S} || ${fail(`set the CPU-time limit (cpuSeconds: ${cpuSeconds})`)}`,
      );
    }
    if (memoryMiB !== undefined && !this.memoryInCgroup) {
      const kib = Math.floor(memoryMiB * 1024);
      steps.push(`ulimit -d ${kib} || ${fail(`set the memory limit (memoryMiB: ${memoryMiB}) as RLIMIT_DATA`)}`);
    }
    if (steps.length === 0) return { file: command, args: [...args], wrapped: false };
    return { file: SHELL, args: ["-c", `${steps.join("\n")}\nexec "$@"`, "plugwire-launch", command, ...args], wrapped: true };
  }

  /**
   * Ends the launch's confinement: kills every process left in its cgroup
   * (or, without one, every process carrying its instance id), reads its OOM
   * count and removes the cgroup. Idempotent; the first call's result is kept.
   */
  finish(leaderPid: number | undefined): Promise<SandboxReport> {
    this.report ??= this.finishNow(leaderPid).then((r) => (this.finalReport = r));
    return this.report;
  }

  /** The report of `finish`, once it is done. */
  get ended(): SandboxReport | undefined {
    return this.finalReport;
  }

  private async finishNow(leaderPid: number | undefined): Promise<SandboxReport> {
    const dir = this.cgroupDir;
    if (!dir) return { oomKills: 0, killed: this.killByEnvironment(leaderPid) };
    const oomKills = this.oomKills(dir);
    let killed = 0;
    const deadline = performance.now() + KILL_WAIT_MS;
    const killFile = join(dir, "cgroup.kill");
    for (let round = 0; round < KILL_ROUNDS; round++) {
      const pids = this.cgroupPids(dir);
      if (pids.length === 0) break;
      if (round === 0 && existsSync(killFile)) {
        try {
          writeFileSync(killFile, "1");
        } catch {
          // an older kernel: kill them one by one
        }
      }
      for (const pid of pids) {
        if (pid !== leaderPid) killed++;
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
      }
      if (performance.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const left = this.cgroupPids(dir);
    if (left.length > 0) this.logger.error({ pids: left, cgroup: dir }, "processes of an ended launch survived SIGKILL in its cgroup; the cgroup is left in place");
    else await this.removeCgroupSoon(dir);
    return { oomKills, killed };
  }

  /**
   * Removes an emptied cgroup. The kernel may still count a process that has
   * just left it (EBUSY, seen with cgroup v1's memory controller right after
   * a SIGKILL): a few short retries, bounded, before it is left in place.
   */
  private async removeCgroupSoon(dir: string): Promise<void> {
    for (let attempt = 0; attempt < RMDIR_RETRIES; attempt++) {
      try {
        rmdirSync(dir);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EBUSY") break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    this.removeCgroup(dir);
  }

  private cgroupPids(dir: string): number[] {
    try {
      return readFileSync(join(dir, "cgroup.procs"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map(Number)
        .filter((pid) => pid > 0 && pid !== process.pid);
    } catch {
      return [];
    }
  }

  private oomKills(dir: string): number {
    if (!this.memoryInCgroup) return 0;
    return this.confinement === "cgroup-v1" ? readNumberField(join(dir, "memory.oom_control"), "oom_kill") : readNumberField(join(dir, "memory.events"), "oom_kill");
  }

  private removeCgroup(dir: string): void {
    try {
      rmdirSync(dir);
    } catch (e) {
      this.logger.warn({ err: String(e), cgroup: dir }, "could not remove an ended launch's cgroup");
    }
  }

  /** Without a cgroup: SIGKILL every process whose environment names this launch. Returns how many. */
  private killByEnvironment(leaderPid: number | undefined): number {
    if (process.platform !== "linux") return 0;
    const markers = [`PLUGWIRE_SOCKET_DIR=${this.socketDir}`, `PLUGWIRE_INSTANCE_ID=${this.instanceId}`];
    let killed = 0;
    let entries: string[];
    try {
      entries = readdirSync("/proc");
    } catch {
      return 0;
    }
    for (const entry of entries) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      if (pid === process.pid || pid === leaderPid) continue;
      let environ: string;
      try {
        environ = readFileSync(`/proc/${entry}/environ`, "latin1");
      } catch {
        continue; // gone, or not ours
      }
      const vars = environ.split("\0");
      if (!markers.every((m) => vars.includes(m))) continue;
      try {
        process.kill(pid, "SIGKILL");
        killed++;
      } catch {
        // gone already
      }
    }
    return killed;
  }

  /**
   * Which limit, if any, ended the launch, as "exceeded its memory limit
   * (memoryMiB: 64)"; from the cgroup's OOM count, the exit signal and the
   * plugin's last stderr lines. Call after `finish`.
   */
  exceeded(exit: { code: number | null; signal: string | null }, stderrTail: readonly string[]): string | undefined {
    const { memoryMiB, openFiles, cpuSeconds } = this.limits;
    const stderr = stderrTail.join("\n");
    if (memoryMiB !== undefined) {
      if (this.memoryInCgroup && (this.finalReport?.oomKills ?? 0) > 0) return `exceeded its memory limit (memoryMiB: ${memoryMiB})`;
      if (!this.memoryInCgroup && (this.saidOutOfMemory || OUT_OF_MEMORY.test(stderr))) {
        return `exceeded its memory limit (memoryMiB: ${memoryMiB}, enforced as RLIMIT_DATA: no cgroup was available)`;
      }
    }
    if (cpuSeconds !== undefined && exit.signal === "SIGXCPU") return `exceeded its CPU-time limit (cpuSeconds: ${cpuSeconds})`;
    if (openFiles !== undefined && (this.saidTooManyFiles || TOO_MANY_FILES.test(stderr))) return `exceeded its open-files limit (openFiles: ${openFiles})`;
    return undefined;
  }
}
