/**
 * The kit passes the example plugins in every language: TypeScript, Python,
 * Go and Rust (the last three when scripts/setup-polyglot.sh has built them).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, it } from "node:test";
import { GO_COUNTER, GO_PRESENCE, NOT_BUILT, PYTHON, PYTHON_COUNTER, RUST_COUNTER, STATEFUL, assertConformant, check, example } from "./helpers.js";

describe("plugwire check passes the example plugins", { concurrency: 2 }, () => {
  it("echo (TypeScript): stateful checks and host calls skipped", async (t) => {
    const report = await check("echo", process.execPath, [example("echo")]);
    assertConformant(t, report, STATEFUL);
  });

  it("counter (TypeScript, stateful): snapshot and every restore check pass", async (t) => {
    const report = await check("counter", process.execPath, [example("counter")]);
    assertConformant(t, report, []);
  });

  it("presence (TypeScript): its host calls carry the token", async (t) => {
    const report = await check("presence", process.execPath, [example("presence")]);
    assertConformant(t, report, STATEFUL);
    assert.match(report.checks.find((c) => c.id === "host-calls")!.detail, /^\d+ call\(s\) \(WatchPeers×1, LookupName×\d+.*\), all with the token$/);
  });

  it("counter-py (Python, stateful)", { skip: existsSync(PYTHON) ? false : `${PYTHON} ${NOT_BUILT}` }, async (t) => {
    const report = await check("py", PYTHON, [PYTHON_COUNTER]);
    assertConformant(t, report, []);
  });

  it("presence-go (Go)", { skip: existsSync(GO_PRESENCE) ? false : `${GO_PRESENCE} ${NOT_BUILT}` }, async (t) => {
    const report = await check("go", GO_PRESENCE, []);
    assertConformant(t, report, STATEFUL);
  });

  it("counter-go (Go, stateful)", { skip: existsSync(GO_COUNTER) ? false : `${GO_COUNTER} ${NOT_BUILT}` }, async (t) => {
    const report = await check("go-counter", GO_COUNTER, []);
    assertConformant(t, report, []);
  });

  it("counter-rust (Rust, stateful)", { skip: existsSync(RUST_COUNTER) ? false : `${RUST_COUNTER} ${NOT_BUILT}` }, async (t) => {
    const report = await check("rust-counter", RUST_COUNTER, []);
    assertConformant(t, report, []);
  });
});
