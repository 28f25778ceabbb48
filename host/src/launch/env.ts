/** The allowlisted environment a plugin is started with. */
import { ENV, TOKEN_LINE_PREFIX } from "@plugwire/proto";

/** Host variables passed through to every plugin when set. */
export const ENV_ALLOWLIST = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] as const;

export function pluginEnv(
  plugwire: Record<string, string>,
  configured: Readonly<Record<string, string>> = {},
  source: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ENV_ALLOWLIST) {
    const value = source[key];
    if (value !== undefined) env[key] = value;
  }
  return { ...env, ...configured, ...plugwire };
}

/** How a launch gets its auth token: the first line on stdin (default), or the legacy PLUGWIRE_AUTH_TOKEN variable. */
export type TokenVia = "stdin" | "env";

/**
 * The environment variables that tell a plugin where its token is. With
 * `stdin` the token itself is not in the environment (which any process of
 * the same user can read in /proc/<pid>/environ): the host writes
 * `PLUGWIRE_TOKEN <token>` on the plugin's stdin instead (tokenLine).
 */
export function tokenEnv(token: string, via: TokenVia): Record<string, string> {
  return via === "env" ? { [ENV.authTokenSource]: "env", [ENV.authToken]: token } : { [ENV.authTokenSource]: "stdin" };
}

/** The line the host writes on a plugin's stdin right after spawn (tokenVia: stdin). */
export function tokenLine(token: string): string {
  return `${TOKEN_LINE_PREFIX} ${token}\n`;
}

/**
 * A hint for a launch that failed while the token went on stdin, when the
 * plugin's stderr asked for PLUGWIRE_AUTH_TOKEN: it was probably built before
 * the token moved to stdin. "" otherwise.
 */
export function tokenViaHint(via: TokenVia, stderrTail: readonly string[]): string {
  if (via !== "stdin" || !stderrTail.some((line) => line.includes(ENV.authToken) && !line.includes(ENV.authTokenSource))) return "";
  return (
    ` It asked for ${ENV.authToken}, which this host does not set: it passes the token on stdin (tokenVia: stdin). ` +
    `Update the plugin's SDK, or give it 'tokenVia: env' in its config (weaker: any process of the same user can read the variable).`
  );
}
