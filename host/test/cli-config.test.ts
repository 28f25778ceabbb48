/**
 * The YAML config of `plugwire run`: validated against its schema, with every
 * problem reported as FILE:LINE:COL (an unknown key names the nearest valid
 * key), relative paths resolved against the file, and one table of options
 * that --help prints and docs/configuration.md carries row for row.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PlugwireError } from "@plugwire/proto";
import { PLUGIN_DEFAULTS } from "../src/config.js";
import { loadConfigFile } from "../src/cli/config-file.js";
import { HOST_OPTIONS, PLUGIN_OPTIONS, configHelp, configSchema, pluginSchema, type OptionDoc } from "../src/cli/config-schema.js";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const dir = mkdtempSync(join(tmpdir(), "pwt-config-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** Writes `text` to a fresh file in the temp dir; returns its path. */
function file(text: string): string {
  const path = join(dir, `c${++files}.yaml`);
  writeFileSync(path, text);
  return path;
}

/** The invalid_config message loading `text` fails with, with the file's path shown as FILE. */
function problems(text: string): string {
  const path = file(text);
  try {
    loadConfigFile(path);
  } catch (e) {
    assert.ok(e instanceof PlugwireError, String(e));
    assert.equal(e.code, "invalid_config");
    return e.message.replaceAll(path, "FILE");
  }
  assert.fail("the config loaded");
}

const FOOTER = "\nEvery option is in plugwire --help and docs/configuration.md.";

