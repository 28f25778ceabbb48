/**
 * Forwards a plugin's stdout and stderr lines to the host logger
 * (docs/protocol.md §5): JSON object lines keep their level and their own
 * fields; other lines take the stream's level (info on stdout, error on
 * stderr). Lines are capped in length and floods are rate-limited.
 */
import type { Logger } from "pino";

export type PluginLogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

const PINO_LEVELS: Record<number, PluginLogLevel> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const NAMED_LEVELS: Record<string, PluginLogLevel> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warn",
  warning: "warn",
  error: "error",
  fatal: "fatal",
};

/**
 * Keys of the host's log record that a plugin's own field cannot take: such
 * a field is logged as `plugin_<key>` instead (`time` becomes `plugin_time`).
 */
export const RESERVED_LOG_KEYS: readonly string[] = ["level", "time", "msg", "plugin", "stream", "truncated", "pid", "hostname", "name"];

export interface ParsedLine {
  level: PluginLogLevel;
  msg: string;
  /** The plugin's own fields, under their own names: every key of a JSON line but `level` and `msg`. */
  fields: Record<string, unknown>;
}

function levelOf(value: unknown): PluginLogLevel | undefined {
  if (typeof value === "number") return PINO_LEVELS[value];
  if (typeof value === "string") return NAMED_LEVELS[value.toLowerCase()];
  return undefined;
}

/**
 * Reads a plugin log line: a JSON object keeps its level, its `msg` (or
 * `message`) and its fields; another line is its own message, at the
 * stream's level. A line cut at the length cap (`truncated`) is no longer
 * JSON: it keeps the level its text names, if any.
 */
export function parseLogLine(line: string, stream: "stdout" | "stderr", truncated = false): ParsedLine {
  const fallback: ParsedLine = { level: stream === "stdout" ? "info" : "error", msg: line, fields: {} };
  if (!line.startsWith("{")) return fallback;
  if (truncated) {
    const named = /^\{.*?"level"\s*:\s*(?:"([A-Za-z]+)"|(\d+))/.exec(line);
    const level = named ? levelOf(named[1] ?? Number(named[2])) : undefined;
    return { ...fallback, level: level ?? fallback.level };
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    if (e instanceof SyntaxError) return fallback;
    throw e;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return fallback;
  const { level, msg, ...rest } = value as Record<string, unknown>;
  let text: string;
  if (typeof msg === "string") text = msg;
  else if (typeof rest.message === "string") {
    text = rest.message;
    delete rest.message;
  } else text = line;
  if (msg !== undefined && typeof msg !== "string") rest.msg = msg;
  return { level: levelOf(level) ?? fallback.level, msg: text, fields: rest };
}

/** The plugin's fields as the host logs them: a reserved key `k` becomes `plugin_k`. */
export function hostLogFields(fields: Record<string, unknown>): Record<string, unknown> {
  let renamed: Record<string, unknown> | undefined;
  for (const key of RESERVED_LOG_KEYS) {
    if (!(key in fields)) continue;
    renamed ??= { ...fields };
    renamed[`plugin_${key}`] = renamed[key];
    delete renamed[key];
  }
  return renamed ?? fields;
}

export interface LogForwarderOptions {
  logger: Logger;
  /** Most lines forwarded per second; the rest are counted and dropped. */
  maxLinesPerSecond: number;
  /** Called for every forwarded line, e.g. to emit `plugin:log`. */
  onLine?: (line: ParsedLine & { stream: "stdout" | "stderr"; truncated: boolean }) => void;
  /** Called for every line the rate limit drops, e.g. to count it. */
  onDropped?: () => void;
}

/** Rate-limited forwarding of plugin log lines; a flood cannot stall the host. */
export class LogForwarder {
  private windowStart = 0;
  private inWindow = 0;
  private dropped = 0;
  /** Lines dropped by the rate limit since the forwarder was made. */
  droppedTotal = 0;

  constructor(private readonly options: LogForwarderOptions) {}

  forward(line: string, stream: "stdout" | "stderr", truncated: boolean): void {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      if (this.dropped > 0) {
        this.options.logger.warn({ dropped: this.dropped }, `plugin log flood: dropped ${this.dropped} lines in the last second`);
      }
      this.windowStart = now;
      this.inWindow = 0;
      this.dropped = 0;
    }
    if (this.inWindow >= this.options.maxLinesPerSecond) {
      this.dropped++;
      this.droppedTotal++;
      this.options.onDropped?.();
      return;
    }
    this.inWindow++;
    const parsed = parseLogLine(line, stream, truncated);
    const record: Record<string, unknown> = { ...hostLogFields(parsed.fields), stream };
    if (truncated) record.truncated = true;
    this.options.logger[parsed.level](record, parsed.msg);
    this.options.onLine?.({ ...parsed, stream, truncated });
  }
}
