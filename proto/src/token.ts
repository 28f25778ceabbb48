/**
 * The plugin side of how a launch gets its auth token (docs/protocol.md §6):
 * by default the first line on stdin, `PLUGWIRE_TOKEN <token>`, which no
 * other process can read; in the legacy `tokenVia: env` mode the
 * PLUGWIRE_AUTH_TOKEN variable, which any process of the same user can read
 * in /proc/<pid>/environ.
 */
import { ENV, MAX_TOKEN_LINE_BYTES, TOKEN_LINE_PREFIX, TOKEN_LINE_TIMEOUT_MS } from "./wire.js";

/** Whether `value` is a well-formed token: 1 or more printable ASCII bytes, no space (0x21-0x7E). */
export function isTokenValue(value: string): boolean {
  return /^[\x21-\x7e]+$/.test(value);
}

/**
 * Parses the token line (without its LF). Returns the token, or a reason why
 * the line is not one. The reason never quotes the line, which may hold a
 * secret.
 */
export function parseTokenLine(line: string): { token: string } | { problem: string } {
  const prefix = `${TOKEN_LINE_PREFIX} `;
  if (!line.startsWith(prefix)) {
    return { problem: `the first line on stdin (${Buffer.byteLength(line)} bytes) does not start with '${prefix}'` };
  }
  const token = line.slice(prefix.length);
  if (!isTokenValue(token)) {
    return { problem: `the token on the first line of stdin is empty or holds a space or a control character` };
  }
  return { token };
}

/** Where the host said the token is; `undefined` for a value that is neither. */
export function tokenSource(env: NodeJS.ProcessEnv): "stdin" | "env" | undefined {
  const source = env[ENV.authTokenSource];
  if (source === undefined || source === "" || source === "env") return "env";
  if (source === "stdin") return "stdin";
  return undefined;
}

/**
 * Reads this launch's auth token where PLUGWIRE_AUTH_TOKEN_SOURCE says:
 * `stdin` reads the first line of `stdin` (at most MAX_TOKEN_LINE_BYTES,
 * within `timeoutMs`); `env` or unset reads PLUGWIRE_AUTH_TOKEN. Rejects with
 * an Error whose message says what is wrong and names the variable or the
 * line; it never contains the token. The stream is left flowing, with no
 * listener of this function on it, so the caller can go on watching for EOF.
 */
export function readLaunchToken(
  env: NodeJS.ProcessEnv,
  stdin: NodeJS.ReadableStream,
  timeoutMs: number = TOKEN_LINE_TIMEOUT_MS,
): Promise<string> {
  const source = tokenSource(env);
  if (source === undefined) {
    return Promise.reject(
      new Error(
        `${ENV.authTokenSource}=${JSON.stringify(env[ENV.authTokenSource])} is neither 'stdin' nor 'env'; the host that started this plugin is broken or newer than this plugin`,
      ),
    );
  }
  if (source === "env") {
    const token = env[ENV.authToken];
    if (!token) {
      return Promise.reject(
        new Error(`the host did not set ${ENV.authToken} (and ${ENV.authTokenSource} is not 'stdin'); this plugin must be started by a plugwire host`),
      );
    }
    return Promise.resolve(token);
  }
  return new Promise<string>((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const finish = (error: Error | undefined, token?: string): void => {
      clearTimeout(timer);
      stdin.removeListener("data", onData);
      stdin.removeListener("end", onEnd);
      stdin.removeListener("error", onError);
      if (error) reject(error);
      else resolve(token!);
    };
    const onData = (chunk: Buffer | string): void => {
      buffered = Buffer.concat([buffered, typeof chunk === "string" ? Buffer.from(chunk) : chunk]);
      const newline = buffered.indexOf(0x0a);
      if (newline < 0 || newline >= MAX_TOKEN_LINE_BYTES) {
        if (newline >= 0 || buffered.length >= MAX_TOKEN_LINE_BYTES) {
          finish(new Error(`the first line on stdin is over ${MAX_TOKEN_LINE_BYTES} bytes; the host writes '${TOKEN_LINE_PREFIX} <token>' there (${ENV.authTokenSource}=stdin)`));
        }
        return;
      }
      const parsed = parseTokenLine(buffered.subarray(0, newline).toString("latin1"));
      buffered = Buffer.alloc(0);
      if ("problem" in parsed) finish(new Error(`${parsed.problem}; the host writes '${TOKEN_LINE_PREFIX} <token>' there (${ENV.authTokenSource}=stdin)`));
      else finish(undefined, parsed.token);
    };
    const onEnd = (): void =>
      finish(new Error(`stdin closed before the host wrote the '${TOKEN_LINE_PREFIX} <token>' line (${ENV.authTokenSource}=stdin); this plugin must be started by a plugwire host`));
    const onError = (e: Error): void => finish(new Error(`reading the token line on stdin failed: ${e.message}`));
    const timer = setTimeout(
      () =>
        finish(
          new Error(
            `no '${TOKEN_LINE_PREFIX} <token>' line arrived on stdin within ${timeoutMs} ms (${ENV.authTokenSource}=stdin); ` +
              `the host writes it right after it starts the plugin, so whatever started this one is not a plugwire host (or is broken)`,
          ),
        ),
      timeoutMs,
    );
    stdin.on("data", onData);
    stdin.once("end", onEnd);
    stdin.once("error", onError);
    stdin.resume();
  });
}