describe("plugwire config file", () => {
  it("loads the demo config, resolving paths against its directory", () => {
    const config = loadConfigFile(join(repo, "plugins-example", "plugwire.yaml"));
    assert.equal(config.dataDir, join(repo, ".plugwire"));
    assert.deepEqual(
      config.plugins.map((p) => [p.name, p.command, p.args, p.cwd, p.capabilities]),
      [
        ["echo", "node", ["dist/echo.js"], join(repo, "plugins-example"), ["control"]],
        ["counter", "node", ["dist/counter.js"], join(repo, "plugins-example"), undefined],
        ["presence", "node", ["dist/presence.js"], join(repo, "plugins-example"), ["peers"]],
      ],
    );
    assert.deepEqual(config.peers, [{ nodeId: "01".repeat(32), name: "alice", x25519: "09".repeat(32) }]);
    assert.equal(config.snapshotIntervalMs, 30_000);
  });

  it("takes every host option; relative dirs resolve against the file, scalars in args and env become strings", () => {
    const config = loadConfigFile(
      file(
        [
          "dataDir: data",
          "snapshotIntervalMs: 0",
          "maxSnapshotBytes: 1048576",
          "stopTimeoutMs: 2500",
          "runDirParent: run",
          "maxConcurrentLaunches: 3",
          "plugins:",
          "  - name: p",
          "    command: ./p",
          "    cwd: sub",
          "    args: [--port, 8080, true]",
          "    env: { PORT: 8080, NAME: x }",
          "    config: { nested: { a: [1] } }",
          "    maxInFlightBytes: 65536",
          "    overflow: drop-oldest",
        ].join("\n"),
      ),
    );
    assert.equal(config.dataDir, join(dir, "data"));
    assert.equal(config.runDirParent, join(dir, "run"));
    assert.deepEqual([config.snapshotIntervalMs, config.maxSnapshotBytes, config.stopTimeoutMs, config.maxConcurrentLaunches], [0, 1_048_576, 2_500, 3]);
    const [p] = config.plugins;
    assert.equal(p!.cwd, join(dir, "sub"));
    assert.deepEqual(p!.args, ["--port", "8080", "true"]);
    assert.deepEqual(p!.env, { PORT: "8080", NAME: "x" });
    assert.deepEqual(p!.config, { nested: { a: [1] } });
    assert.equal(p!.maxInFlightBytes, 65_536);
    assert.equal(p!.overflow, "drop-oldest");
  });

  it("an unknown key is an error naming the file, the line and the nearest valid key (the example of docs/configuration.md)", () => {
    const text = "dataDir: ./data\nsnapshotIntervalMs: 30000\nbogusKey: 1\nplugins:\n  - name: echo\n    command: node\n    args: [dist/echo.js]\n    capabilites: [control]\n    maxInFlight: 0\n";
    const path = join(dir, "bad.yaml");
    writeFileSync(path, text);
    let message = "";
    try {
      loadConfigFile(path);
    } catch (e) {
      message = (e as Error).message;
    }
    const expected = [
      `${path}: 3 problems:`,
      `${path}:3:1: unknown key 'bogusKey'; the nearest valid key is 'peers' (valid here: dataDir, snapshotIntervalMs, maxSnapshotBytes, stopTimeoutMs, runDirParent, maxConcurrentLaunches, strictKinds, dashboard, remoteHostService, peers, plugins)`,
      `${path}:8:5: unknown key 'capabilites' in plugins[0] (plugin 'echo'); did you mean 'capabilities'?`,
      `${path}:9:18: plugins[0].maxInFlight (plugin 'echo') must be at least 1, not 0`,
    ].join("\n");
    assert.equal(message, expected + FOOTER);
    // The page shows the same output, for a file named bad.yaml.
    const page = readFileSync(join(repo, "docs", "configuration.md"), "utf8");
    assert.ok(page.includes(`plugwire: ${expected.replaceAll(path, "bad.yaml")}${FOOTER}\n`), "docs/configuration.md shows this output");
  });

  it("bogusKey in a plugin, a typo'd key in a peer", () => {
    assert.equal(
      problems("plugins:\n  - name: echo\n    command: node\n    bogusKey: 1\n"),
      `FILE:4:5: unknown key 'bogusKey' in plugins[0] (plugin 'echo'); the nearest valid key is 'args' (valid here: ${PLUGIN_OPTIONS.map((o) => o.key).join(", ")})` +
        FOOTER,
    );
    assert.equal(
      problems('peers:\n  - { nodeId: "01", nmae: a, x25519: "02" }\nplugins: [{ name: a, command: b }]\n'),
      "FILE: 2 problems:\nFILE:2:5: peers[0].name is required\nFILE:2:21: unknown key 'nmae' in peers[0]; did you mean 'name'?" + FOOTER,
    );
    assert.equal(problems("plugins:\n  - name: a\n    command: b\n    healthIntervalMS: 5\n"), "FILE:4:5: unknown key 'healthIntervalMS' in plugins[0] (plugin 'a'); did you mean 'healthIntervalMs'?" + FOOTER);
  });

  it("wrong types and values say what is expected, at the value's line", () => {
    assert.equal(
      problems("snapshotIntervalMs: soon\nplugins:\n  - name: a\n    command: b\n    restart: sometimes\n    capabilities: [control, everything]\n    maxInFlight: -1\n"),
      [
        "FILE: 4 problems:",
        `FILE:1:21: snapshotIntervalMs must be a number, not "soon"`,
        `FILE:5:14: plugins[0].restart (plugin 'a') must be one of permanent, transient, temporary, not "sometimes"`,
        `FILE:6:29: plugins[0].capabilities[1] (plugin 'a') must be one of peers, control, identity, not "everything"`,
        "FILE:7:18: plugins[0].maxInFlight (plugin 'a') must be at least 1, not -1",
      ].join("\n") + FOOTER,
    );
    assert.equal(problems("plugins:\n  - name: bad name\n    command: b\n"), `FILE:2:11: plugins[0].name must be 1-64 characters of [A-Za-z0-9._-], not "bad name"` + FOOTER);
    assert.equal(problems("plugins:\n  - name: a\n"), "FILE:2:5: plugins[0].command (plugin 'a') is required" + FOOTER);
    assert.equal(problems("dataDir: x\n"), "FILE:1:1: plugins is required" + FOOTER);
    assert.equal(problems("plugins: []\n"), "FILE:1:10: plugins must list at least one entry" + FOOTER);
    assert.equal(problems("stopTimeoutMs: 0\nplugins: [{ name: a, command: b }]\n"), "FILE:1:16: stopTimeoutMs must be more than 0, not 0" + FOOTER);
    assert.equal(
      problems("plugins: [{ name: a, command: b, maxInFlightBytes: 4194304 }]\n"),
      "FILE:1:52: plugins[0].maxInFlightBytes (plugin 'a') must be at most 131072, not 4194304" + FOOTER,
    );
    assert.equal(problems('peers:\n  - { nodeId: "0g", name: a, x25519: "02" }\nplugins: [{ name: a, command: b }]\n'), `FILE:2:15: peers[0].nodeId must be hex digits, two per byte, not "0g"` + FOOTER);
  });

  it("YAML errors, duplicate keys and duplicate plugin names carry their line", () => {
    assert.equal(problems("plugins: [\n"), "FILE is not valid YAML:\nFILE:2:1: Flow sequence in block collection must be sufficiently indented and end with a ]");
    assert.equal(problems("a: 1\na: 2\n"), "FILE is not valid YAML:\nFILE:2:1: Map keys must be unique");
    assert.equal(problems("- a\n"), "FILE: must be a YAML mapping with a 'plugins' list (see plugwire --help)");
    assert.equal(
      problems("plugins:\n  - { name: a, command: x }\n  - { name: a, command: y }\n"),
      "FILE:3:13: plugins[1]: a plugin named 'a' is already listed (plugins[0]); names must be unique",
    );
    assert.match(problems(""), /^FILE: is empty; it must be a YAML mapping/);
    assert.match(loadError(join(dir, "missing.yaml")), /^.*missing\.yaml: cannot read the config file \(ENOENT/);
  });
});

function loadError(path: string): string {
  try {
    loadConfigFile(path);
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

describe("every option is documented, with its default and unit", () => {
  const row = (o: OptionDoc): string => `| \`${o.key}\` | ${o.default} | ${o.unit || "-"} | ${o.about} |`;
  const keys = (options: readonly OptionDoc[]): string[] => options.map((o) => o.key).sort();

  it("the option table covers the schema, and PLUGIN_DEFAULTS plus name, command and cwd", () => {
    assert.deepEqual(keys(HOST_OPTIONS), Object.keys(configSchema.shape).sort());
    assert.deepEqual(keys(PLUGIN_OPTIONS), Object.keys(pluginSchema.shape).sort());
    assert.deepEqual(keys(PLUGIN_OPTIONS), [...Object.keys(PLUGIN_DEFAULTS), "name", "command", "cwd"].sort());
    for (const o of [...HOST_OPTIONS, ...PLUGIN_OPTIONS]) {
      if (/(Ms)$/.test(o.key)) assert.equal(o.unit, "ms", o.key);
      if (/Bytes$/.test(o.key)) assert.equal(o.unit, "bytes", o.key);
    }
  });

  it("docs/configuration.md has a row per option, as the table says", () => {
    const page = readFileSync(join(repo, "docs", "configuration.md"), "utf8");
    for (const o of [...HOST_OPTIONS, ...PLUGIN_OPTIONS]) assert.ok(page.includes(row(o)), `docs/configuration.md lacks the row:\n${row(o)}`);
  });

  it("plugwire --help lists every option with its default", () => {
    const help = execFileSync(process.execPath, [join(repo, "bin", "plugwire.mjs"), "--help"], { encoding: "utf8" });
    assert.ok(help.includes(configHelp()));
    for (const o of [...HOST_OPTIONS, ...PLUGIN_OPTIONS]) assert.match(help, new RegExp(`\\n {2,4}${o.key} +${o.default.replace(/[()$×[\]]/g, "\\$&")} +`), o.key);
    assert.match(help, /\n {2}plugwire send NAME\|--kind KIND --src HEX \(--body TEXT \| --body-hex HEX \| --body-file FILE\) \[--json\]\n/);
  });
});
