/**
 * Who stopped reading: a unary call left unanswered is judged from both ends
 * of its connection, read with `ss` (Recv-Q: bytes that arrived and wait
 * unread). Shared by the host-service and plugin-service targets.
 *
 * - The fuzzer's end holds bytes the server sent, the server's end holds
 *   none, and a second look a moment later shows the fuzzer's end still not
 *   drained: the fuzzer's own node:http2 client session stopped reading (a
 *   "client stall", fuzz/README.md). The server read everything and
 *   answered; the target drops that connection and dials again, as a host or
 *   a plugin does with a connection that stopped answering.
 * - Anything else (the server's end holds unread bytes, both ends are empty,
 *   or the ends cannot be found) is the server's failure: a hang.
 */
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { sleep } from "./util.mjs";

/** `ss -xn` rows split in columns: Netid State Recv-Q Send-Q Local-Address Local-Port Peer-Address Peer-Port. */
function unixRows(withProcesses = false) {
  return execFileSync("ss", withProcesses ? ["-xpn"] : ["-xn"], { encoding: "utf8", timeout: 5000 }).split("\n");
}

/**
 * The bytes waiting unread on both ends of one fuzzer connection (Recv-Q):
 * `fuzzer` (this process's end) and `server` (the other end). Undefined when
 * it cannot be told (the session has no socket any more, `ss` failed).
 */
export function connectionQueues(session) {
  try {
    const fd = session?.socket?._handle?.fd;
    if (typeof fd !== "number" || fd < 0) return undefined;
    const inode = /socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
    if (!inode) return undefined;
    const rows = unixRows()
      .map((l) => l.trim().split(/\s+/))
      .filter((c) => c.length >= 8);
    const ours = rows.find((c) => c[5] === inode);
    if (!ours) return undefined;
    const theirs = rows.find((c) => c[5] === ours[7]);
    if (!theirs) return undefined;
    return { fuzzer: Number(ours[2]), server: Number(theirs[2]) };
  } catch {
    return undefined;
  }
}

/** The unix sockets of these processes that have bytes queued (from `ss -xpn`), for a hang's report. */
export function socketQueues(processes) {
  try {
    const named = Object.entries(processes).filter(([, pid]) => pid !== undefined);
    const lines = unixRows(true).filter((l) => named.some(([, pid]) => l.includes(`pid=${pid},`)) && !/ESTAB\s+0\s+0\s/.test(l));
    return `sockets with bytes queued (${named.map(([name, pid]) => `${name} pid ${pid}`).join(", ")}): ${lines.map((l) => l.replace(/\s+/g, " ").trim()).join(" | ") || "none"}`;
  } catch (e) {
    return `ss failed: ${e.message}`;
  }
}

const queuesText = (q) => (q ? `${q.fuzzer} bytes unread on the fuzzer's end, ${q.server} on the server's` : "the connection's ends could not be read");

/**
 * Judges a unary call left unanswered on `session`. `server` names the other
 * end (for the text), `processes` ({name: pid}) whose queued sockets a hang's
 * report lists. Resolves with { stall: true, detail } for a client stall
 * (the fuzzer's end not drained over `confirmMs`, the server's end empty),
 * else { stall: false, detail }.
 */
export async function judgeUnanswered(session, { server, processes, confirmMs = 1000 }) {
  const first = connectionQueues(session);
  if (first && first.fuzzer > 0 && first.server === 0) {
    await sleep(confirmMs);
    const second = connectionQueues(session);
    if (second && second.fuzzer >= first.fuzzer && second.server === 0) {
      return { stall: true, detail: `${second.fuzzer} bytes unread by the fuzzer (${first.fuzzer} ${confirmMs} ms before), 0 by ${server}` };
    }
    return { stall: false, detail: `${queuesText(first)}, then ${confirmMs} ms later ${queuesText(second)}; ${socketQueues(processes)}` };
  }
  return { stall: false, detail: `${queuesText(first)}; ${socketQueues(processes)}` };
}
