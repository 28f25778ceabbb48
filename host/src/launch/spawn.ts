/**
 * Spawns a plugin in its own process group with an allowlisted environment,
 * scans its stdout for the handshake line, and then turns stdout and stderr
 * into log streams.
 */
import { execa } from "execa";
import { rmSync } from "node:fs";
import { ENV, HANDSHAKE_PREFIX, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, PlugwireError } from "@plugwire/proto";
import { addressProblem, socketFileProblem, socketMissing } from "../handshake/address.js";
import { isHandshakeLine, parseHandshake, type Handshake } from "../handshake/parse.js";
import { pluginEnv, tokenEnv, tokenLine, tokenViaHint, type TokenVia } from "./env.js";
import { LaunchSandbox, type PluginLimits, type SandboxReport } from "./limits.js";
import { readLines, type Line } from "./lines.js";
import { LogForwarder } from "./logs.js";
import { join } from "node:path";
import { checkPin, resolveExecutable } from "./pin.js";
import { checkSocketPath, socketFileName } from "./rundir.js";
import type { Logger } from "pino";

export interface LaunchSpec {
  name: string;
  command: string;
  args: readonly string[];
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  /** Resource limits of the launch (limits.ts). */
  limits?: PluginLimits;
  /** The pinned SHA-256 of the executable, or of `sha256File` when set (pin.ts). */
  sha256?: string;
  sha256File?: string;
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
  /** Called with the number of lines the rate limit dropped, once per window that dropped any. */
  onLogDropped?: (count: number) => void;
  /** Aborts the launch (a stop was requested): the group is killed and the launch fails at once. */
  signal?: AbortSignal;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** Attach mode (attach.ts): how the connection to a remote plugin ended, as a predicate ("lost its connection to ..."). */
  lost?: string;
}

export function describeExit(exit: ExitInfo): string {
  if (exit.lost) return exit.lost;
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
  /** How the launch is confined (cgroup or not). */
  readonly sandbox: LaunchSandbox;
  /**
   * The limit that ended the launch, as "exceeded its memory limit
   * (memoryMiB: 64)", or undefined; meaningful once `exited` resolved.
   */
  limitExceeded(exit: ExitInfo): string | undefined;
}

