import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_SOCKET_PATH_BYTES, PlugwireError } from "@plugwire/proto";

/** Creates the host's private run dir (0700) for sockets. */
export function createRunDir(parent: string = tmpdir()): string {
  const dir = mkdtempSync(join(parent, "pw-"));
  chmodSync(dir, 0o700);
  return dir;
}

export function removeRunDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Throws socket_path_too_long when `path` does not fit in sun_path. */
export function checkSocketPath(path: string, owner: string, plugin?: string): void {
  const length = Buffer.byteLength(path);
  if (length > MAX_SOCKET_PATH_BYTES) {
    throw new PlugwireError(
      "socket_path_too_long",
      `${owner}: socket path ${path} is ${length} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte unix socket limit. ` +
        `Set a shorter runDirParent (or TMPDIR) for the host, e.g. /tmp.`,
      { plugin },
    );
  }
}
