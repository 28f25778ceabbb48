/**
 * The state one `plugwire check` run shares between its checks: the private
 * run dir, the kit's HostService, every plugin process launched, and what
 * the main launch has shown so far.
 */
import { randomBytes } from "node:crypto";
import { lstatSync, mkdtempSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { Capability, PROTOCOL_VERSION, type DescribeResponse, type SnapshotHeader } from "@plugwire/proto";
import type { AckLog } from "./acks.js";
import { dialPlugin, type DialedPlugin } from "./dial.js";
import { HOST_SOCKET_NAME, HostStub } from "./host-stub.js";
import { HandshakeProblem, PluginProcess, type HandshakeSeen, type LaunchRequest } from "./process.js";
import { createRunDir, removeRunDir } from "./rundir.js";
import { CheckFailure, type Timings } from "./types.js";
import { messageOf, withTimeout } from "./util.js";

export interface SessionOptions {
  command: string;
  args: readonly string[];
  /** Handshake timeout, RPC deadline and ack wait, in ms. */
  timeoutMs: number;
  /** Slack on top of the exit limits (1 s after stdin EOF or SIGTERM), for loaded machines, in ms. */
  exitMarginMs: number;
}

/** The first launch: the one most checks talk to. */
export interface MainLaunch {
  proc: PluginProcess;
  seen?: HandshakeSeen;
  conn?: DialedPlugin;
  description?: DescribeResponse;
}

/** A snapshot the kit read, and what it held. */
export interface SnapshotSeen {
  header: SnapshotHeader;
  bytes: Buffer;
}

/** What a fresh launch answered after its Shutdown reply, for 'health-after-shutdown'. */
export interface AfterShutdown {
  /** Health.Check answers to calls sent after the Shutdown reply arrived, in order. */
  statuses: string[];
  /** How the first Check that got no answer ended, if one did. */
  ended?: string;
}

/** The longest plugin name the kit derives from a command. */
const MAX_NAME = 24;
/** Room for launch numbers and the random suffix in instance ids. */
const INSTANCE_SUFFIX = "-999ffff";

/** A launch brought up to ready: handshake, Describe and Start done. */
export interface ReadyLaunch {
  proc: PluginProcess;
  conn: DialedPlugin;
  description: DescribeResponse;
}

/**
 * A plugin name for PLUGWIRE_PLUGIN_NAME and instance ids, from the command
 * line: the last path among the command and its args (the script, for
 * `python my_plugin.py`), else the command.
 */
function nameOf(command: string, args: readonly string[]): string {
  const path = [command, ...args].reverse().find((a) => !a.startsWith("-") && /[./]/.test(a)) ?? command;
  const name = basename(path, extname(path)).replace(/[^A-Za-z0-9._-]/g, "").slice(0, MAX_NAME);
  return name || "plugin";
}

/** Removes `path` if it is a unix socket (one a probe launch made); anything else is left alone. */
function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw e;
  }
}

export class Session {
  readonly name: string;
  readonly runDir: string;
  readonly host: HostStub;
  readonly launches: PluginProcess[] = [];
  main: MainLaunch | undefined;
  /** The Deliver stream of the main launch in use: the first one, then the one 'reconnect' opens. */
  delivery: AckLog | undefined;
  /** The snapshot 'snapshot' took, once the delivery phase was over. */
  snapshot: SnapshotSeen | undefined;
  /** A snapshot taken in the middle of the delivery phase, of other state than `snapshot`. */
  earlierSnapshot: SnapshotSeen | undefined;
  /** The items 'reconnect' sent again on the second stream, for 'redelivery'. */
  redelivered: { seqs: bigint[]; log: AckLog } | undefined;
  /** Set by 'shutdown'. */
  afterShutdown: AfterShutdown | undefined;
  private readonly dataDirs: string[] = [];
  private readonly conns: DialedPlugin[] = [];
  private launchCount = 0;
  private mainRetired = false;

  private constructor(readonly options: SessionOptions) {
    this.name = nameOf(options.command, options.args);
    // A private (0700) dir whose socket paths all fit in sun_path.
    const longest = Math.max(HOST_SOCKET_NAME.length, `${"x".repeat(MAX_NAME)}${INSTANCE_SUFFIX}.sock`.length);
    this.runDir = createRunDir("x".repeat(longest));
    this.host = new HostStub(this.runDir);
  }

  static async open(options: SessionOptions): Promise<Session> {
    const session = new Session(options);
    try {
      await session.host.listen();
    } catch (e) {
      await session.close();
      throw e;
    }
    return session;
  }

  get timeoutMs(): number {
    return this.options.timeoutMs;
  }

  /** A fresh instance id: the plugin's name, the launch number and a random suffix. */
  nextInstanceId(): string {
    return `${this.name}-${++this.launchCount}${randomBytes(2).toString("hex")}`;
  }

