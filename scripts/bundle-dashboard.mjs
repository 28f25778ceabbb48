#!/usr/bin/env node
// Builds the web dashboard (host/dashboard/, docs/dashboard.md) into
// host/dist/dashboard/: one minified ES module bundle (the page, connect-web
// and the generated AdminService code; no CDN, works offline), the page and
// its stylesheet. The admin server serves them at / (host/src/admin/dashboard.ts).
import { copyFileSync, mkdirSync } from "node:fs";
import { build } from "esbuild";

const out = "host/dist/dashboard";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["host/dashboard/main.ts"],
  outfile: `${out}/dashboard.js`,
  bundle: true,
  platform: "browser",
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  logLevel: "warning",
});
for (const f of ["index.html", "dashboard.css"]) copyFileSync(`host/dashboard/${f}`, `${out}/${f}`);
