/**
 * `plugwire new --lang ts|python|go|rust NAME [--stateful] [--dir DIR] [--sdk DIR]`:
 * writes a ready plugin project from the templates in host/templates/<lang>/
 * (shipped with the host package).
 *
 * Templates are plain files with three kinds of markers:
 *   {{var}}                    replaced by a variable (name, sdk dependency, ...)
 *   {{#stateful}}...{{/stateful}}  kept only with --stateful
 *   {{^stateful}}...{{/stateful}}  kept only without it
 * A file whose name starts with "_" is written as "." + the rest (_gitignore →
 * .gitignore: npm drops .gitignore files from packages). A file under a
 * "stateful/" directory of the template is written only with --stateful.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PlugwireError } from "@plugwire/proto";

export const LANGUAGES = ["ts", "python", "go", "rust"] as const;
export type Language = (typeof LANGUAGES)[number];

/** A plugin project name: it becomes the plugin's name, its payload kinds' prefix, a directory, a Go module, a Rust crate and binary. */
export const NAME_PATTERN = /^[a-z][a-z0-9-]{0,62}[a-z0-9]$|^[a-z]$/;

export const NEW_USAGE = "plugwire new --lang ts|python|go|rust NAME [--stateful] [--dir DIR] [--sdk DIR]";

export const NEW_HELP = `Usage: ${NEW_USAGE}

Writes a ready plugin project in DIR (default ./NAME): the plugin's source
with a payload handler (NAME.ping answers "pong:" + body to the sender), its
build file, a README with the build and run steps, check.sh (runs the
conformance kit, plugwire check, on the built plugin) and plugwire.yaml (a
host config that runs it: plugwire run --config DIR/plugwire.yaml).

  --lang LANG   ts, python, go or rust
  NAME          the plugin's name: 1-64 of [a-z0-9-], starting with a letter,
                not ending with '-'; its payload kinds are NAME.ping (and NAME.hit)
  --stateful    also count NAME.hit payloads per peer, forget a forgotten peer's
                count, and keep the counts across restarts with a snapshot/restore pair
  --dir DIR     the directory to create (default ./NAME); it must not exist, or be empty
  --sdk DIR     the plugwire checkout whose SDKs the project uses (default: the
                checkout this plugwire runs from, when it runs from one); without
                one the project depends on the published packages

Then see DIR/README.md. Guides: docs/writing-plugins-<lang>.md.
`;

export interface NewOptions {
  lang: string;
  name: string;
  stateful?: boolean;
  /** The project directory to create; default ./NAME (against cwd). */
  dir?: string;
  /** A plugwire checkout (the directory with sdk/); default: the one this file runs from, if any. */
  sdk?: string | null;
  cwd?: string;
}

export interface NewResult {
  dir: string;
  name: string;
  lang: Language;
  files: string[];
  /** The checkout whose SDKs the project uses, or null for the published packages. */
  sdk: string | null;
}

const here = dirname(fileURLToPath(import.meta.url));
/** host/dist/src/cli → host/templates */
export const TEMPLATES_DIR = resolve(here, "..", "..", "..", "templates");
/** host/dist/src/cli → the repository root, when the host runs from a checkout */
const CHECKOUT = resolve(here, "..", "..", "..", "..");

/** Whether dir is a plugwire checkout with all four SDKs. */
function isCheckout(dir: string): boolean {
  return ["sdk/package.json", "sdk/python/pyproject.toml", "sdk/go/go.mod", "sdk/rust/Cargo.toml"].every((f) => existsSync(join(dir, f)));
}

