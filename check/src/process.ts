/**
 * Launches the plugin under test the way the host does (its own process
 * group, the allowlisted environment plus the PLUGWIRE_* variables, stdin a
 * pipe held open that carries the token line first), and exposes what the host's launcher keeps to itself:
 * stdin, the raw handshake line, and exact spawn and exit times.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { ENV, MAGIC_COOKIE_VALUE, PROTOCOL_VERSION, TOKEN_LINE_PREFIX } from "@plugwire/proto";
import { isHandshakeLine, parseHandshakeLine, type Handshake } from "./handshake-line.js";
import { readLines } from "./lines.js";

const STDERR_TAIL_LINES = 40;
const STDERR_HINT_SCAN_LINES = 15;
const STDERR_HINT_LINES = 2;
/** Stderr lines that probably say what went wrong. */
const ERRORISH = /error|exception|traceback|panic|fatal|cannot|failed|refused|denied|not found/i;
const MAX_LINE_BYTES = 16 * 1024;
/** How long after an exit the kit waits for the rest of stderr (a child may hold it open), in ms. */
const STDERR_DRAIN_MS = 500;
/** Handshake-like stdout lines kept per launch; one is all a plugin may print. */
const MAX_HANDSHAKE_LINES = 8;

/** Host variables passed on to the plugin when set, as a host does (docs/protocol.md §1). */
export const ENV_ALLOWLIST = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"] as const;

/** Why the kit launches the plugin: a full launch counts towards the timings, a probe does not. */
export type LaunchPurpose = "main" | "fresh" | "probe";

export interface LaunchRequest {
  command: string;
  args: readonly string[];
  name: string;
  instanceId: string;
  token: string;
  socketDir: string;
  hostAddress: string;
  purpose: LaunchPurpose;
  /** PLUGWIRE_PROTOCOL_VERSIONS; default the kit's own version. */
  protocolVersions?: string;
  /** Protocol versions a handshake line may name; default the kit's own. */
  acceptVersions?: readonly number[];
  /** PLUGWIRE_* variables to leave out, as a broken host or a user by hand would. */
  unset?: readonly string[];
  /** Variables to set to other values than a host would. */
  override?: Readonly<Record<string, string>>;
  /** How the token is passed: the token line on stdin (the default, as a host does), or the legacy PLUGWIRE_AUTH_TOKEN. */
  tokenVia?: "stdin" | "env";
  /** What to write on stdin instead of the token line (tokenVia stdin): another line, or null for nothing at all. */
  stdinLine?: string | null;
  /** Close stdin right after the token line (or instead of it), as a host that dies at once would. */
  closeStdinAtOnce?: boolean;
}

/** The environment of a launch: the allowlist, then the PLUGWIRE_* variables, then the request's changes. */
function launchEnv(request: LaunchRequest): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of ENV_ALLOWLIST) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  Object.assign(env, {
    [ENV.magicCookie]: MAGIC_COOKIE_VALUE,
    [ENV.protocolVersions]: request.protocolVersions ?? String(PROTOCOL_VERSION),
    [ENV.socketDir]: request.socketDir,
    [ENV.hostAddress]: request.hostAddress,
    ...(request.tokenVia === "env"
      ? { [ENV.authTokenSource]: "env", [ENV.authToken]: request.token }
      : { [ENV.authTokenSource]: "stdin" }),
    [ENV.instanceId]: request.instanceId,
    [ENV.pluginName]: request.name,
  });
  for (const key of request.unset ?? []) delete env[key];
  return { ...env, ...request.override };
}

export interface HandshakeSeen {
  line: string;
  handshake: Handshake;
  /** Spawn → handshake line, in ms. */
  afterMs: number;
  /** Lines the plugin printed on stdout before its handshake (ignored, as a host does). */
  linesBefore: number;
}

export interface ExitSeen {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the process exited. */
  at: number;
  /** Set when the command could not be started at all. */
  spawnError?: string;
}

