/**
 * The handshake line as the kit reads it (docs/protocol.md §5), in two
 * strengths: `parseHandshakeLine` reads a line the way a host does (fields
 * split on whitespace, unknown keys ignored), and `handshakeLineNoise` holds
 * it to the grammar exactly, so nothing rides after the last field.
 * Pure: no I/O.
 */
import { HANDSHAKE_PREFIX } from "@plugwire/proto";

export interface Handshake {
  protocolVersion: number;
  network: "unix" | "tcp";
  address: string;
  transport: "grpc";
}

export type HandshakeResult =
  | { ok: true; handshake: Handshake }
  | { ok: false; reason: string; /** True when only the protocol version is unacceptable. */ versionMismatch?: boolean };

/** True when the line is meant as a handshake (well-formed or not). */
export function isHandshakeLine(line: string): boolean {
  return line === HANDSHAKE_PREFIX || line.startsWith(`${HANDSHAKE_PREFIX} `);
}

/**
 * Reads a handshake line (without its LF, and without a CR before it) as a
 * host does, and checks its version against `acceptedVersions`. The host's
 * own parser (host/src/handshake/parse.ts) must agree with this one;
 * host/test/check.test.ts holds them to it.
 */
export function parseHandshakeLine(line: string, acceptedVersions: readonly number[]): HandshakeResult {
  if (!isHandshakeLine(line)) return { ok: false, reason: `the line does not start with ${HANDSHAKE_PREFIX}` };
  const fields = new Map<string, string>();
  // Fields are separated by spaces (tabs tolerated); values hold no whitespace or control characters.
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(line)) return { ok: false, reason: "the line contains a control character" };
  for (const token of line.slice(HANDSHAKE_PREFIX.length).split(/[ \t]+/).filter(Boolean)) {
    const eq = token.indexOf("=");
    if (eq <= 0) {
      const hint = token.includes("/") ? " (a value cannot contain spaces: does the socket path hold one?)" : "";
      return { ok: false, reason: `field '${token}' is not key=value${hint}` };
    }
    const key = token.slice(0, eq);
    if (fields.has(key)) return { ok: false, reason: `field '${key}' appears twice` };
    fields.set(key, token.slice(eq + 1));
  }
  for (const key of ["protocol", "network", "address", "transport"]) {
    if (!fields.get(key)) return { ok: false, reason: `required field '${key}' is missing or empty` };
  }
  const protocol = fields.get("protocol")!;
  if (!/^[0-9]+$/.test(protocol)) return { ok: false, reason: `protocol '${protocol}' is not a whole number` };
  const protocolVersion = Number(protocol);
  if (!acceptedVersions.includes(protocolVersion)) {
    return {
      ok: false,
      reason: `protocol version ${protocolVersion} is not one the host accepts (${acceptedVersions.join(", ")})`,
      versionMismatch: true,
    };
  }
  const network = fields.get("network")!;
  if (network !== "unix" && network !== "tcp") {
    return { ok: false, reason: `network '${network}' is not supported (use unix, or tcp on loopback)` };
  }
  const transport = fields.get("transport")!;
  if (transport !== "grpc") return { ok: false, reason: `transport '${transport}' is not supported (use grpc)` };
  const address = fields.get("address")!;
  if (network === "unix" && !address.startsWith("/")) {
    return { ok: false, reason: `unix address '${address}' is not an absolute path` };
  }
  if (network === "tcp") {
    const loopback = /^(127(?:\.[0-9]{1,3}){3}|\[::1\]|localhost):([0-9]{1,5})$/.exec(address);
    const port = Number(loopback?.[2]);
    if (!loopback || loopback[1]!.split(".").some((octet) => Number(octet) > 255) || port < 1 || port > 65535) {
      return { ok: false, reason: `tcp address '${address}' is not a loopback host:port` };
    }
  }
  return { ok: true, handshake: { protocolVersion, network, address, transport } };
}

// One field: a lower-case key, "=", then visible characters (no whitespace, no control characters).
const FIELD = /^[a-z0-9_]+=[^\x00-\x20\x7f]+$/u;

/**
 * What breaks the exact grammar in a raw handshake line (as read, before any
 * trailing CR is stripped), or undefined when it is exact:
 * `PLUGWIRE_HANDSHAKE` then fields, each after exactly one space, and
 * nothing after the last field.
 */
export function handshakeLineNoise(raw: string): string | undefined {
  if (raw.endsWith("\r")) return "it ends in a carriage return (CR LF); end it with a bare LF";
  const rest = raw.slice(HANDSHAKE_PREFIX.length);
  const trailing = /\s+$/u.exec(rest)?.[0];
  if (trailing) return `${trailing.length} whitespace character(s) ${JSON.stringify(trailing)} follow its last field`;
  if (!rest.startsWith(" ")) return `no space after ${HANDSHAKE_PREFIX}`;
  const fields = rest.slice(1).split(" ");
  if (fields.some((f) => f === "")) return "two spaces in a row; separate fields with exactly one space";
  const bad = fields.find((f) => !FIELD.test(f));
  if (bad !== undefined) {
    return `${JSON.stringify(bad)} is not a field of the grammar (a lower-case key of a-z, 0-9 and _, '=', then a value without whitespace or control characters)`;
  }
  return undefined;
}