  /** Spawns the plugin once, with a fresh instance id and token; `changes` alter what a host would pass. */
  launch(
    purpose: LaunchRequest["purpose"],
    changes: Pick<LaunchRequest, "protocolVersions" | "acceptVersions" | "unset" | "override" | "tokenVia" | "stdinLine" | "closeStdinAtOnce"> & {
      socketDir?: string;
      instanceId?: string;
    } = {},
  ): PluginProcess {
    const token = randomBytes(24).toString("base64url");
    const instanceId = changes.instanceId ?? this.nextInstanceId();
    this.host.register(token);
    const proc = new PluginProcess({
      command: this.options.command,
      args: this.options.args,
      name: this.name,
      instanceId,
      token,
      hostAddress: this.host.address,
      purpose,
      ...changes,
      socketDir: changes.socketDir ?? this.runDir,
    });
    this.launches.push(proc);
    return proc;
  }

  /** Waits for a launch's handshake, within the timeout. */
  async handshakeOf(proc: PluginProcess): Promise<HandshakeSeen> {
    return withTimeout(proc.handshake, this.timeoutMs, "the handshake line");
  }

  dial(proc: PluginProcess, seen: HandshakeSeen): DialedPlugin {
    const conn = dialPlugin(seen.handshake, proc.request.token, this.name);
    this.conns.push(conn);
    return conn;
  }

  /** A private data dir for Start. */
  dataDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "pwc-data-"));
    this.dataDirs.push(dir);
    return dir;
  }

  /** Start with a temp data dir, "{}" config and every capability. */
  async start(proc: PluginProcess, conn: DialedPlugin): Promise<void> {
    await conn.plugin.start(
      {
        dataDir: this.dataDir(),
        instanceId: proc.request.instanceId,
        configJson: "{}",
        capabilities: [Capability.PEERS, Capability.CONTROL, Capability.IDENTITY],
      },
      { deadlineMs: this.timeoutMs },
    );
    proc.readyAfterMs = performance.now() - proc.spawnedAt;
  }

  /** A fresh launch brought up as a host would: handshake, Describe, Start. */
  async freshLaunch(): Promise<ReadyLaunch> {
    const proc = this.launch("fresh");
    const step = async <T>(what: string, p: Promise<T>): Promise<T> => {
      try {
        return await p;
      } catch (e) {
        const why = e instanceof HandshakeProblem || e instanceof CheckFailure ? e.message : messageOf(e);
        throw new CheckFailure(`a fresh launch failed at ${what}: ${why}`);
      }
    };
    const seen = await step("its handshake", this.handshakeOf(proc));
    const conn = this.dial(proc, seen);
    const description = await step("Describe", conn.plugin.describe({ protocolVersion: PROTOCOL_VERSION }, { deadlineMs: this.timeoutMs }));
    await step("Start", this.start(proc, conn));
    return { proc, conn, description };
  }

  timings(): Timings {
    return {
      spawnToHandshakeMs: this.main?.proc.handshakeAfterMs,
      spawnToReadyMs: this.main?.proc.readyAfterMs,
      launches: this.launches
        .filter((p) => p.request.purpose !== "probe" && p.handshakeAfterMs !== undefined)
        .map((p) => ({ spawnToHandshakeMs: p.handshakeAfterMs!, spawnToReadyMs: p.readyAfterMs })),
    };
  }

  /**
   * Ends a probe launch (one given a broken environment) and removes a socket
   * it may have made where that environment led it: in the current
   * directory (an empty PLUGWIRE_SOCKET_DIR), at the root, or in the temp dir.
   */
  async endProbe(proc: PluginProcess): Promise<void> {
    await proc.kill();
    const name = `${proc.request.instanceId}.sock`;
    for (const path of [join(process.cwd(), name), join("/", name), join(tmpdir(), name), join(proc.request.socketDir, name)]) {
      removeSocket(path);
    }
  }

  /** Ends the main launch once its checks are done, so fresh launches run on a quiet machine. */
  async retireMain(): Promise<void> {
    if (!this.main || this.mainRetired) return;
    this.mainRetired = true;
    this.main.conn?.close();
    await this.main.proc.kill();
  }

  /** Kills every process group at once, without waiting: for a kit that is being interrupted. */
  killNow(): void {
    for (const proc of this.launches) proc.signalGroup("SIGKILL");
    removeRunDir(this.runDir);
    for (const dir of this.dataDirs) rmSync(dir, { recursive: true, force: true });
  }

  /** Kills every process group launched and removes every file made. */
  async close(): Promise<void> {
    for (const conn of this.conns) conn.close();
    await Promise.all(this.launches.map((p) => p.kill()));
    await this.host.close();
    removeRunDir(this.runDir);
    for (const dir of this.dataDirs) rmSync(dir, { recursive: true, force: true });
  }
}
