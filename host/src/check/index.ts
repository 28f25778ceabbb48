/** The conformance kit behind `plugwire check`. */
export { runCheck, DEFAULT_TIMEOUT_MS, DEFAULT_EXIT_MARGIN_MS } from "./runner.js";
export type { CheckOptions } from "./runner.js";
export type { CheckReport, CheckResult, CheckStatus, Timings } from "./types.js";
export { CHECKS } from "./checks.js";
export { formatJson, formatResult, formatSummary, formatTimings } from "./report.js";
export { checkCommand, CHECK_USAGE } from "./cli.js";
