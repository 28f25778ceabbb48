/**
 * Shared by new.test.ts and new-rust.test.ts: generate a project with
 * `plugwire new`, build it as its README says (offline, against this
 * checkout's SDKs) and run its check.sh (the conformance kit) on it.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { loadConfigFile } from "../src/cli/config-file.js";
import type { Language } from "../src/cli/new.js";

export const here = new URL(".", import.meta.url).pathname;
export const repo = join(here, "..", "..", "..");
export const CLI = join(repo, "host", "dist", "src", "cli", "main.js");
export const PYTHON = join(repo, "plugins-example", "python", ".venv", "bin", "python");
export const TARGET = join(repo, "target");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 600_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: "SIGKILL" }, (error, stdout, stderr) => {
      resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
    });
  });
}

async function ok(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const r = await run(command, args, cwd, env);
  assert.equal(r.code, 0, `${command} ${args.join(" ")} in ${cwd} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
}

function onPath(command: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" }).status === 0;
}

/** Why a language cannot be built here, or undefined when it can. */
function missing(lang: Language): string | undefined {
  if (lang === "python" && !existsSync(PYTHON)) return `${PYTHON} is missing (run bash scripts/setup-polyglot.sh)`;
  if (lang === "python" && !onPath("python3")) return "python3 is not on PATH";
  if (lang === "go" && !onPath("go")) return "go is not on PATH";
  if (lang === "rust" && !onPath("cargo")) return "cargo is not on PATH";
  return undefined;
}

/** Skips (with the reason) a language that cannot be built; under CI fails instead. */
export function canBuild(t: TestContext, lang: Language): boolean {
  const why = missing(lang);
  if (why === undefined) return true;
  assert.ok(!process.env.CI, `plugwire new --lang ${lang}: ${why}; CI must build every language`);
  t.skip(`${lang}: ${why}`);
  return false;
}

let pipQueue: Promise<void> = Promise.resolve();

/** The build steps of each language's README, offline and against this checkout. */
const BUILD: Record<Language, (dir: string, name: string) => Promise<void>> = {
  async ts(dir) {
    // The npm cache holds what npm ci put there; @plugwire/sdk is a file: link to this checkout.
    await ok("npm", ["install", "--offline", "--no-audit", "--no-fund"], dir);
    await ok("npm", ["run", "build"], dir);
  },
  async python(dir) {
    // The README's steps: a venv of the project's own, then `pip install -r
    // requirements.txt`, which installs this checkout's sdk/python
    // (plugwire @ file://...). Offline: pip, setuptools (the build backend),
    // grpcio and protobuf come from the repository's venv through a .pth
    // file, and pip gets --no-index --no-deps --no-build-isolation.
    // One install at a time: pip builds sdk/python in its own tree.
    const install = pipQueue.then(async () => {
      await ok("python3", ["-m", "venv", "--without-pip", ".venv"], dir);
      const purelib = async (python: string): Promise<string> => {
        const r = await run(python, ["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], dir);
        assert.equal(r.code, 0, r.stderr);
        return r.stdout.trim();
      };
      writeFileSync(join(await purelib(join(dir, ".venv", "bin", "python")), "_plugwire_repo_venv.pth"), `${await purelib(PYTHON)}\n`);
      await ok(
        join(dir, ".venv", "bin", "python"),
        ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--no-index", "--no-deps", "--no-build-isolation", "-r", "requirements.txt"],
        dir,
      );
    });
    pipQueue = install.catch(() => {});
    await install;
    // The package is installed, not linked: the venv's plugwire is a copy.
    const where = await run(join(dir, ".venv", "bin", "python"), ["-c", "import plugwire; print(plugwire.__file__)"], dir);
    assert.ok(where.stdout.startsWith(join(dir, ".venv")), `plugwire imported from ${where.stdout}${where.stderr}`);
  },
  async go(dir, name) {
    const env = { GOPROXY: "off", GOFLAGS: "-mod=mod" }; // modules come from the cache setup-polyglot filled
    await ok("go", ["mod", "tidy"], dir, env);
    await ok("go", ["build", "-o", `bin/${name}`, "."], dir, env);
  },
  async rust(dir, name) {
    // The workspace's target dir already holds the SDK's compiled dependencies.
    // One flag more than the README's `cargo build --release`: the plugin's
    // own crate at opt-level 0 (its dependencies keep the release profile, so
    // they stay shared and compiled), which cuts its build from ~18 s of CPU
    // to ~2 s and keeps the test inside the runner's per-file limit.
    await ok("cargo", ["build", "--release", "--offline", "--config", `profile.release.package."${name}".opt-level=0`], dir, { CARGO_TARGET_DIR: TARGET });
  },
};

interface Report {
  passed: number;
  failed: number;
  skipped: number;
  checks: { id: string; status: string; detail: string }[];
}

export const STATEFUL_CHECKS = ["restore-garbage", "restore-keeps-state", "restore-own", "restore-unsupported-version", "snapshot"];

/** Generates, builds and checks one project; the kit must pass it with no edits. */
export async function newBuildCheck(t: TestContext, tmp: string, lang: Language, stateful: boolean): Promise<void> {
  if (!canBuild(t, lang)) return;
  const name = `new-${lang}${stateful ? "-stateful" : ""}`;
  const dir = join(tmp, name);
  const cli = await run(process.execPath, [CLI, "new", "--lang", lang, name, "--dir", dir, ...(stateful ? ["--stateful"] : [])], tmp);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, new RegExp(`^wrote \\d+ files to ${dir} \\(SDK from ${repo.replace(/\/$/, "")}\\)`));
  for (const file of ["README.md", "plugwire.yaml", "check.sh", ".gitignore"]) assert.ok(existsSync(join(dir, file)), `${file} is written`);
  assert.ok(statSync(join(dir, "check.sh")).mode & 0o100, "check.sh is executable");
  const readme = readFileSync(join(dir, "README.md"), "utf8");
  assert.doesNotMatch(readme, /\{\{|\}\}/, "no template marker is left");
  // The host config parses and runs the plugin by its name.
  const config = loadConfigFile(join(dir, "plugwire.yaml"));
  assert.deepEqual(
    config.plugins.map((p) => p.name),
    [name],
  );

  await BUILD[lang](dir, name);
  // Python: check.sh runs the project's own .venv/bin/python.
  const env = { PLUGWIRE: `${process.execPath} ${CLI}`, CARGO_TARGET_DIR: TARGET };
  const kit = await run(join(dir, "check.sh"), ["--json", "--timeout-ms", "10000"], dir, env);
  let report: Report;
  try {
    report = JSON.parse(kit.stdout) as Report;
  } catch {
    assert.fail(`check.sh printed no JSON report (exit ${kit.code}):\n${kit.stdout}\n${kit.stderr}`);
  }
  const failed = report.checks.filter((c) => c.status === "fail");
  assert.deepEqual(failed, [], "no check fails");
  assert.equal(kit.code, 0);
  const skipped = report.checks.filter((c) => c.status === "skip").map((c) => c.id).sort();
  assert.deepEqual(skipped, stateful ? [] : STATEFUL_CHECKS, "the stateful checks run exactly for --stateful");
  t.diagnostic(`${name}: ${report.passed} passed, ${report.skipped} skipped`);
}
