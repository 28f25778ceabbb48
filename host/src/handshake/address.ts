/**
 * Which handshake addresses the host dials: only the socket it assigned to
 * the launch, `PLUGWIRE_SOCKET_DIR/PLUGWIRE_INSTANCE_ID.sock`
 * (docs/protocol.md §4), and only when that path is a socket the host's user
 * owns, not a symlink. So a plugin cannot make the host dial another
 * plugin's socket, the host's own socket or anything outside its run dir.
 */
import { lstatSync, readlinkSync, type Stats } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { Handshake } from "./parse.js";

/** The host's own socket file name in the run dir. */
const HOST_SOCKET = "host.sock";

/** Why the announced address is not the expected socket path (pure), or undefined when it is. */
export function addressProblem(handshake: Handshake, runDir: string, expected: string): string | undefined {
  if (handshake.network !== "unix") {
    return `it announced network=${handshake.network} address=${handshake.address}, but the host dials only the unix socket it assigned to the launch`;
  }
  const address = handshake.address;
  if (address === expected) return undefined;
  const resolved = resolve(address);
  if (resolved === expected) return `it announced ${address}, which is its socket path written otherwise; announce the path exactly`;
  if (dirname(resolved) === resolve(runDir)) {
    const file = basename(resolved);
    if (file === HOST_SOCKET) return `it announced ${address}, the host's own socket (host.sock), as its address`;
    const other = /^(.+)-(\d+)\.sock$/.exec(file);
    if (other) return `it announced ${address}, the socket of plugin '${other[1]}' (launch ${other[1]}-${other[2]}), not its own`;
    return `it announced ${address}, a file in the host's socket dir that is not its socket`;
  }
  return `it announced ${address}, which is outside the host's socket dir ${runDir}`;
}

function kindOf(st: Stats): string {
  if (st.isFile()) return "regular file";
  if (st.isDirectory()) return "directory";
  if (st.isFIFO()) return "FIFO";
  if (st.isCharacterDevice()) return "character device";
  if (st.isBlockDevice()) return "block device";
  return "file that is not a socket";
}

/** Why the file at `path` is not a socket the host may dial (lstat: a symlink is refused), or undefined. */
export function socketFileProblem(path: string, uid: number | undefined = process.getuid?.()): string | undefined {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return `nothing exists at ${path}: a plugin must listen on its socket before it prints its handshake`;
    return `${path} cannot be checked (${code ?? String(e)})`;
  }
  if (st.isSymbolicLink()) {
    let target = "?";
    try {
      target = readlinkSync(path);
    } catch {
      // keep "?"
    }
    return `${path} is a symbolic link (to ${target}), not a socket; a plugin must listen on the path itself`;
  }
  if (!st.isSocket()) return `${path} is a ${kindOf(st)}, not a unix socket`;
  if (uid !== undefined && st.uid !== uid) return `${path} is owned by uid ${st.uid}, not by the host's user (uid ${uid})`;
  // A socket a plugin bound has one name; a hard link would make the host dial another listener.
  if (st.nlink !== 1) return `${path} has ${st.nlink} hard links: it is another socket linked in place, not one the plugin bound`;
  return undefined;
}

/** Whether nothing at all exists at `path` (lstat: ENOENT). */
export function socketMissing(path: string): boolean {
  try {
    lstatSync(path);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT";
  }
}
