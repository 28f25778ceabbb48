/**
 * Spawns a plugin in its own process group with an allowlisted environment,
 * scans its stdout for the handshake line, and then turns stdout and stderr
 * into log streams.
 */
import { execa } from "execa";
import { ENV, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, PlugwireError } from "@plugwire/proto";
import { isHandshakeLine, parseHandshake, type Handshake } from "../handshake/parse.js";
import { pluginEnv, tokenEnv, tokenLine, tokenViaHint, type TokenVia } from "./env.js";
import { readLines } from "./lines.js";
import { LogForwarder } from "./logs.js";
import { join } from "node:path";
import { checkSocketPath, socketFileName } from "./rundir.js";
import type { Logger } from "pino";

export interface LaunchSpec {
  name: string;
  command: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

export interface LaunchOptions {
  runDir: string;
  hostAddress: string;
  token: string;
  /** How the plugin gets `token`: a line on its stdin (default), or the legacy, weaker PLUGWIRE_AUTH_TOKEN variable. */
  tokenVia?: TokenVia;
  instanceId: string;
  handshakeTimeoutMs: number;
  maxLogLineBytes: number;
  maxLogLinesPerSecond: number;
  stderrTailLines: number;
  logger: Logger;
  onLog?: LogForwarder["options"]["onLine"];
  /** Called for each line the rate limit drops. */
  onLogDropped?: () => void;
  /** Aborts the launch (a stop was requested): the group is killed and the launch fails at once. */
  signal?: AbortSignal;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export function describeExit(exit: ExitInfo): string {
  if (exit.signal) return `was killed by ${exit.signal}`;
  return `exited with code ${exit.code ?? "unknown"}`;
}

/** A running plugin process that completed its handshake. */
export interface PluginProcess {
  readonly pid: number;
  readonly handshake: Handshake;
  /** Resolves when the process has exited and its output is drained. */
  readonly exited: Promise<ExitInfo>;
  /** The last lines the plugin wrote to stderr. */
  stderrTail(): string[];
  /**
   * Sends a signal to the plugin's whole process group. After the leader has
   * exited only `afterExit` sends it, to reach children left behind.
   */
  signalGroup(signal: NodeJS.Signals, afterExit?: boolean): void;
  /** Whether the process has exited. */
  readonly hasExited: boolean;
  readonly logs: LogForwarder;
}

function commandLine(spec: LaunchSpec): string {
  return [spec.command, ...spec.args].join(" ");
}

/**
 * How long a plugin's output may keep arriving after it exits before its
 * handshake; children it left behind can hold stdout and stderr open forever.
 */
const EXIT_OUTPUT_GRACE_MS = 250;

function tailText(lines: string[]): string {
  return lines.length === 0 ? " It wrote nothing to stderr." : `\nLast stderr lines:\n  ${lines.join("\n  ")}`;
}

/** Launches a plugin and waits for its handshake line. */
export async function launchPlugin(spec: LaunchSpec, options: LaunchOptions): Promise<PluginProcess> {
  const who = `plugin '${spec.name}' (command: ${commandLine(spec)})`;
  const stoppedError = (): PlugwireError =>
    new PlugwireError("plugin_unavailable", `${who} was stopped while starting, before its handshake`, { plugin: spec.name });
  if (options.signal?.aborted) throw stoppedError();
  checkSocketPath(join(options.runDir, socketFileName(options.instanceId)), who, spec.name);
  const env = pluginEnv(
    {
      [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
      [ENV.protocolVersions]: String(PROTOCOL_VERSION),
      [ENV.socketDir]: options.runDir,
      [ENV.hostAddress]: options.hostAddress,
      ...tokenEnv(options.token, options.tokenVia ?? "stdin"),
      [ENV.instanceId]: options.instanceId,
      [ENV.pluginName]: spec.name,
    },
    spec.env,
  );
  const child = execa(spec.command, [...spec.args], {
    env,
    extendEnv: false,
    cwd: spec.cwd,
    detached: true,
    cleanup: false,
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
    buffer: false,
    reject: false,
  });

  const tail: string[] = [];
  const logs = new LogForwarder({
    logger: options.logger,
    maxLinesPerSecond: options.maxLogLinesPerSecond,
    onLine: options.onLog,
    onDropped: options.onLogDropped,
  });
  let handshake: Handshake | undefined;
  let settle: { resolve: (h: Handshake) => void; reject: (e: PlugwireError) => void } | undefined;
  const handshakePromise = new Promise<Handshake>((resolve, reject) => {
    settle = { resolve, reject };
  });
  let handshakeError: PlugwireError | undefined;

  // The host keeps stdin open, and writes on it only the token line, once,
  // right away (docs/protocol.md §6): stdin is a socketpair that no other
  // process can open through /proc, unlike the environment. A broken pipe
  // just means the plugin is gone, which the exit handling reports.
  child.stdin?.on("error", (e: Error) => options.logger.debug({ err: e.message }, "plugin stdin closed"));
  if ((options.tokenVia ?? "stdin") === "stdin") child.stdin?.write(tokenLine(options.token));

  const stdoutDone = readLines(child.stdout!, {
    maxLineBytes: options.maxLogLineBytes,
    onLine: (line, truncated) => {
      if (handshake || handshakeError) {
        logs.forward(line, "stdout", truncated);
        return;
      }
      if (!isHandshakeLine(line)) {
        options.logger.warn({ stream: "stdout", line }, "plugin printed before its handshake line (ignored)");
        return;
      }
      const parsed = parseHandshake(line, [PROTOCOL_VERSION]);
      if (parsed.ok) {
        handshake = parsed.handshake;
        settle?.resolve(parsed.handshake);
      } else {
        handshakeError = new PlugwireError(
          parsed.versionMismatch ? "protocol_mismatch" : "handshake_failed",
          `${who} printed a bad handshake line: ${parsed.reason}. Line: ${JSON.stringify(line)}. ` +
            `Plugins must print 'PLUGWIRE_HANDSHAKE protocol=${PROTOCOL_VERSION} network=unix address=<socket> transport=grpc' (see docs/protocol.md).`,
          { plugin: spec.name },
        );
        settle?.reject(handshakeError);
      }
    },
  });
  const stderrDone = readLines(child.stderr!, {
    maxLineBytes: options.maxLogLineBytes,
    onLine: (line, truncated) => {
      tail.push(line);
      if (tail.length > options.stderrTailLines) tail.shift();
      logs.forward(line, "stderr", truncated);
    },
  });

  let hasExited = false;
  let spawnFailure: PlugwireError | undefined;
  const exited: Promise<ExitInfo> = child.then(async (result) => {
    hasExited = true;
    await Promise.all([stdoutDone, stderrDone]);
    const spawnError = result.failed && result.exitCode === undefined && !result.signal ? result : undefined;
    if (spawnError && !handshake) {
      spawnFailure = new PlugwireError(
        "plugin_exited",
        `${who} could not be started: ${spawnError.originalMessage ?? spawnError.shortMessage}. Check the command and its path in the plugin config.`,
        { plugin: spec.name, cause: spawnError },
      );
      settle?.reject(spawnFailure);
    }
    return { code: result.exitCode ?? null, signal: result.signal ?? null };
  });
  // The leader's own exit: `exited` also waits for stdout and stderr to end,
  // which children the plugin left behind can put off forever.
  const leaderExited = new Promise<ExitInfo>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });

