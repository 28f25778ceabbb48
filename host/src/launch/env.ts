/** The allowlisted environment a plugin is started with. */

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
