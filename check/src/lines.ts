/** Splits a byte stream into lines, capping each line's length. */
import type { Readable } from "node:stream";

export interface LineOptions {
  /** Longest line kept, in bytes; the rest of a longer line is dropped. */
  maxLineBytes: number;
  /** Each line without its LF; a CR before the LF is kept, so the caller sees it. */
  onLine: (line: string) => void;
}

/** Feeds `onLine` with each line of `stream`; resolves when the stream ends. */
export function readLines(stream: Readable, options: LineOptions): Promise<void> {
  let parts: Buffer[] = [];
  let size = 0;
  let capped = false;
  const emit = (): void => {
    const line = Buffer.concat(parts).toString("utf8");
    parts = [];
    size = 0;
    capped = false;
    options.onLine(line);
  };
  const take = (chunk: Buffer): void => {
    if (capped) return;
    const room = options.maxLineBytes - size;
    if (chunk.length > room) {
      parts.push(chunk.subarray(0, room));
      size += room;
      capped = true;
    } else {
      parts.push(chunk);
      size += chunk.length;
    }
  };
  return new Promise((resolve) => {
    stream.on("data", (data: Buffer) => {
      let start = 0;
      for (let nl = data.indexOf(10, start); nl !== -1; nl = data.indexOf(10, start)) {
        take(data.subarray(start, nl));
        emit();
        start = nl + 1;
      }
      if (start < data.length) take(data.subarray(start));
    });
    const finish = (): void => {
      if (size > 0 || capped) emit();
      resolve();
    };
    stream.once("end", finish);
    stream.once("error", finish);
  });
}
