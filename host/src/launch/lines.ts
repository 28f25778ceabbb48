/**
 * Splits a byte stream into lines, capping each line's length. A line is
 * handed over undecoded: a consumer that drops it (a flood over the rate
 * limit) never pays for decoding it, so 2 MiB of newlines cost little more
 * than a scan for the newline bytes.
 */
import type { Readable } from "node:stream";

/** One line of a stream, without its newline (and without a trailing \r). */
export interface Line {
  /** The line was longer than maxLineBytes; the rest of it was dropped. */
  readonly truncated: boolean;
  /** Bytes kept (at most maxLineBytes). */
  readonly bytes: number;
  /** The kept bytes as UTF-8 text, decoded on first use. */
  readonly text: string;
  /** Whether the kept bytes start with `prefix`, without decoding them. */
  startsWith(prefix: Buffer): boolean;
}

class BufferLine implements Line {
  private decoded: string | undefined;
  readonly bytes: number;

  constructor(
    private readonly buffer: Buffer,
    private readonly start: number,
    private readonly end: number,
    readonly truncated: boolean,
  ) {
    if (this.end > this.start && this.buffer[this.end - 1] === 13) this.end--; // \r\n
    this.bytes = this.end - this.start;
  }

  get text(): string {
    this.decoded ??= this.buffer.toString("utf8", this.start, this.end);
    return this.decoded;
  }

  startsWith(prefix: Buffer): boolean {
    if (this.bytes < prefix.length) return false;
    for (let i = 0; i < prefix.length; i++) if (this.buffer[this.start + i] !== prefix[i]) return false;
    return true;
  }
}

/** A line made from a string; for tests and for callers that already have text. */
export function lineOf(text: string, truncated = false): Line {
  const buffer = Buffer.from(text);
  return new BufferLine(buffer, 0, buffer.length, truncated);
}

/**
 * Bulk skipping, for floods: while `active()` holds, the whole lines of a
 * chunk are counted, not handed over one by one (a line that starts with
 * `keepPrefix()` is still handed over, as are lines split across chunks).
 */
export interface SkipOptions {
  /** True while every line would be dropped anyway (a log rate limit that is used up). Asked once per run of lines. */
  active: () => boolean;
  /** Lines starting with these bytes are never skipped (the handshake line); none when it returns undefined. */
  keepPrefix?: () => Buffer | undefined;
  /** Called with the number of lines skipped, and up to `tailLines` of the last of them. */
  onSkipped: (count: number, last: Line[]) => void;
  tailLines?: number;
}

export interface LineOptions {
  /** Longest line kept, in bytes; the rest of a longer line is dropped. */
  maxLineBytes: number;
  onLine: (line: Line) => void;
  skip?: SkipOptions;
}

/** The first position at or after `from` where `prefix` starts a line (`from` counts as a line start), or -1. */
function prefixAtLineStart(data: Buffer, from: number, prefix: Buffer): number {
  for (let p = data.indexOf(prefix, from); p !== -1; p = data.indexOf(prefix, p + 1)) {
    if (p === from || data[p - 1] === 10) return p;
  }
  return -1;
}

function countNewlines(data: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) if (data[i] === 10) n++;
  return n;
}

/** Up to `n` of the last whole lines in data[from, lastNl], where data[lastNl] is a newline. */
function lastLines(data: Buffer, from: number, lastNl: number, n: number, max: number): Line[] {
  const lines: Line[] = [];
  let end = lastNl;
  while (lines.length < n && end >= from) {
    const prev = end > from ? data.lastIndexOf(10, end - 1) : -1;
    const start = prev >= from ? prev + 1 : from;
    const cut = end - start > max;
    lines.unshift(new BufferLine(data, start, cut ? start + max : end, cut));
    if (start === from) break;
    end = start - 1;
  }
  return lines;
}

/** Feeds `onLine` with each line of `stream`; resolves when the stream ends. */
export function readLines(stream: Readable, options: LineOptions): Promise<void> {
  const max = options.maxLineBytes;
  const skip = options.skip;
  // The start of a line that began in an earlier chunk.
  let parts: Buffer[] = [];
  let size = 0;
  let truncated = false;
  const take = (chunk: Buffer, start: number, end: number): void => {
    if (truncated) return;
    const room = max - size;
    if (end - start > room) {
      end = start + room;
      truncated = true;
    }
    if (end > start) {
      parts.push(chunk.subarray(start, end));
      size += end - start;
    }
  };
  const emitPending = (): void => {
    const line = new BufferLine(parts.length === 1 ? parts[0]! : Buffer.concat(parts), 0, size, truncated);
    parts = [];
    size = 0;
    truncated = false;
    options.onLine(line);
  };
  /** Skips the whole lines from `start` on while `skip` is active; returns where normal reading resumes. */
  const skipFrom = (data: Buffer, start: number): number => {
    if (!skip || size > 0 || truncated || !skip.active()) return start;
    const prefix = skip.keepPrefix?.();
    const kept = prefix ? prefixAtLineStart(data, start, prefix) : -1;
    const stop = kept === -1 ? data.length : kept;
    const lastNl = stop > start ? data.lastIndexOf(10, stop - 1) : -1;
    if (lastNl < start) return start;
    const count = countNewlines(data, start, lastNl + 1);
    skip.onSkipped(count, skip.tailLines ? lastLines(data, start, lastNl, skip.tailLines, max) : []);
    return lastNl + 1;
  };
  return new Promise((resolve) => {
    stream.on("data", (data: Buffer) => {
      let start = skipFrom(data, 0);
      while (start < data.length) {
        const nl = data.indexOf(10, start);
        if (nl === -1) {
          take(data, start, data.length);
          break;
        }
        if (size === 0 && !truncated) {
          // The common case: the whole line is in this chunk; no copy.
          const cut = nl - start > max;
          options.onLine(new BufferLine(data, start, cut ? start + max : nl, cut));
        } else {
          take(data, start, nl);
          emitPending();
        }
        start = skipFrom(data, nl + 1);
      }
    });
    const finish = (): void => {
      if (size > 0 || truncated) emitPending();
      resolve();
    };
    stream.once("end", finish);
    stream.once("error", finish);
  });
}
