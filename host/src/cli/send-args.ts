/** `plugwire send` arguments → what to dispatch, validated with messages that say what to type. */
import { readFileSync } from "node:fs";
import { PlugwireError } from "@plugwire/proto";
import type { SendRequest } from "./admin-commands.js";

export interface SendArgs {
  plugin?: string;
  /** Positionals after NAME: an error. */
  extra?: string[];
  kind?: string;
  src?: string;
  body?: string;
  "body-hex"?: string;
  "body-file"?: string;
}

const USAGE = "usage: plugwire send NAME|--kind KIND --src HEX (--body TEXT | --body-hex HEX | --body-file FILE)";

function invalid(message: string): PlugwireError {
  return new PlugwireError("invalid_argument", `${message}\n${USAGE}`);
}

function parseHex(value: string, flag: string): Uint8Array {
  const hex = value.startsWith("0x") ? value.slice(2) : value;
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw invalid(`${flag} must be hex digits, two per byte (got ${JSON.stringify(value)})`);
  return Buffer.from(hex, "hex");
}

/** Reads a body file; "-" is standard input. */
function readBody(path: string): Uint8Array {
  try {
    return readFileSync(path === "-" ? 0 : path);
  } catch (e) {
    throw invalid(`cannot read --body-file ${path}: ${(e as Error).message}`);
  }
}

export function sendRequest(args: SendArgs): SendRequest {
  if (args.extra && args.extra.length > 0) throw invalid(`unexpected argument '${args.extra[0]}' after the plugin name`);
  if (!args.plugin && !args.kind) throw invalid("say where the payload goes: a plugin NAME (see plugwire status), or --kind KIND");
  if (args.src === undefined) throw invalid("--src HEX is required: the node id of the peer the payload comes from");
  const src = parseHex(args.src, "--src");
  if (src.byteLength === 0) throw invalid("--src must not be empty");
  const bodies = (["body", "body-hex", "body-file"] as const).filter((k) => args[k] !== undefined);
  if (bodies.length !== 1) {
    throw invalid(bodies.length === 0 ? "give the payload body with one of --body, --body-hex or --body-file" : `give one body, not ${bodies.map((b) => `--${b}`).join(" and ")}`);
  }
  const body =
    args.body !== undefined ? new TextEncoder().encode(args.body) : args["body-hex"] !== undefined ? parseHex(args["body-hex"], "--body-hex") : readBody(args["body-file"]!);
  return { plugin: args.plugin, kind: args.kind, src, body };
}
