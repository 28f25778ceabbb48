/** Forwards a plugin's stdout and stderr lines to the host logger. */
import type { Logger } from "pino";

export type PluginLogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

const PINO_LEVELS: Record<number, PluginLogLevel> = { 10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal" };
const NAMED_LEVELS = new Set<string>(["trace", "debug", "info", "warn", "error", "fatal"]);

export interface ParsedLine {
  level: PluginLogLevel;
  msg: string;
  fields: Record<string, unknown>;
}

/** Reads a plugin log line: JSON lines keep their level; other lines take the stream's. */
export function parseLogLine(line: string, stream: "stdout" | "stderr"): ParsedLine {
  const fallback: ParsedLine = { level: stream === "stdout" ? "info" : "error", msg: line, fields: {} };
  if (!line.startsWith("{")) return fallback;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    if (e instanceof SyntaxError) return fallback;
    throw e;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return fallback;
  const { level, msg, message, time: _time, ...fields } = value as Record<string, unknown>;
  const named = typeof level === "number" ? PINO_LEVELS[level] : typeof level === "string" && NAMED_LEVELS.has(level) ? (level as PluginLogLevel) : undefined;
  return {
    level: named ?? fallback.level,
    msg: typeof msg === "string" ? msg : typeof message === "string" ? message : line,
    fields,
  };
}

export interface LogForwarderOptions {
  logger: Logger;
  /** Most lines forwarded per second; the rest are counted and dropped. */
  maxLinesPerSecond: number;
  /** Called for every forwarded line, e.g. to emit `plugin:log`. */
  onLine?: (line: ParsedLine & { stream: "stdout" | "stderr" }) => void;
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
    const parsed = parseLogLine(line, stream);
    const fields = truncated ? { ...parsed.fields, truncated: true } : parsed.fields;
    this.options.logger[parsed.level]({ ...fields, stream }, parsed.msg);
    this.options.onLine?.({ ...parsed, fields, stream });
  }
}
