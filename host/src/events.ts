/** Typed events a host emits. */
import type { PluginLogLevel } from "./launch/logs.js";
import type { DeadLetter } from "./delivery/channel.js";

export type PluginState = "starting" | "ready" | "restarting" | "failed" | "stopped";

export interface HostEvents {
  "plugin:state": [{ plugin: string; state: PluginState; previous: PluginState; reason?: string }];
  "plugin:exit": [{ plugin: string; pid: number; code: number | null; signal: string | null; reason: string; stderrTail: string[] }];
  "plugin:restart": [{ plugin: string; attempt: number; delayMs: number; restarts: number }];
  "plugin:log": [{ plugin: string; level: PluginLogLevel; msg: string; stream: "stdout" | "stderr" }];
  "plugin:dead-letter": [{ plugin: string; letter: DeadLetter }];
  "snapshot:taken": [{ plugin: string; id: string; version: number; appliedSeq: number; sizeBytes: number }];
  "snapshot:restored": [{ plugin: string; id: string; version: number; appliedSeq: number; sizeBytes: number; replayed: number }];
  "snapshot:reset": [{ plugin: string; id: string; reason: string }];
}
