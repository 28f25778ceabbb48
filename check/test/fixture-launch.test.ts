/**
 * Each mode of the broken fixture (fixtures/broken.ts) about launching,
 * talking and leaving fails exactly the check it breaks; "ok" and
 * "watch-only" pass every check.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ALL, BROKEN, check, explain, failsExactlyOne, ids } from "./helpers.js";
import { DELIVERY_MODES, LAUNCH_MODES } from "./modes.js";

describe("broken fixture modes: launch, handshake, control, health, exits", { concurrency: 2 }, () => {
  for (const mode of ["ok", "watch-only"]) {
    it(`${mode}: the fixture passes every check`, async () => {
      const report = await check(mode, process.execPath, [BROKEN, mode]);
      assert.deepEqual(ids(report, "pass"), [...ALL].sort(), explain(report));
    });
  }

  failsExactlyOne(LAUNCH_MODES);

  it("every check added since the first kit has a mode that fails it", () => {
    // The first kit's checks that never had a mode of their own; a new check must not join them.
    const withoutMode = ["effects", "restore-own", "sigterm", "snapshot", "socket", "start", "unclaimed-kind"];
    const covered = new Set([...LAUNCH_MODES, ...DELIVERY_MODES].map(([, failed]) => failed));
    assert.deepEqual(ALL.filter((id) => !covered.has(id)).sort(), withoutMode);
  });
});
