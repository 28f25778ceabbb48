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
    return this.bytes >= prefix.length && this.buffer.compare(prefix, 0, prefix.length, this.start, this.start + prefix.length) === 0;
  }
}

/** A line made from a string; for tests and for callers that already have text. */
export function lineOf(text: string, truncated = false): Line {
  const buffer = Buffer.from(text);
  return new BufferLine(buffer, 0, buffer.length, truncated);
}

export interface LineOptions {
  /** Longest line kept, in bytes; the rest of a longer line is dropped. */
  maxLineBytes: number;
  onLine: (line: Line) => void;
}

/** Feeds `onLine` with each line of `stream`; resolves when the stream ends. */
export function readLines(stream: Readable, options: LineOptions): Promise<void> {
  const max = options.maxLineBytes;
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
  return new Promise((resolve) => {
    stream.on("data", (data: Buffer) => {
      let start = 0;
      for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
        if (size === 0 && !truncated) {
          // The common case: the whole line is in this chunk; no copy.
          const cut = nl - start > max;
          options.onLine(new BufferLine(data, start, cut ? start + max : nl, cut));
        } else {
          take(data, start, nl);
          emitPending();
        }
        start = nl + 1;
      }
      if (start < data.length) take(data, start, data.length);
    });
    const finish = (): void => {
      if (size > 0 || truncated) emitPending();
      resolve();
    };
    stream.once("end", finish);
    stream.once("error", finish);
  });
}
