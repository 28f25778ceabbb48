/**
 * Plugin-side logging: one JSON object per line on stderr, which the host
 * parses and forwards to its own logger with the level kept.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A logger writing JSON lines. `level`, `time` and `msg` are the line's own
 * keys (docs/protocol.md §5): fields of those names are left out rather than
 * let them replace the line's.
 */
export function createLogger(write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const emit = (level: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    const { level: _level, time: _time, msg: _msg, ...own } = fields ?? {};
    write(`${JSON.stringify({ level, time: Date.now(), msg, ...own })}\n`);
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}
