/**
 * `plugwire new --lang rust --stateful`: the project builds (cargo, offline, against
 * sdk/rust, in the workspace's target dir) and passes the kit through its
 * check.sh with no edits. Skipped with a note without cargo; fails under CI.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, it } from "node:test";
import { newBuildCheck } from "./new-project.js";

const tmp = mkdtempSync(join(tmpdir(), "plugwire-new-rust-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

it("plugwire new --lang rust --stateful: builds and passes the kit", (t) => newBuildCheck(t, tmp, "rust", true));