/** The handshake prefix as bytes: lines are matched against it before they are decoded. */
const HANDSHAKE_PREFIX_BYTES = Buffer.from(HANDSHAKE_PREFIX);

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
  const socketPath = join(options.runDir, socketFileName(options.instanceId));
  checkSocketPath(socketPath, who, spec.name);
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
  const cwd = spec.cwd ?? process.cwd();
  const executable = resolveExecutable(spec.command, cwd, env.PATH);
  if (spec.sha256 !== undefined) {
    await checkPin({ name: spec.name, executable, command: spec.command, cwd, sha256: spec.sha256, sha256File: spec.sha256File });
    if (options.signal?.aborted) throw stoppedError();
  }
  // Nothing may wait at the launch's socket path but what the plugin makes
  // (another launch could have put a symlink there).
  try {
    rmSync(socketPath, { force: true });
  } catch (e) {
    options.logger.warn({ path: socketPath, err: String(e) }, "could not clear the launch's socket path; the plugin may fail to listen");
  }
  const sandbox = new LaunchSandbox(spec.limits ?? {}, options.runDir, options.instanceId, options.logger);
  const wrapped = sandbox.wrap(executable ?? spec.command, spec.args);
  if (wrapped.wrapped && executable === undefined) {
    // The wrapper would only say "not found" from sh: say it as a failed spawn does.
    await sandbox.finish(undefined);
    throw new PlugwireError(
      "plugin_exited",
      `${who} could not be started: spawn ${spec.command} ENOENT (no executable file found${spec.command.includes("/") ? "" : " in PATH"}). ` +
        `Check the command and its path in the plugin config.`,
      { plugin: spec.name },
    );
  }
  const child = execa(wrapped.file, wrapped.args, {
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

  const tail: Line[] = [];
  const logs = new LogForwarder({
    logger: options.logger,
    maxLinesPerSecond: options.maxLogLinesPerSecond,
    onLine: options.onLog,
    onDropped: options.onLogDropped,
  });
  const refuse = (message: string): void => {
    handshakeError = new PlugwireError("handshake_failed", message, { plugin: spec.name });
    settle?.reject(handshakeError);
  };
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
    // A flood over the rate limit is counted in bulk; before the handshake, a
    // line that starts with its prefix is still read.
    skip: {
      active: () => logs.saturated(),
      keepPrefix: () => (handshake || handshakeError ? undefined : HANDSHAKE_PREFIX_BYTES),
      onSkipped: (count) => logs.drop(count),
    },
    onLine: (line: Line) => {
      if (handshake || handshakeError) {
        logs.forward(line, "stdout");
        return;
      }
      // Cheap for a flood: only a line that starts with the prefix is decoded
      // here; the others go through the log rate limit, decoded only if logged.
      if (!line.startsWith(HANDSHAKE_PREFIX_BYTES) || !isHandshakeLine(line.text)) {
        logs.forwardBeforeHandshake(line);
        return;
      }
      const parsed = parseHandshake(line.text, [PROTOCOL_VERSION]);
      if (parsed.ok) {
        const problem = addressProblem(parsed.handshake, options.runDir, socketPath) ?? socketFileProblem(socketPath);
        const refuseAddress = (): void =>
          refuse(
            `${who} announced an address the host will not dial: ${problem}. ` +
              `A plugin must listen on, and announce, exactly ${socketPath} (PLUGWIRE_SOCKET_DIR/PLUGWIRE_INSTANCE_ID.sock, docs/protocol.md §4), as the SDKs do; fix the plugin.`,
          );
        if (problem && !socketMissing(socketPath)) {
          refuseAddress();
          return;
        }
        if (problem) {
          // No socket: a plugin that exits right after its handshake removes
          // it on the way out; its exit is then the news, not the address.
          handshakeError = new PlugwireError("handshake_failed", problem, { plugin: spec.name }); // later lines are logs
          void Promise.race([leaderExited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), EXIT_OUTPUT_GRACE_MS).unref())]).then((exit) => {
            if (!exit) return refuseAddress();
            handshakeError = new PlugwireError(
              "plugin_exited",
              `${who} ${describeExit(exit)} right after its handshake, before the host could dial it (its socket ${socketPath} was already gone). Its stderr should say why.`,
              { plugin: spec.name },
            );
            settle?.reject(handshakeError);
          });
          return;
        }
        handshake = parsed.handshake;
        settle?.resolve(parsed.handshake);
      } else {
        handshakeError = new PlugwireError(
          parsed.versionMismatch ? "protocol_mismatch" : "handshake_failed",
          `${who} printed a bad handshake line: ${parsed.reason}. Line: ${JSON.stringify(line.text)}${line.truncated ? " (cut at maxLogLineBytes)" : ""}. ` +
            `Plugins must print 'PLUGWIRE_HANDSHAKE protocol=${PROTOCOL_VERSION} network=unix address=<socket> transport=grpc' (see docs/protocol.md).`,
          { plugin: spec.name },
        );
        settle?.reject(handshakeError);
      }
    },
  });
  const stderrDone = readLines(child.stderr!, {
    maxLineBytes: options.maxLogLineBytes,
    skip: {
      active: () => logs.saturated(),
      onSkipped: (count, last) => {
        logs.drop(count);
        tail.push(...last);
        if (tail.length > options.stderrTailLines) tail.splice(0, tail.length - options.stderrTailLines);
      },
      tailLines: options.stderrTailLines,
    },
    onLine: (line: Line) => {
      if (sandbox.watchesStderr) sandbox.noteStderr(line.text);
      tail.push(line);
      if (tail.length > options.stderrTailLines) tail.shift();
      logs.forward(line, "stderr");
    },
  });
  // The drops of the last window are reported once the output ends.
  void Promise.all([stdoutDone, stderrDone]).then(() => logs.flush());
  const tailLines = (): string[] => tail.map((line) => line.text);

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
    // Every process left in the launch's cgroup (or carrying its instance id)
    // is killed once the leader is gone, setsid'd ones included.
    const leaderGone = leaderExited.then(async (exit) => {
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, EXIT_OUTPUT_GRACE_MS).unref())]);
      await sandbox.finish(child.pid);
      hasExited = true;
      return exit;
    });
    return {
      pid: child.pid!,
      handshake: result,
      exited: leaderGone,
      stderrTail: tailLines,
      signalGroup,
      get hasExited() {
        return hasExited;
      },
      logs,
      sandbox,
      limitExceeded: (exit) => sandbox.exceeded(exit, tailLines()),
    };
  } catch (e) {
    // The whole group, even when the leader has already exited: a plugin that
    // exits before its handshake may leave children behind; and every process
    // of its cgroup, which a setsid'd child holding stdout open is in.
    signalGroup("SIGKILL", true);
    const report: SandboxReport = await sandbox.finish(child.pid);
    const exit = await exited;
    // What the failed launch left at its socket path (a symlink, a file) goes too.
    try {
      rmSync(socketPath, { force: true });
    } catch (err) {
      options.logger.warn({ path: socketPath, err: String(err) }, "could not remove the socket path of a failed launch");
    }
    const error = e as PlugwireError;
    if (error === spawnFailure || options.signal?.aborted) throw error;
    const limit = report && error.code === "plugin_exited" ? sandbox.exceeded(exit, tailLines()) : undefined;
    // Add the plugin's last stderr lines, now that all of them have arrived.
    throw new PlugwireError(error.code, `${limit ? `${error.message} It ${limit}.` : error.message}${tokenViaHint(options.tokenVia ?? "stdin", tailLines())}${tailText(tailLines())}`, { plugin: spec.name });
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener("abort", onAbort);
    exitedEarly.catch(() => undefined);
    aborted.catch(() => undefined);
  }
}
