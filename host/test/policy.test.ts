/**
 * The supervisor's pure logic: OTP restart decisions, full-jitter backoff and
 * the crash-loop window. No processes, no timers.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RestartWindow, backoffDelayMs, shouldRestart, type EndReason } from "../src/supervisor/policy.js";

const ABNORMAL: Array<{ reason: EndReason; code: number | null; signal: string | null }> = [
  { reason: "crash", code: 3, signal: null },
  { reason: "crash", code: null, signal: "SIGKILL" },
  { reason: "crash", code: null, signal: "SIGSEGV" },
  { reason: "hung", code: null, signal: "SIGKILL" },
  { reason: "stream-broken", code: null, signal: "SIGKILL" },
  { reason: "stream-broken", code: 0, signal: null },
  { reason: "launch-failed", code: null, signal: null },
  { reason: "launch-failed", code: 0, signal: null },
];
const label = (e: { reason: string; code: number | null; signal: string | null }): string => `${e.reason} (code ${e.code}, signal ${e.signal})`;

describe("shouldRestart", () => {
  it("permanent restarts after every end, clean exits included", () => {
    assert.equal(shouldRestart("permanent", "exit", 0, null), true);
    for (const e of ABNORMAL) assert.equal(shouldRestart("permanent", e.reason, e.code, e.signal), true, label(e));
  });

  it("transient restarts after every abnormal end but not after a clean exit", () => {
    assert.equal(shouldRestart("transient", "exit", 0, null), false);
    for (const e of ABNORMAL) assert.equal(shouldRestart("transient", e.reason, e.code, e.signal), true, label(e));
  });

  it("transient treats an 'exit' with a non-zero code or a signal as abnormal", () => {
    assert.equal(shouldRestart("transient", "exit", 1, null), true);
    assert.equal(shouldRestart("transient", "exit", null, "SIGTERM"), true);
  });

  it("temporary never restarts", () => {
    assert.equal(shouldRestart("temporary", "exit", 0, null), false);
    for (const e of ABNORMAL) assert.equal(shouldRestart("temporary", e.reason, e.code, e.signal), false, label(e));
  });
});

describe("backoffDelayMs", () => {
  const options = { initialMs: 100, maxMs: 30_000 };
  const fixed = (value: number) => () => value;

  it("restarts at once on attempt 0, whatever the random source says", () => {
    assert.equal(backoffDelayMs(0, options, fixed(0.999)), 0);
    assert.equal(backoffDelayMs(-1, options, fixed(0.999)), 0);
  });

  it("draws from [0, initial * 2^(n-1)) with full jitter", () => {
    for (const [attempt, ceiling] of [
      [1, 100],
      [2, 200],
      [3, 400],
      [4, 800],
      [9, 25_600],
    ] as const) {
      assert.equal(backoffDelayMs(attempt, options, fixed(0)), 0, `attempt ${attempt}, random 0`);
      assert.equal(backoffDelayMs(attempt, options, fixed(0.5)), ceiling / 2, `attempt ${attempt}, random 0.5`);
      assert.equal(backoffDelayMs(attempt, options, fixed(0.999999)), ceiling - 1, `attempt ${attempt}, random just below 1`);
    }
  });

  it("is capped at maxMs", () => {
    for (const attempt of [10, 11, 20, 31, 64, 1_000_000]) {
      assert.equal(backoffDelayMs(attempt, options, fixed(0.999999)), options.maxMs - 1, `attempt ${attempt}`);
      assert.equal(backoffDelayMs(attempt, options, fixed(0.5)), options.maxMs / 2, `attempt ${attempt}`);
    }
    assert.equal(backoffDelayMs(5, { initialMs: 100, maxMs: 250 }, fixed(0.999999)), 249);
  });

  it("stays within bounds with the real random source", () => {
    for (let attempt = 0; attempt < 40; attempt++) {
      const ceiling = attempt === 0 ? 0 : Math.min(options.maxMs, options.initialMs * 2 ** (attempt - 1));
      for (let i = 0; i < 50; i++) {
        const delay = backoffDelayMs(attempt, options);
        assert.ok(Number.isInteger(delay) && delay >= 0 && delay <= ceiling, `attempt ${attempt}: ${delay} not in [0, ${ceiling}]`);
      }
    }
  });

  it("gives 0 when initialMs is 0 (no backoff)", () => {
    assert.equal(backoffDelayMs(7, { initialMs: 0, maxMs: 30_000 }, fixed(0.9)), 0);
  });
});

describe("RestartWindow", () => {
  it("allows maxRestarts restarts within the window and refuses the next", () => {
    const w = new RestartWindow(5, 60_000);
    for (let i = 0; i < 5; i++) assert.equal(w.allow(1_000 + i), true, `restart ${i + 1}`);
    assert.equal(w.allow(1_005), false, "the 6th restart within 60 s is a crash loop");
  });

  it("forgets restarts older than the window", () => {
    const w = new RestartWindow(2, 1_000);
    assert.equal(w.allow(0), true);
    assert.equal(w.allow(500), true);
    assert.equal(w.allow(999), false, "3 in 1 s");
    // At 1 500 only the one at 999 is younger than 1 000 ms (refused restarts count too).
    assert.equal(w.allow(1_500), true);
    // At 2 600 every earlier one is older than the window.
    assert.equal(w.allow(2_600), true);
    assert.equal(w.allow(2_700), true);
    assert.equal(w.allow(2_800), false);
  });

  it("an entry exactly windowMs old no longer counts", () => {
    const w = new RestartWindow(1, 1_000);
    assert.equal(w.allow(0), true);
    assert.equal(w.allow(999), false);
    assert.equal(w.allow(1_999), true, "the ones at 0 and 999 are 1 999 and 1 000 ms old");
  });

  it("reset clears the count (an operator restart)", () => {
    const w = new RestartWindow(1, 60_000);
    assert.equal(w.allow(0), true);
    assert.equal(w.allow(1), false);
    w.reset();
    assert.equal(w.allow(2), true);
  });

  it("maxRestarts 0 quarantines on the first restart", () => {
    const w = new RestartWindow(0, 60_000);
    assert.equal(w.allow(0), false);
  });
});
