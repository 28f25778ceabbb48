/**
 * `plugwire new`: what it refuses and why, its help, and the template
 * renderer. That every language's project, plain and --stateful, builds and
 * passes the kit with no edits is in new-<lang>[-stateful].test.ts (a file
 * each: builds are slow on a loaded machine, and each file has its own time
 * limit), through new-project.ts.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PlugwireError } from "@plugwire/proto";
import { NEW_HELP, newProject, render } from "../src/cli/new.js";
import { CLI, run } from "./new-project.js";

describe("plugwire new", () => {
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), "plugwire-new-"));
  });
  after(() => {
    rmSync(tmp, { recursive: true, force: true });
  });

  describe("refuses what it cannot write, saying why", () => {
    it("a bad name", () => {
      for (const bad of ["", "Upper", "under_score", "-lead", "trail-", "a".repeat(65), "dot.ted", "../up"]) {
        assert.throws(
          () => newProject({ lang: "go", name: bad, dir: join(tmp, "never"), cwd: tmp }),
          (e: unknown) => e instanceof PlugwireError && e.code === "invalid_argument" && /bad plugin name/.test(e.message),
          JSON.stringify(bad),
        );
      }
      assert.equal(existsSync(join(tmp, "never")), false);
    });

    it("an unknown language", () => {
      assert.throws(() => newProject({ lang: "cobol", name: "x", cwd: tmp }), /unknown language 'cobol': plugwire new --lang takes ts, python, go, rust/);
    });

    it("a directory that exists and is not empty, which it leaves as it was", () => {
      const dir = join(tmp, "taken");
      mkdirSync(dir);
      writeFileSync(join(dir, "keep.txt"), "mine");
      assert.throws(() => newProject({ lang: "ts", name: "taken", cwd: tmp }), /taken already exists and is not an empty directory: pick another --dir, or remove it/);
      assert.equal(readFileSync(join(dir, "keep.txt"), "utf8"), "mine");
      assert.equal(existsSync(join(dir, "package.json")), false);
      // An empty one is fine (e.g. made by mktemp -d).
      const empty = join(tmp, "empty");
      mkdirSync(empty);
      assert.ok(newProject({ lang: "ts", name: "empty", dir: empty, cwd: tmp }).files.includes("src/plugin.ts"));
    });

    it("an --sdk that is not a plugwire checkout", () => {
      assert.throws(() => newProject({ lang: "rust", name: "r", sdk: tmp, dir: join(tmp, "r"), cwd: tmp }), /is not a plugwire checkout/);
    });

    it("from the CLI: exit 1 and the reason on stderr; --help and a missing NAME or --lang", async () => {
      const bad = await run(process.execPath, [CLI, "new", "--lang", "go", "Bad"], tmp);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /^plugwire: bad plugin name 'Bad'/);
      const noLang = await run(process.execPath, [CLI, "new", "x"], tmp);
      assert.equal(noLang.code, 1);
      assert.match(noLang.stderr, /plugwire new needs --lang \(ts, python, go, rust\)/);
      const noName = await run(process.execPath, [CLI, "new", "--lang", "ts"], tmp);
      assert.equal(noName.code, 1);
      assert.match(noName.stderr, /needs exactly one NAME, got 0/);
      const help = await run(process.execPath, [CLI, "new", "--help"], tmp);
      assert.equal(help.code, 0);
      assert.equal(help.stdout, NEW_HELP);
      const main = await run(process.execPath, [CLI, "--help"], tmp);
      assert.match(main.stdout, /plugwire new --lang ts\|python\|go\|rust NAME \[--stateful\] \[--dir DIR\]/);
    });

    it("without a checkout, the project names the published packages", () => {
      const dir = join(tmp, "published");
      newProject({ lang: "go", name: "published", dir, sdk: null, cwd: tmp });
      assert.doesNotMatch(readFileSync(join(dir, "go.mod"), "utf8"), /replace/);
      newProject({ lang: "rust", name: "published", dir: join(tmp, "published-rs"), sdk: null, cwd: tmp });
      assert.match(readFileSync(join(tmp, "published-rs", "Cargo.toml"), "utf8"), /^plugwire = "0\.1\.0"$/m);
      assert.equal(existsSync(join(tmp, "published-rs", "Cargo.lock")), false);
    });
  });

  it("render: sections by flag, variables, and an unknown one throws", () => {
    const vars = { name: "n" };
    assert.equal(render("a{{#s}}\nS {{name}}\n{{/s}}{{^s}}\nP\n{{/s}}b", vars, { s: true }), "aS n\nb");
    assert.equal(render("a{{#s}}\nS {{name}}\n{{/s}}{{^s}}\nP\n{{/s}}b", vars, { s: false }), "aP\nb");
    assert.equal(render("x{{{#s}}k{{/s}}}", vars, { s: true }), "x{k}");
    assert.throws(() => render("{{nope}}", vars, {}), /template variable \{\{nope\}\} is not defined/);
    assert.throws(() => render("{{#nope}}x{{/nope}}", vars, {}), /names no flag/);
  });
});
