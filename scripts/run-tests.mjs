#!/usr/bin/env node
// Runs every compiled test file (*/dist/test/**/*.test.js) with node's test
// runner. Arguments, if any, are substrings that select test files.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const roots = ["proto", "sdk", "check", "host", "plugins-example", "bench"].map((p) => join(p, "dist", "test"));
const files = [];
function walk(dir) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return; // package without tests
  }
  for (const name of entries) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".test.js")) files.push(path);
  }
}
roots.forEach(walk);
const filters = process.argv.slice(2);
const selected = filters.length ? files.filter((f) => filters.some((s) => f.includes(s))) : files;
if (selected.length === 0) {
  console.error(`no test files matched ${filters.join(", ") || "(none built)"}`);
  process.exit(1);
}
const result = spawnSync(process.execPath, ["--test", "--test-concurrency=2", "--test-timeout=120000", ...selected], {
  stdio: "inherit",
});
process.exit(result.status ?? 1);
