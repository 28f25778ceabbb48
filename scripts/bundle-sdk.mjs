#!/usr/bin/env node
// Bundles the SDK runtime (with grpc-js and protobuf-es) into one ES module,
// sdk/dist/plugwire-sdk.mjs, the package's entry. A plugin then loads one
// file instead of a few hundred modules, which is most of a TS plugin's
// start-up time (docs/performance.md has the figures).
import { build } from "esbuild";

await build({
  entryPoints: ["sdk/dist/src/index.js"],
  outfile: "sdk/dist/plugwire-sdk.mjs",
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  sourcemap: true,
  legalComments: "eof",
  logLevel: "warning",
  // grpc-js is CommonJS and requires Node built-ins; give the bundle a require.
  banner: { js: "import { createRequire as __plugwireCreateRequire } from 'node:module'; const require = __plugwireCreateRequire(import.meta.url);" },
});
