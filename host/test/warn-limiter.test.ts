import test from "node:test";
import assert from "node:assert/strict";
import { WarnLimiter, type LimitedSink } from "../src/supervisor/warn-limiter.js";

interface Line {
  level: string;
  fields: Record<string, unknown>;
  message: string;
}

function recorder(): { sink: LimitedSink; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (fields: object, message: string) => lines.push({ level, fields: fields as Record<string, unknown>, message });
  return { sink: { info: at("info"), warn: at("warn"), error: at("error") }, lines };
}

test("a repeated warning is logged once, then summarised with a count per interval", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { sink, lines } = recorder();
  const limiter = new WarnLimiter(sink, 10_000, () => Date.now());
  for (let i = 0; i < 1_000_000; i++) limiter.warn("queue-full", { seq: i }, "plugin 'p' queue full");
  assert.equal(lines.length, 1, "a million events write one line at once");
  assert.deepEqual(lines[0], { level: "warn", fields: { seq: 0 }, message: "plugin 'p' queue full" });
  assert.equal(limiter.pending("queue-full"), 999_999);
  t.mock.timers.tick(10_000);
  assert.equal(lines.length, 2);
  assert.equal(lines[1]!.message, "plugin 'p' queue full (999999 more like this in the last 10 s)");
  assert.deepEqual(lines[1]!.fields, { seq: 999_999, suppressed: 999_999 });
  // Still coming: summarised again next interval; a quiet interval then resets the key.
  limiter.warn("queue-full", { seq: 1 }, "again");
  t.mock.timers.tick(10_000);
  assert.equal(lines.length, 3);
  assert.equal(lines[2]!.message, "again (1 more like this in the last 10 s)");
  t.mock.timers.tick(10_000);
  assert.equal(lines.length, 3, "nothing to summarise after a quiet interval");
  limiter.warn("queue-full", { seq: 2 }, "fresh");
  assert.equal(lines.length, 4, "after a quiet interval the next event is logged at once");
  assert.equal(lines[3]!.message, "fresh");
});

test("keys are independent, keep their level, and flush() writes pending summaries", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { sink, lines } = recorder();
  const limiter = new WarnLimiter(sink, 5_000, () => Date.now());
  limiter.warn("a", {}, "A");
  limiter.error("b", {}, "B");
  limiter.warn("a", {}, "A");
  limiter.error("b", {}, "B");
  limiter.error("b", {}, "B");
  assert.deepEqual(
    lines.map((l) => [l.level, l.message]),
    [
      ["warn", "A"],
      ["error", "B"],
    ],
  );
  t.mock.timers.tick(2_000);
  limiter.flush();
  assert.deepEqual(
    lines.slice(2).map((l) => [l.level, l.message]),
    [
      ["warn", "A (1 more like this in the last 2 s)"],
      ["error", "B (2 more like this in the last 2 s)"],
    ],
  );
  limiter.warn("a", {}, "A");
  assert.equal(lines.length, 5, "flush forgets the keys");
});
