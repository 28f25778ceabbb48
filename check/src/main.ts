#!/usr/bin/env node
/** `plugwire-check`: the kit's own command, the same as `plugwire check`. */
import { checkCommand } from "./cli.js";

const PROGRAM = "plugwire-check";

checkCommand(process.argv.slice(2), { program: PROGRAM }).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`${PROGRAM}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
