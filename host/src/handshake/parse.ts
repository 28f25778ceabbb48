/**
 * Pure parsing and validation of the handshake line a plugin prints on
 * stdout. No I/O. Grammar (docs/protocol.md):
 *
 *   PLUGWIRE_HANDSHAKE SP field *(SP field)
 *   field = key "=" value      ; keys in any order, unknown keys ignored
 *
 * Required keys: protocol, network (unix | tcp), address, transport (grpc).
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

/** The longest refusal reason, in characters: a value a plugin printed is quoted at most this long. */
export const MAX_HANDSHAKE_REASON_CHARS = 512;
const MAX_QUOTED_CHARS = 120;

/** A plugin-supplied value as a refusal quotes it: cut to MAX_QUOTED_CHARS, with its length when cut. */
function q(value: string): string {
  return value.length <= MAX_QUOTED_CHARS ? value : `${value.slice(0, MAX_QUOTED_CHARS)}…(${value.length} characters)`;
}

/** True when the line is meant as a handshake (well-formed or not). */
export function isHandshakeLine(line: string): boolean {
  // Tabs are tolerated wherever spaces separate fields, this first one included.
  return line === HANDSHAKE_PREFIX || line.startsWith(`${HANDSHAKE_PREFIX} `) || line.startsWith(`${HANDSHAKE_PREFIX}\t`);
}

/** Parses a handshake line and checks it against the versions the host accepts. */
export function parseHandshake(line: string, acceptedVersions: readonly number[]): HandshakeResult {
  if (!isHandshakeLine(line)) return { ok: false, reason: `the line does not start with ${HANDSHAKE_PREFIX}` };
  const fields = new Map<string, string>();
  // Fields are separated by spaces (tabs tolerated); values hold no whitespace or control characters.
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(line)) return { ok: false, reason: "the line contains a control character" };
  for (const token of line.slice(HANDSHAKE_PREFIX.length).split(/[ \t]+/).filter(Boolean)) {
    const eq = token.indexOf("=");
    if (eq <= 0) {
      const hint = token.includes("/") ? " (a value cannot contain spaces: does the socket path hold one?)" : "";
      return { ok: false, reason: `field '${q(token)}' is not key=value${hint}` };
    }
    const key = token.slice(0, eq);
    if (!/^[a-z0-9_]+$/.test(key)) return { ok: false, reason: `field key '${q(key)}' is not made of lower-case a-z, 0-9 and _` };
    if (fields.has(key)) return { ok: false, reason: `field '${q(key)}' appears twice` };
    fields.set(key, token.slice(eq + 1));
  }
  for (const key of ["protocol", "network", "address", "transport"]) {
    if (!fields.get(key)) return { ok: false, reason: `required field '${key}' is missing or empty` };
  }
  const protocol = fields.get("protocol")!;
  if (!/^[0-9]+$/.test(protocol)) return { ok: false, reason: `protocol '${q(protocol)}' is not a whole number` };
  const protocolVersion = Number(protocol);
  if (!acceptedVersions.includes(protocolVersion)) {
    return {
      ok: false,
      reason: `protocol version ${q(protocol)} is not one the host accepts (${acceptedVersions.join(", ")})`,
      versionMismatch: true,
    };
  }
  const network = fields.get("network")!;
  if (network !== "unix" && network !== "tcp") {
    return { ok: false, reason: `network '${q(network)}' is not supported (use unix, or tcp on loopback)` };
  }
  const transport = fields.get("transport")!;
  if (transport !== "grpc") return { ok: false, reason: `transport '${q(transport)}' is not supported (use grpc)` };
  const address = fields.get("address")!;
  if (network === "unix" && !address.startsWith("/")) {
    return { ok: false, reason: `unix address '${q(address)}' is not an absolute path` };
  }
  if (network === "tcp") {
    const loopback = /^(127(?:\.[0-9]{1,3}){3}|\[::1\]|localhost):([0-9]{1,5})$/.exec(address);
    const port = Number(loopback?.[2]);
    if (!loopback || loopback[1]!.split(".").some((octet) => Number(octet) > 255) || port < 1 || port > 65535) {
      return { ok: false, reason: `tcp address '${q(address)}' is not a loopback host:port` };
    }
  }
  return { ok: true, handshake: { protocolVersion, network, address, transport } };
}
