/**
 * @plugwire/check: the plugwire conformance kit. It runs a plugin written in
 * any language the way a host does and checks it against docs/protocol.md.
 * `plugwire check` and `plugwire-check` are its command line.
 */
export { runCheck, DEFAULT_TIMEOUT_MS, DEFAULT_EXIT_MARGIN_MS } from "./runner.js";
export type { CheckOptions } from "./runner.js";
export type { CheckReport, CheckResult, CheckStatus, Timings } from "./types.js";
export { CHECKS } from "./checks.js";
export { formatJson, formatResult, formatSummary, formatTimings } from "./report.js";
export { checkCommand, checkUsage } from "./cli.js";
export type { CheckCommandOptions } from "./cli.js";
/** How the kit reads a handshake line: as a host does, and against the exact grammar. */
export { parseHandshakeLine, handshakeLineNoise, isHandshakeLine } from "./handshake-line.js";
export type { Handshake, HandshakeResult } from "./handshake-line.js";