  const signalGroup = (signal: NodeJS.Signals, afterExit = false): void => {
    if ((hasExited && !afterExit) || child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
    }
  };

  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new PlugwireError(
            "handshake_timeout",
            `${who} did not print its handshake line within ${options.handshakeTimeoutMs} ms. ` +
              `A plugin must call serve() (or print the PLUGWIRE_HANDSHAKE line) soon after it starts; raise handshakeTimeoutMs if it is just slow.`,
            { plugin: spec.name },
          ),
        ),
      options.handshakeTimeoutMs,
    );
  });
  const exitedEarly = Promise.race([leaderExited, exited]).then(async (exit): Promise<never> => {
    // Let the output written before the exit arrive: a handshake line still wins.
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, EXIT_OUTPUT_GRACE_MS).unref())]);
    throw new PlugwireError(
      "plugin_exited",
      `${who} ${describeExit(exit)} before its handshake. Its stderr should say why; ` +
        `also check the command, args and env in the plugin config.`,
      { plugin: spec.name },
    );
  });

  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(stoppedError());
    options.signal?.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const result = await Promise.race([handshakePromise, timeout, exitedEarly, aborted]);
    // A running plugin counts as exited when its leader exits (plus a short
    // grace for its last output), even if children it left behind still hold
    // its stdout or stderr open; the runner then kills the whole group.
    const leaderGone = leaderExited.then(async (exit) => {
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, EXIT_OUTPUT_GRACE_MS).unref())]);
      hasExited = true;
      return exit;
    });
    return {
      pid: child.pid!,
      handshake: result,
      exited: leaderGone,
      stderrTail: () => [...tail],
      signalGroup,
      get hasExited() {
        return hasExited;
      },
      logs,
    };
  } catch (e) {
    // The whole group, even when the leader has already exited: a plugin that
    // exits before its handshake may leave children behind.
    signalGroup("SIGKILL", true);
    await exited;
    const error = e as PlugwireError;
    if (error === spawnFailure || options.signal?.aborted) throw error;
    // Add the plugin's last stderr lines, now that all of them have arrived.
    throw new PlugwireError(error.code, `${error.message}${tokenViaHint(options.tokenVia ?? "stdin", tail)}${tailText(tail)}`, { plugin: spec.name });
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener("abort", onAbort);
    exitedEarly.catch(() => undefined);
    aborted.catch(() => undefined);
  }
}