/** The checkout this CLI runs from, if it runs from one. */
export function defaultCheckout(): string | null {
  return isCheckout(CHECKOUT) ? CHECKOUT : null;
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** The `go` line of the Go SDK's go.mod, so the project asks for the same toolchain. */
function goVersion(sdk: string | null): string {
  const mod = sdk && readIfExists(join(sdk, "sdk", "go", "go.mod"));
  return mod?.match(/^go (\S+)$/m)?.[1] ?? "1.22";
}

/** The variables every template may use. */
function variables(name: string, stateful: boolean, sdk: string | null): Record<string, string> {
  const snake = name.replace(/-/g, "_");
  const camel = snake.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
  const pascal = camel[0]!.toUpperCase() + camel.slice(1);
  return {
    name,
    snake,
    camel,
    pascal,
    kinds_comment: stateful ? `${name}.ping and ${name}.hit` : `${name}.ping`,
    // TypeScript: the SDK package; a checkout's sdk/ through a file: path.
    ts_sdk: sdk ? `file:${join(sdk, "sdk")}` : "0.1.0",
    // Python: a requirements line.
    py_sdk: sdk ? `plugwire @ file://${join(sdk, "sdk", "python")}` : "plugwire==0.1.0",
    // Go: the replace directive (empty for the published module).
    go_replace: sdk
      ? `// The SDK from a plugwire checkout; delete this replace directive to use the published module.\nreplace github.com/plugwire/plugwire/sdk/go => ${join(sdk, "sdk", "go")}\n`
      : "",
    go_version: goVersion(sdk),
    // Rust: the dependency line.
    rust_sdk: sdk ? `plugwire = { path = ${JSON.stringify(join(sdk, "sdk", "rust"))} }` : `plugwire = "0.1.0"`,
  };
}

/** Applies the markers of the file comment above. */
export function render(text: string, vars: Record<string, string>, flags: Record<string, boolean>): string {
  const sections = /\{\{([#^])(\w+)\}\}\n?([\s\S]*?)\{\{\/\2\}\}\n?/g;
  const out = text.replace(sections, (_, sign: string, flag: string, body: string) => {
    if (!(flag in flags)) throw new Error(`template section {{${sign}${flag}}} names no flag`);
    return flags[flag] === (sign === "#") ? body : "";
  });
  return out.replace(/\{\{(\w+)\}\}/g, (whole, key: string) => {
    const value = vars[key];
    if (value === undefined) throw new Error(`template variable ${whole} is not defined`);
    return value;
  });
}

function listFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) out.push(...listFiles(path, join(prefix, entry)));
    else out.push(join(prefix, entry));
  }
  return out;
}

/** Where a template file goes in the project, or null when it is not wanted. */
function targetPath(file: string, stateful: boolean): string | null {
  const parts = file.split("/");
  if (parts[0] === "stateful") {
    if (!stateful) return null;
    parts.shift();
  }
  return parts.map((p) => (p.startsWith("_") ? `.${p.slice(1)}` : p)).join("/");
}

/** Writes the project; throws a PlugwireError (invalid_argument) on a bad name, language or directory. */
export function newProject(options: NewOptions): NewResult {
  const { name } = options;
  if (!(LANGUAGES as readonly string[]).includes(options.lang)) {
    throw new PlugwireError("invalid_argument", `unknown language '${options.lang}': plugwire new --lang takes ${LANGUAGES.join(", ")}`);
  }
  const lang = options.lang as Language;
  if (!NAME_PATTERN.test(name)) {
    throw new PlugwireError(
      "invalid_argument",
      `bad plugin name '${name}': use 1-64 of lowercase letters, digits and '-', starting with a letter and not ending with '-' (e.g. my-plugin)`,
    );
  }
  const cwd = options.cwd ?? process.cwd();
  const dir = resolve(cwd, options.dir ?? name);
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new PlugwireError("invalid_argument", `${dir} already exists and is not an empty directory: pick another --dir, or remove it`);
  }
  let sdk: string | null;
  if (options.sdk === undefined) sdk = defaultCheckout();
  else if (options.sdk === null) sdk = null;
  else {
    sdk = resolve(cwd, options.sdk);
    if (!isCheckout(sdk)) throw new PlugwireError("invalid_argument", `--sdk ${sdk} is not a plugwire checkout (it needs sdk/, sdk/python, sdk/go and sdk/rust)`);
  }
  const stateful = options.stateful ?? false;
  const vars = variables(name, stateful, sdk);
  const templates = join(TEMPLATES_DIR, lang);
  const written: string[] = [];
  const outputs: [string, string][] = [];
  for (const file of listFiles(templates)) {
    const target = targetPath(file, stateful);
    if (target === null) continue;
    outputs.push([target, render(readFileSync(join(templates, file), "utf8"), vars, { stateful })]);
  }
  // Rust: seed the lockfile from the checkout, so the project builds with the
  // crate versions plugwire is tested with (and offline, from cargo's cache).
  if (lang === "rust" && sdk) {
    const lock = readIfExists(join(sdk, "Cargo.lock"));
    if (lock !== undefined) outputs.push(["Cargo.lock", lock]);
  }
  for (const [target, text] of outputs) {
    const path = join(dir, target);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text, { mode: target.endsWith(".sh") ? 0o755 : 0o644 });
    written.push(target);
  }
  return { dir, name, lang, files: written.sort(), sdk };
}

/** What to do next, as printed after the project is written. */
function nextSteps(result: NewResult, cwd: string): string {
  const rel = relative(cwd, result.dir) || ".";
  const build: Record<Language, string> = {
    ts: "npm install && npm run build",
    python: "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
    go: `go mod tidy && go build -o bin/${result.name} .`,
    rust: "cargo build --release",
  };
  return [
    `wrote ${result.files.length} files to ${result.dir}${result.sdk ? ` (SDK from ${result.sdk})` : ""}`,
    "next:",
    `  cd ${rel}`,
    `  ${build[result.lang]}`,
    "  ./check.sh                                  # the conformance kit on it",
    "  plugwire run --config plugwire.yaml         # a host that runs it",
    "see README.md there",
    "",
  ].join("\n");
}

/** `plugwire new ...`: argv → project → exit code. */
export function newCommand(argv: string[], out: NodeJS.WritableStream = process.stdout): number {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        lang: { type: "string", short: "l" },
        stateful: { type: "boolean" },
        dir: { type: "string" },
        sdk: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new PlugwireError("invalid_argument", `${(e as Error).message}; usage: ${NEW_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out.write(NEW_HELP);
    return 0;
  }
  if (!values.lang) throw new PlugwireError("invalid_argument", `plugwire new needs --lang (${LANGUAGES.join(", ")}); usage: ${NEW_USAGE}`);
  if (positionals.length !== 1) {
    throw new PlugwireError("invalid_argument", `plugwire new needs exactly one NAME, got ${positionals.length}; usage: ${NEW_USAGE}`);
  }
  const result = newProject({ lang: values.lang, name: positionals[0]!, stateful: values.stateful, dir: values.dir, sdk: values.sdk });
  out.write(nextSteps(result, process.cwd()));
  return 0;
}
