import { readFileSync } from "node:fs";
import { PlugwireError } from "@plugwire/proto";

/** Reads a PEM file named by a CLI flag, or says which flag named a file it cannot read. */
export function readPem(path: string | undefined, flag: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new PlugwireError("invalid_argument", `${flag} ${path}: cannot read it (${(e as Error).message})`, { cause: e });
  }
}
