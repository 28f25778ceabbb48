/**
 * Forwards a plugin's stdout and stderr lines to the host logger
 * (docs/protocol.md §5): JSON object lines keep their level and their own
 * fields; other lines take the stream's level (info on stdout, error on
 * stderr). Lines are capped in length and floods are rate-limited.
 */
import type { Logger } from "pino";
import type { Line } from "./lines.js";

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
  /** Called with the number of lines the rate limit dropped, once per window that dropped any (not per line). */
  onDropped?: (count: number) => void;
}

/** The message of a line printed before the handshake; it is logged as a warning, under the same rate limit. */
export const BEFORE_HANDSHAKE_MSG = "plugin printed before its handshake line (ignored)";

/**
 * Rate-limited forwarding of plugin log lines, stdout and stderr, before and
 * after the handshake: a flood cannot stall the host. A dropped line is never
 * decoded; the drops of a window are logged once, as one line, when the
 * window ends.
 */
export class LogForwarder {
  private windowStart = Date.now();
  private inWindow = 0;
  private dropped = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  /** Lines dropped by the rate limit since the forwarder was made. */
  droppedTotal = 0;

  constructor(private readonly options: LogForwarderOptions) {}

  /**
   * True while the rate limit is used up: every line now would be dropped.
   * The clock is read only once the window's budget is spent (reading it per
   * line costs more than the rest of a dropped line).
   */
  saturated(): boolean {
    if (this.inWindow < this.options.maxLinesPerSecond) return false;
    const now = Date.now();
    if (now - this.windowStart < 1000) return true;
    // A new window (windows are at least 1 s apart; each forwards at most maxLinesPerSecond).
    this.flush();
    this.windowStart = now;
    this.inWindow = 0;
    return this.options.maxLinesPerSecond === 0;
  }

  /** Counts a line against the rate limit: true if it may be logged, false if it is dropped (and counted). */
  admit(): boolean {
    if (this.saturated()) {
      this.drop(1);
      return false;
    }
    this.inWindow++;
    return true;
  }

  /** Counts `count` lines dropped by the rate limit; reported when the window ends, even if no further line comes. */
  drop(count: number): void {
    this.dropped += count;
    this.droppedTotal += count;
    this.flushTimer ??= setTimeout(() => this.flush(), Math.max(1, this.windowStart + 1000 - Date.now())).unref();
  }

  /** Logs (once) how many lines were dropped since the last report, and counts them. */
  flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const dropped = this.dropped;
    if (dropped === 0) return;
    this.dropped = 0;
    this.options.logger.warn(
      { dropped, droppedTotal: this.droppedTotal, maxLogLinesPerSecond: this.options.maxLinesPerSecond },
      `plugin log flood: dropped ${dropped} lines in the last second (over maxLogLinesPerSecond ${this.options.maxLinesPerSecond})`,
    );
    this.options.onDropped?.(dropped);
  }

  forward(line: Line | string, stream: "stdout" | "stderr", truncated?: boolean): void {
    if (!this.admit()) return;
    const text = typeof line === "string" ? line : line.text;
    const cut = typeof line === "string" ? (truncated ?? false) : line.truncated;
    const parsed = parseLogLine(text, stream, cut);
    const record: Record<string, unknown> = { ...hostLogFields(parsed.fields), stream };
    if (cut) record.truncated = true;
    this.options.logger[parsed.level](record, parsed.msg);
    this.options.onLine?.({ ...parsed, stream, truncated: cut });
  }

  /** A stdout line printed before the handshake line: a warning, under the same rate limit. */
  forwardBeforeHandshake(line: Line): void {
    if (!this.admit()) return;
    const record: Record<string, unknown> = { stream: "stdout", line: line.text };
    if (line.truncated) record.truncated = true;
    this.options.logger.warn(record, BEFORE_HANDSHAKE_MSG);
  }
}
