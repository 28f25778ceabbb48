/**
 * Binary pinning, like go-plugin's SecureConfig: a plugin's config may pin
 * the SHA-256 of the file it runs, and the host checks it before every
 * launch.
 *
 * The rule: `sha256` is the hash of `sha256File` when that is set (resolved
 * against the plugin's cwd), else of the executable `command` resolves to (a
 * bare name through PATH, a path with a `/` against cwd). For a script run by
 * an interpreter (node, python3, ...), set `sha256File` to the script: the
 * interpreter itself is then not pinned.
 */
import { constants, accessSync, createReadStream, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { delimiter, isAbsolute, join, resolve } from "node:path";
import { PlugwireError } from "@plugwire/proto";

/** A pinned file whose hash is not the configured one: the plugin is not launched, and not retried. */
export class PinMismatchError extends PlugwireError {
  constructor(
    message: string,
    plugin: string,
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super("permission_denied", message, { plugin });
  }
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The file `command` runs, as execvp finds it: a command with a `/` is
 * resolved against `cwd`; a bare name is looked up in `path` (the plugin's
 * PATH). Undefined when there is no such executable file.
 */
export function resolveExecutable(command: string, cwd: string, path: string | undefined): string | undefined {
  if (command.includes("/")) {
    const file = resolve(cwd, command);
    return isExecutableFile(file) ? file : undefined;
  }
  for (const dir of (path ?? "").split(delimiter)) {
    const file = join(dir === "" ? "." : dir, command);
    const absolute = isAbsolute(file) ? file : resolve(cwd, file);
    if (isExecutableFile(absolute)) return absolute;
  }
  return undefined;
}

/** The SHA-256 of a file, as lower-case hex; streamed, so a large binary does not block the host. */
export function sha256OfFile(file: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash("sha256");
    createReadStream(file)
      .on("error", reject)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolvePromise(hash.digest("hex")));
  });
}

export interface PinSpec {
  name: string;
  /** The executable the launch runs (already resolved), or undefined when it was not found. */
  executable: string | undefined;
  command: string;
  cwd: string;
  sha256: string;
  sha256File?: string;
}

/** Checks a plugin's pinned file; throws PinMismatchError (or invalid_config when it cannot be read). */
export async function checkPin(spec: PinSpec): Promise<void> {
  const expected = spec.sha256.toLowerCase();
  const what = spec.sha256File !== undefined ? "sha256File" : "command";
  const file = spec.sha256File !== undefined ? resolve(spec.cwd, spec.sha256File) : spec.executable;
  if (file === undefined) {
    throw new PlugwireError(
      "invalid_config",
      `plugin '${spec.name}': its command '${spec.command}' was not found (or is not executable), so its pinned sha256 cannot be checked; the plugin was not launched. Check the command and PATH in its config.`,
      { plugin: spec.name },
    );
  }
  let actual: string;
  try {
    actual = await sha256OfFile(file);
  } catch (e) {
    throw new PlugwireError(
      "invalid_config",
      `plugin '${spec.name}': could not read ${file} (its ${what}) to check its pinned sha256: ${(e as Error).message}. The plugin was not launched.`,
      { plugin: spec.name, cause: e },
    );
  }
  if (actual === expected) return;
  throw new PinMismatchError(
    `plugin '${spec.name}' was not launched: the SHA-256 of ${file} (its ${what}) is ${actual}, but its config pins sha256 ${expected}. ` +
      `The file changed since it was pinned. If the change is intended, set sha256 to ${actual} in the plugin's config; otherwise find out who replaced the file. ` +
      `The plugin stays failed (it is not retried) until it is restarted.`,
    spec.name,
    file,
    expected,
    actual,
  );
}
