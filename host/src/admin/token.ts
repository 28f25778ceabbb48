/**
 * The admin API's bearer token. `plugwire run` keeps it in `<dataDir>/admin.token`
 * (mode 0600, in the 0700 data dir): made from 32 random bytes on the first run,
 * read again on later runs, so the CLI (and the issue-15 dashboard) can find it
 * from the config's data dir. Every admin request carries it as
 * `authorization: Bearer <token>`; the server compares in constant time.
 */
import { randomBytes, createHash, timingSafeEqual } from "node:crypto";
import { closeSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { PlugwireError } from "@plugwire/proto";

/** File name of the token in the data dir. */
export const ADMIN_TOKEN_FILE = "admin.token";

/** Environment variable the CLI reads the token from, when set. */
export const ADMIN_TOKEN_ENV = "PLUGWIRE_ADMIN_TOKEN";

/** A token and, when it came from a file, where (named in Unauthenticated errors). */
export interface AdminToken {
  value: string;
  path?: string;
}

/** Tokens are base64url of 32 random bytes (43 characters); anything of 16-512 safe characters is accepted from a file. */
const TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]{16,512}$/;

export function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

/** A fresh random token. */
export function newAdminToken(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Reads a token file: a regular file (not a symlink), readable by its owner
 * only, holding one token. Throws `invalid_config` saying what to fix.
 */
export function readAdminTokenFile(path: string): AdminToken {
  let stat;
  try {
    stat = lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new PlugwireError("unauthenticated", `no admin token at ${path}; 'plugwire run' creates it on its first start (or pass --admin-token-file FILE / ${ADMIN_TOKEN_ENV})`, { cause: e });
    }
    throw new PlugwireError("invalid_config", `cannot read the admin token ${path}: ${(e as Error).message}`, { cause: e });
  }
  if (!stat.isFile()) throw new PlugwireError("invalid_config", `the admin token ${path} is not a regular file (a symlink or directory is refused); remove it and start 'plugwire run' again to make a new one`);
  if ((stat.mode & 0o077) !== 0) {
    throw new PlugwireError(
      "invalid_config",
      `the admin token ${path} is readable by other users (mode ${(stat.mode & 0o777).toString(8)}); run 'chmod 600 ${path}' (or remove it and start 'plugwire run' again to make a new token)`,
    );
  }
  const value = readFileSync(path, "utf8").trim();
  if (!TOKEN_PATTERN.test(value)) {
    throw new PlugwireError("invalid_config", `the admin token ${path} does not hold a token (16-512 characters of base64/base64url); remove it and start 'plugwire run' again to make a new one`);
  }
  return { value, path };
}

/**
 * The data dir's admin token: read when it exists, else created (0600, in a
 * 0700 data dir) atomically, so two hosts starting at once agree on one
 * token. For an embedding application (and the dashboard) as well as the CLI.
 */
export function loadOrCreateAdminToken(dataDir: string): AdminToken {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const path = adminTokenPath(dataDir);
  try {
    return readAdminTokenFile(path);
  } catch (e) {
    if (!(e instanceof PlugwireError) || e.code !== "unauthenticated") throw e;
  }
  // Write a temp file, then link it in place: link fails if another host won.
  const temp = `${path}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const fd = openSync(temp, "wx", 0o600);
  try {
    writeSync(fd, `${newAdminToken()}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temp, path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
  } finally {
    rmSync(temp, { force: true });
  }
  return readAdminTokenFile(path);
}

/** Constant-time check of an `authorization` header against the token (hashes first, so lengths do not leak). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (header === undefined) return false;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  const given = createHash("sha256").update(match ? match[1]! : "").digest();
  const want = createHash("sha256").update(token).digest();
  return timingSafeEqual(given, want) && match !== null;
}
