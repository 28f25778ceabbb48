/**
 * The host's private socket dir. Its path goes into PLUGWIRE_SOCKET_DIR and,
 * through the plugin's socket path, into the handshake line, so it must hold
 * no whitespace or control characters, and every socket path under it must
 * fit in sun_path (docs/protocol.md §4).
 */
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join } from "node:path";
import { MAX_SOCKET_PATH_BYTES, PlugwireError } from "@plugwire/proto";

/** Where the host falls back to when the OS temp dir does not suit. */
export const FALLBACK_RUN_DIR_PARENT = "/tmp";
/**
 * Launch numbers the default run dir leaves room for: instance ids are
 * `NAME-N`, and a plugin restarted this many times still fits.
 */
const LAUNCH_NUMBER_ROOM = "-999999";
/** The longest plugin name a config allows (config.ts). */
const MAX_PLUGIN_NAME = 64;

/** The socket file name of a plugin's launch, in its run dir. */
export function socketFileName(instanceId: string): string {
  return `${instanceId}.sock`;
}

/** The longest socket file name `names` can need, for choosing a run dir; any plugin name if none given. */
export function longestSocketFileName(names: readonly string[] = []): string {
  const longest = names.length === 0 ? MAX_PLUGIN_NAME : Math.max(...names.map((n) => Buffer.byteLength(n)));
  return socketFileName(`${"x".repeat(longest)}${LAUNCH_NUMBER_ROOM}`);
}

/**
 * Why `path` cannot hold the host's socket dir, or undefined if it can: a
 * handshake value may not contain whitespace or control characters.
 */
export function unusableRunDirPath(path: string): string | undefined {
  if (!isAbsolute(path)) return "it is not an absolute path";
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/u.test(path)) return "it contains whitespace or a control character, which cannot go in the handshake line";
  return undefined;
}

function socketPathBytes(parent: string, socketName: string): number {
  return Buffer.byteLength(join(parent, "pw-XXXXXX", socketName));
}

export interface RunDirChoice {
  parent: string;
  /** Why the OS temp dir was passed over, when it was. */
  note?: string;
}

/**
 * Chooses the parent of the run dir. An explicit `runDirParent` is used as
 * given, or refused with `invalid_config` when it holds whitespace or leaves
 * no room for `longestSocketName`. Otherwise the OS temp dir is used when it
 * suits, and /tmp when it does not (a space in TMPDIR, or a TMPDIR so long
 * that socket paths would not fit).
 */
export function chooseRunDirParent(explicit: string | undefined, longestSocketName: string, osTmp: string = tmpdir()): RunDirChoice {
  if (explicit !== undefined) {
    const why = unusableRunDirPath(explicit);
    if (why) {
      throw new PlugwireError(
        "invalid_config",
        `runDirParent ${JSON.stringify(explicit)} cannot hold the host's socket dir: ${why}. ` +
          `Set runDirParent to a short absolute path without spaces, such as /tmp (docs/protocol.md §4).`,
      );
    }
    return { parent: explicit };
  }
  const why =
    unusableRunDirPath(osTmp) ??
    (socketPathBytes(osTmp, longestSocketName) > MAX_SOCKET_PATH_BYTES
      ? `it is too long: socket paths under it would be over the ${MAX_SOCKET_PATH_BYTES}-byte unix socket limit`
      : undefined);
  if (why === undefined) return { parent: osTmp };
  return {
    parent: FALLBACK_RUN_DIR_PARENT,
    note: `the OS temp dir ${JSON.stringify(osTmp)} (TMPDIR) does not suit the host's sockets (${why}); using ${FALLBACK_RUN_DIR_PARENT}. Set runDirParent to choose another directory.`,
  };
}

/**
 * Creates the host's private run dir (0700) for sockets, under the parent
 * chooseRunDirParent picks. `longestSocketName` is the longest socket file
 * name the dir must hold (see longestSocketFileName).
 */
export function createRunDir(parent?: string, longestSocketName: string = longestSocketFileName()): string {
  return createRunDirIn(chooseRunDirParent(parent, longestSocketName).parent);
}

/** Creates the run dir (0700) under `parent`, as chosen by chooseRunDirParent. */
export function createRunDirIn(parent: string): string {
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
        `Set a shorter runDirParent (or TMPDIR) for the host, e.g. /tmp (docs/protocol.md §4).`,
      { plugin },
    );
  }
}