/** Why the handshake did not arrive; the message is written for the plugin's author. */
export class HandshakeProblem extends Error {
  override name = "HandshakeProblem";
  constructor(
    message: string,
    /** A bad line, or a process that ended before printing one. */
    readonly kind: "malformed" | "exited",
  ) {
    super(message);
  }
}

export function describeExit(exit: ExitSeen): string {
  if (exit.spawnError) return `could not be started (${exit.spawnError})`;
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

export class PluginProcess {
  readonly spawnedAt = performance.now();
  readonly socketPath: string;
  /** Resolves on the first handshake line; rejects with a HandshakeProblem on a bad one or an early exit. */
  readonly handshake: Promise<HandshakeSeen>;
  /** Resolves when the leader process has exited. */
  readonly exited: Promise<ExitSeen>;
  /** Spawn → handshake line, once it has arrived. */
  handshakeAfterMs: number | undefined;
  /** Spawn → Start answered, once a check has brought the launch up. */
  readyAfterMs: number | undefined;
  /** Every stdout line that starts like a handshake, raw (a CR before the LF kept), the first one first. */
  readonly handshakeLines: string[] = [];
  /** Resolves once stderr has ended: every line the plugin wrote there has been read. */
  readonly stderrEnded: Promise<void>;
  private exit: ExitSeen | undefined;
  private readonly tail: string[] = [];
  private readonly child: ReturnType<typeof spawn>;

  constructor(readonly request: LaunchRequest) {
    this.socketPath = join(request.socketDir, `${request.instanceId}.sock`);
    this.child = spawn(request.command, [...request.args], { env: launchEnv(request), detached: true, stdio: ["pipe", "pipe", "pipe"] });
    // The kit writes only the token line on stdin, at once (docs/protocol.md §6); a broken pipe only means the plugin is gone.
    this.child.stdin!.on("error", () => undefined);
    const line = request.stdinLine !== undefined ? request.stdinLine : request.tokenVia === "env" ? null : `${TOKEN_LINE_PREFIX} ${request.token}\n`;
    if (line !== null) this.child.stdin!.write(line);
    if (request.closeStdinAtOnce) this.child.stdin!.end();

    this.exited = new Promise<ExitSeen>((resolve) => {
      this.child.once("exit", (code, signal) => resolve((this.exit = { code, signal, at: performance.now() })));
      this.child.on("error", (e) => {
        if (this.child.pid === undefined) resolve((this.exit = { code: null, signal: null, at: performance.now(), spawnError: e.message }));
      });
    });
    this.stderrEnded = readLines(this.child.stderr!, {
      maxLineBytes: MAX_LINE_BYTES,
      onLine: (line) => {
        this.tail.push(line.replace(/\r$/, ""));
        if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();
      },
    });
    this.handshake = this.watchHandshake();
    this.handshake.catch(() => undefined); // awaited by the checks that need it
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get hasExited(): boolean {
    return this.exit !== undefined;
  }

  /** How the process exited, once it has. */
  get exitInfo(): ExitSeen | undefined {
    return this.exit;
  }

  /** The exit, if the process exits within `ms` (or already has); otherwise undefined. */
  async exitedWithin(ms: number): Promise<ExitSeen | undefined> {
    if (this.exit) return this.exit;
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.exited,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
    ]);
    clearTimeout(timer);
    return result;
  }

  /** The last lines the plugin wrote to stderr. */
  stderrTail(lines = 8): string[] {
    return this.tail.slice(-lines);
  }

  /**
   * The telling part of the stderr tail as one line for a detail, or "" when
   * there is none: the last lines that look like an error, else the last lines.
   */
  stderrHint(): string {
    const tail = this.stderrTail(STDERR_HINT_SCAN_LINES)
      .map((l) => l.replace(/[^\x20-\x7e\u00a0-\ufffc]/gu, "?").trim())
      .filter((l) => l !== "");
    const telling = tail.filter((l) => ERRORISH.test(l));
    const shown = (telling.length > 0 ? telling : tail).slice(-STDERR_HINT_LINES).map((l) => (l.length > 200 ? `${l.slice(0, 199)}…` : l));
    if (shown.length === 0) return "";
    const said = shown.join(" | ");
    return ` Its stderr says: ${said}${/[.!?]$/.test(said) ? "" : "."}`;
  }

  /** Closes the plugin's stdin, as a dying host does. */
  closeStdin(): void {
    this.child.stdin!.end();
  }

  /** Signals the plugin's whole process group; after the leader exited, to reach children it left. */
  signalGroup(signal: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") throw e;
    }
  }

  /** SIGKILLs the whole group and waits for the leader to be gone. */
  async kill(): Promise<void> {
    this.signalGroup("SIGKILL");
    this.child.stdin!.destroy();
    await this.exited;
  }

  private watchHandshake(): Promise<HandshakeSeen> {
    return new Promise<HandshakeSeen>((resolve, reject) => {
      let linesBefore = 0;
      let settled = false;
      readLines(this.child.stdout!, {
        maxLineBytes: MAX_LINE_BYTES,
        onLine: (raw) => {
          const line = raw.replace(/\r$/, "");
          if (isHandshakeLine(line) && this.handshakeLines.length < MAX_HANDSHAKE_LINES) this.handshakeLines.push(raw);
          if (settled) return;
          if (!isHandshakeLine(line)) {
            linesBefore++;
            return;
          }
          settled = true;
          const parsed = parseHandshakeLine(line, this.request.acceptVersions ?? [PROTOCOL_VERSION]);
          if (parsed.ok) {
            this.handshakeAfterMs = performance.now() - this.spawnedAt;
            resolve({ line, handshake: parsed.handshake, afterMs: this.handshakeAfterMs, linesBefore });
          } else {
            reject(new HandshakeProblem(`its handshake line is malformed: ${parsed.reason}. Line: ${JSON.stringify(line)}`, "malformed"));
          }
        },
      }).then(() => {
        // stdout ended (the plugin exited or closed it) before any handshake line.
        if (settled) return;
        settled = true;
        void this.exited.then((exit) =>
          reject(new HandshakeProblem(`it ${describeExit(exit)} before printing its handshake line.${this.stderrHint()}`, "exited")),
        );
      });
    });
  }
}

