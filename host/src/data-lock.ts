/**
 * One host per data dir. Two hosts on one data dir would restore the same
 * snapshots, run two sets of plugins and overwrite each other's snapshot
 * generations: payloads acked by one host would be missing from what the
 * next host restores. `host.start()` therefore takes `<dataDir>/host.lock`
 * and `stop()` gives it back (docs/supervision.md, "One host per data dir").
 *
 * The lock file says who holds it: pid, the process's start time, the boot
 * and pid namespace it runs in, and the host name. A host that finds the
 * lock of a process that is gone (SIGKILL, a crash) takes it over at once,
 * when it can tell: same boot and pid namespace, and that pid no longer runs
 * the process that took the lock (its start time differs, so a reused pid is
 * not mistaken for the holder). When it cannot tell (another machine or
 * container sharing the volume), the holder refreshes the file's mtime every
 * LOCK_REFRESH_MS, and a lock not refreshed for LOCK_STALE_MS is taken over.
 */
import { closeSync, openSync, readFileSync, readlinkSync, statSync, unlinkSync, utimesSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { PlugwireError } from "@plugwire/proto";
import type { Logger } from "pino";

export const LOCK_FILE = "host.lock";
/** How often the holder refreshes the lock's mtime. */
export const LOCK_REFRESH_MS = 2_000;
/** A lock whose holder cannot be checked is taken over after this long without a refresh. */
export const LOCK_STALE_MS = 15_000;

interface Holder {
  pid: number;
  /** Start time of the process, in clock ticks since boot (/proc/PID/stat field 22); "" where unknown. */
  startTime: string;
  bootId: string;
  pidNamespace: string;
  hostname: string;
  /** ISO time the lock was taken. */
  since: string;
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return fallback;
  }
}

function processStartTime(pid: number | "self"): string {
  const stat = readOr(`/proc/${pid}/stat`, "");
  // The command name may hold spaces and parentheses: fields start after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return rest[19] ?? "";
}

function pidNamespace(): string {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return "";
  }
}

function me(): Holder {
  return {
    pid: process.pid,
    startTime: processStartTime("self"),
    bootId: readOr("/proc/sys/kernel/random/boot_id", ""),
    pidNamespace: pidNamespace(),
    hostname: hostname(),
    since: new Date().toISOString(),
  };
}

function parseHolder(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Partial<Holder>;
    if (typeof h.pid !== "number" || typeof h.startTime !== "string" || typeof h.bootId !== "string" || typeof h.pidNamespace !== "string") return undefined;
    return { pid: h.pid, startTime: h.startTime, bootId: h.bootId, pidNamespace: h.pidNamespace, hostname: String(h.hostname ?? "?"), since: String(h.since ?? "?") };
  } catch {
    return undefined;
  }
}

/**
 * Whether the holder still runs: "alive", "gone", or "unknown" when this
 * process cannot see it (another machine, container or pid namespace).
 */
function holderState(h: Holder, self: Holder): "alive" | "gone" | "unknown" {
  if (h.bootId === "" || h.bootId !== self.bootId || h.pidNamespace !== self.pidNamespace) return "unknown";
  const now = processStartTime(h.pid);
  if (now === "") return "gone";
  return h.startTime === "" || now === h.startTime ? "alive" : "gone";
}

export interface DataDirLock {
  /** Gives the lock back (removes the file if it is still this holder's). Idempotent. */
  release(): void;
}

/** Takes `<dataDir>/host.lock` for this host, or throws a PlugwireError that names the holder. */
export function lockDataDir(dataDir: string, logger: Logger): DataDirLock {
  const path = join(dataDir, LOCK_FILE);
  const self = me();
  const text = `${JSON.stringify(self)}\n`;
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
      return hold(path, text, logger);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") {
        throw new PlugwireError("invalid_config", `the host cannot lock its dataDir ${dataDir}: ${(e as Error).message}; the data dir must be writable by the host`, { cause: e });
      }
    }
    const existing = readOr(path, "");
    const holder = parseHolder(existing);
    let ageMs = Infinity;
    try {
      ageMs = Date.now() - statSync(path).mtimeMs;
    } catch {
      continue; // removed meanwhile: try again
    }
    const state = holder ? holderState(holder, self) : "unknown";
    const takeOver = state === "gone" || (state === "unknown" && ageMs > LOCK_STALE_MS);
    if (!takeOver) {
      const who = holder
        ? `${holder.pid === process.pid && holder.startTime === self.startTime ? "another host in this same process" : `pid ${holder.pid}`} on ${holder.hostname}, since ${holder.since}`
        : "a process that wrote an unreadable lock file";
      const unknown =
        state === "unknown"
          ? ` It cannot be checked from here (another machine or container); its lock was refreshed ${Math.round(ageMs / 1000)} s ago, and is taken over once it is ${LOCK_STALE_MS / 1000} s old.`
          : "";
      throw new PlugwireError(
        "invalid_config",
        `the dataDir ${dataDir} is in use by another plugwire host (${who}).${unknown} ` +
          `Two hosts on one data dir would overwrite each other's snapshots and lose acked payloads. ` +
          `Stop that host first, or give this one a dataDir of its own.`,
      );
    }
    logger.warn(
      { lock: path, holder, ageMs: Number.isFinite(ageMs) ? Math.round(ageMs) : undefined },
      state === "gone"
        ? `taking over the data dir lock of a host that is gone (pid ${holder?.pid}); it did not stop cleanly`
        : `taking over a data dir lock not refreshed for ${Math.round(ageMs / 1000)} s; its host is presumed gone`,
    );
    try {
      // Only the file just judged: another host may have taken it over meanwhile.
      if (readOr(path, "") === existing) unlinkSync(path);
    } catch {
      // someone else removed it: try again
    }
  }
  throw new PlugwireError("invalid_config", `the host could not lock its dataDir ${dataDir}: other hosts kept taking the lock; run one host per data dir`);
}

function hold(path: string, text: string, logger: Logger): DataDirLock {
  let released = false;
  let warned = false;
  const refresh = setInterval(() => {
    try {
      const t = new Date();
      utimesSync(path, t, t);
    } catch (e) {
      if (!warned) {
        warned = true;
        logger.error({ lock: path, err: String(e) }, "could not refresh the data dir lock; another host could take the data dir over. Check that the data dir still exists and is writable");
      }
    }
  }, LOCK_REFRESH_MS);
  refresh.unref();
  return {
    release() {
      if (released) return;
      released = true;
      clearInterval(refresh);
      try {
        if (readOr(path, "") === text.trim()) unlinkSync(path);
      } catch {
        // gone already
      }
    },
  };
}
