/**
 * `plugwire new --lang go --stateful`: the project builds with its README's steps
 * (offline, against this checkout's SDK) and passes the conformance kit through
 * its own check.sh with no edits. Skipped with a note when the toolchain or
 * scripts/setup-polyglot.sh's venv is missing; fails under CI. See new-project.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, it } from "node:test";
import { newBuildCheck } from "./new-project.js";

const tmp = mkdtempSync(join(tmpdir(), "plugwire-new-go-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

it("plugwire new --lang go --stateful: builds and passes the kit", (t) => newBuildCheck(t, tmp, "go", true));
