/**
 * The kit's private run dir: PLUGWIRE_SOCKET_DIR of every launch, and home of
 * the kit's own HostService socket. It follows the host's rule
 * (docs/protocol.md §4): the OS temp dir when it is an absolute path without
 * whitespace and short enough for every socket path, otherwise /tmp.
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { MAX_SOCKET_PATH_BYTES, PlugwireError } from "@plugwire/proto";

const FALLBACK_PARENT = "/tmp";
/** mkdtemp's name for the run dir: "pw-" and six random characters. */
const RUN_DIR_NAME = "pw-XXXXXX";

function unsuitable(parent: string, longestSocketName: string): string | undefined {
  if (!isAbsolute(parent)) return "it is not an absolute path";
  if (/[\s\x00-\x1f\x7f]/u.test(parent)) return "it contains whitespace or a control character, which cannot go in the handshake line";
  const bytes = Buffer.byteLength(join(parent, RUN_DIR_NAME, longestSocketName));
  if (bytes > MAX_SOCKET_PATH_BYTES) return `socket paths under it would be ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES}-byte limit`;
  return undefined;
}

/** Creates the run dir (0700) for socket names up to `longestSocketName`. */
export function createRunDir(longestSocketName: string, osTmp: string = tmpdir()): string {
  let parent = osTmp;
  if (unsuitable(osTmp, longestSocketName) !== undefined) {
    parent = FALLBACK_PARENT;
    const why = unsuitable(parent, longestSocketName);
    if (why) throw new PlugwireError("invalid_argument", `the kit cannot make its socket dir under ${parent}: ${why}`);
  }
  const dir = mkdtempSync(join(parent, "pw-"));
  chmodSync(dir, 0o700);
  return dir;
}

export function removeRunDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
