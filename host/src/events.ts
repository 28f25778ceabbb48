/** Typed events a host emits. */
import type { PluginLogLevel } from "./launch/logs.js";
import type { DeadLetter } from "./delivery/channel.js";

export type PluginState = "starting" | "ready" | "restarting" | "failed" | "stopped";

export interface HostEvents {
  "plugin:state": [{ plugin: string; state: PluginState; previous: PluginState; reason?: string }];
  "plugin:exit": [{ plugin: string; pid: number; code: number | null; signal: string | null; reason: string; stderrTail: string[] }];
  "plugin:restart": [{ plugin: string; attempt: number; delayMs: number; restarts: number }];
  /**
   * One forwarded line of a plugin's output. `fields` are the plugin's own
   * fields under their own names (every key of a JSON line but level and
   * msg); `truncated` when the line was cut at maxLogLineBytes.
   */
  "plugin:log": [
    { plugin: string; level: PluginLogLevel; msg: string; stream: "stdout" | "stderr"; fields: Record<string, unknown>; truncated: boolean },
  ];
  "plugin:dead-letter": [{ plugin: string; letter: DeadLetter }];
  /**
   * The warm standby spare of a plugin: `ready` (spawned, handshaken,
   * described, waiting), `failed` (it could not be made ready, or exited
   * while waiting; `error` says why; the serving launch is not affected),
   * `promoted` (it took over after the serving launch ended).
   */
  "plugin:standby": [{ plugin: string; event: "ready" | "failed" | "promoted"; pid?: number; error?: string }];
  /** A hot upgrade (`host.upgrade`) replaced the plugin's build; `pauseMs`: how long delivery was held. */
  "plugin:upgraded": [{ plugin: string; fromPid: number; toPid: number; pauseMs: number; appliedSeq: number; command: string; args: readonly string[] }];
  "snapshot:taken": [{ plugin: string; id: string; version: number; appliedSeq: number; sizeBytes: number }];
  "snapshot:restored": [{ plugin: string; id: string; version: number; appliedSeq: number; sizeBytes: number; replayed: number }];
  "snapshot:reset": [{ plugin: string; id: string; reason: string }];
  /**
   * `plugin` claims payload kind `kind`, but `owner`, listed before it,
   * claims it too and gets its payloads (first claim wins). Emitted when the
   * host builds its routes at start, once per shadowed kind.
   */
  "kind:shadowed": [{ kind: string; plugin: string; owner: string }];
}
