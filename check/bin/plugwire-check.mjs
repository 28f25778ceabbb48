#!/usr/bin/env node
// `npx plugwire-check …`. This small file is committed, so npm links the bin
// as soon as `npm ci` has run, before anything is built; it runs the built
// kit (check/dist/src/main.js), or says how to build it.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const main = new URL("../dist/src/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    `plugwire-check: the kit is not built yet (${fileURLToPath(main)} is missing). ` +
      `Run 'npm run build' in the repository root, then try again.\n`,
  );
  process.exit(1);
}
await import(pathToFileURL(fileURLToPath(main)).href);