/** How a launch that should refuse to run ended up, within the time it had. */
export type RefusalSeen =
  | { kind: "exited"; exit: ExitSeen }
  | { kind: "handshake"; line: string }
  | { kind: "running" };

/**
 * Waits up to `waitMs` for a launch that should refuse to run: it exits, or
 * prints a handshake line (well-formed or not), or is still running.
 */
export async function awaitRefusal(proc: PluginProcess, waitMs: number): Promise<RefusalSeen> {
  let timer: NodeJS.Timeout | undefined;
  const seen = await Promise.race<RefusalSeen>([
    // Its last words on stderr may still be on their way when the exit is seen.
    proc.exited.then(async (exit) => {
      await Promise.race([proc.stderrEnded, new Promise((resolve) => setTimeout(resolve, STDERR_DRAIN_MS).unref())]);
      return { kind: "exited", exit };
    }),
    proc.handshake.then(
      (h) => ({ kind: "handshake", line: h.line }),
      (e: unknown) =>
        e instanceof HandshakeProblem && e.kind === "malformed"
          ? { kind: "handshake", line: proc.handshakeLines[0] ?? "" }
          : new Promise<never>(() => undefined), // it exited: the exit decides
    ),
    new Promise<RefusalSeen>((resolve) => {
      timer = setTimeout(() => resolve({ kind: "running" }), waitMs);
    }),
  ]);
  clearTimeout(timer);
  return seen;
}
