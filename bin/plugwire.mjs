#!/usr/bin/env node
// `npx plugwire …` in this repository. This small file is committed, so npm
// knows the bin as soon as `npm ci` has run, before anything is built; it
// runs the built CLI (host/dist/src/cli/main.js), or says how to build it.
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

const main = new URL("../host/dist/src/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  const root = fileURLToPath(new URL("..", import.meta.url));
  process.stderr.write(
    `plugwire: the CLI is not built yet (${fileURLToPath(main)} is missing). ` +
      `Run 'npm run build' (or 'npm start', which builds first) in ${root}, then try again.\n`,
  );
  process.exit(1);
}
await import(pathToFileURL(fileURLToPath(main)).href);
