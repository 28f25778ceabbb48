// Small helpers shared by the chaos runner and its scenarios: a seeded PRNG,
// bounded waits, descriptor counts, and finding plugin processes by the
// marker variable every chaos plugin is started with.
import { readFileSync, readdirSync } from "node:fs";

/** mulberry32: a small seeded PRNG returning floats in [0, 1). */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with a message naming `what` when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Open descriptors of this process. */
export const fdCount = () => readdirSync("/proc/self/fd").length;

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code !== "ESRCH";
  }
}

/** Reads a /proc file of another process; undefined when it is gone or not ours to read. */
function readProc(pid, file) {
  try {
    return readFileSync(`/proc/${pid}/${file}`, "latin1");
  } catch (e) {
    if (e.code === "ENOENT" || e.code === "ESRCH" || e.code === "EACCES" || e.code === "EPERM") return undefined;
    throw e;
  }
}

/**
 * Live (non-zombie) processes whose environment holds `CHAOS_RUN=<run>`, the
 * marker every plugin of a chaos scenario is configured with. Each comes with
 * the other CHAOS_* variables of its environment (CHAOS_PLUGIN, CHAOS_HOST).
 */
export function markedProcesses(run) {
  const marker = `CHAOS_RUN=${run}`;
  const found = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const environ = readProc(pid, "environ");
    if (environ === undefined) continue;
    const vars = environ.split("\0");
    if (!vars.includes(marker)) continue;
    // A zombie has an empty environ, so it never gets here; check anyway.
    const stat = readProc(pid, "stat");
    if (stat === undefined || / Z /.test(stat.slice(stat.lastIndexOf(")")))) continue;
    const tags = {};
    for (const v of vars) {
      if (v.startsWith("CHAOS_")) {
        const eq = v.indexOf("=");
        tags[v.slice(0, eq)] = v.slice(eq + 1);
      }
    }
    found.push({ pid, plugin: tags.CHAOS_PLUGIN, host: tags.CHAOS_HOST });
  }
  return found;
}

/** SIGKILLs a pid; false when it was already gone. */
export function sigkill(pid) {
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch (e) {
    if (e.code === "ESRCH") return false;
    throw e;
  }
}

export const node = (id) => new Uint8Array(32).fill(id);
