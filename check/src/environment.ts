/**
 * What a plugin does with the environment a host gives it (docs/protocol.md
 * §1, §3, §4, §6): it refuses a missing, empty or malformed PLUGWIRE_*
 * variable and a missing or malformed token line on stdin, starts with the
 * legacy PLUGWIRE_AUTH_TOKEN, does not need PLUGWIRE_PLUGIN_NAME, and chooses the highest protocol
 * version it shares with the host, or refuses clearly when there is none.
 * Each case is a launch of its own, a few at a time.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ENV, MAX_SOCKET_PATH_BYTES, PROTOCOL_VERSION, TOKEN_LINE_PREFIX } from "@plugwire/proto";
import { refusalWaitMs } from "./cookie.js";
import { awaitRefusal, describeExit, type PluginProcess, type RefusalSeen } from "./process.js";
import type { Session } from "./session.js";
import { fail, pass, type Check, type Outcome } from "./types.js";
import { quote } from "./util.js";

/** Launches of one check that run at the same time. */
const CONCURRENT_LAUNCHES = 4;
/** The variables a plugin must refuse to start without (PLUGWIRE_PLUGIN_NAME is not one). */
const REQUIRED = [ENV.protocolVersions, ENV.socketDir, ENV.authTokenSource, ENV.instanceId, ENV.hostAddress] as const;
/** Socket path length of the over-long case: over the limit, still short enough to bind on Linux. */
const OVERLONG_SOCKET_PATH_BYTES = MAX_SOCKET_PATH_BYTES + 2;

type Changes = Parameters<Session["launch"]>[1];

/** One launch with a changed environment, and what the plugin must do with it. */
interface EnvCase {
  /** "without PLUGWIRE_AUTH_TOKEN", for details. */
  what: string;
  changes: (session: Session) => NonNullable<Changes>;
}

/** Runs `cases` a few at a time; each gets its launch and what came of it. */
async function runLaunches<T>(cases: readonly T[], launch: (c: T) => Promise<string | undefined>): Promise<Array<{ c: T; problem?: string }>> {
  const results: Array<{ c: T; problem?: string }> = [];
  for (let i = 0; i < cases.length; i += CONCURRENT_LAUNCHES) {
    const slice = cases.slice(i, i + CONCURRENT_LAUNCHES);
    results.push(...(await Promise.all(slice.map(async (c) => ({ c, problem: await launch(c) })))));
  }
  return results;
}

/** Why a launch that should refuse did not, or undefined when it refused: a non-zero exit with a word on stderr and no handshake. */
function refusalProblem(seen: RefusalSeen, proc: PluginProcess, waitMs: number): string | undefined {
  if (seen.kind === "handshake") return `it printed a handshake line and served (${quote(seen.line, 80)})`;
  if (seen.kind === "running") return `it was still running after ${waitMs} ms`;
  if (seen.exit.spawnError) return `the command ${describeExit(seen.exit)}`;
  if (seen.exit.code === 0) return "it exited with code 0";
  if (proc.stderrTail(20).join("").trim() === "") return `it ${describeExit(seen.exit)} without a word on stderr`;
  return undefined;
}

async function refuses(session: Session, changes: NonNullable<Changes>): Promise<{ proc: PluginProcess; problem?: string }> {
  const waitMs = refusalWaitMs(session);
  const proc = session.launch("probe", changes);
  const seen = await awaitRefusal(proc, waitMs);
  await session.endProbe(proc);
  return { proc, problem: refusalProblem(seen, proc, waitMs) };
}

/** A socket dir, made inside the run dir, whose socket path for `instanceId` is `bytes` long. */
function socketDirOfLength(session: Session, instanceId: string, bytes: number): string {
  const fixed = Buffer.byteLength(join(session.runDir, "d", `${instanceId}.sock`)) - 1;
  const dir = join(session.runDir, "d".repeat(Math.max(1, bytes - fixed)));
  mkdirSync(dir, { mode: 0o700, recursive: true });
  return dir;
}

function refusalCases(): EnvCase[] {
  const cases: EnvCase[] = [];
  for (const name of REQUIRED) {
    cases.push({ what: `without ${name}`, changes: () => ({ unset: [name] }) });
    cases.push({ what: `with ${name} empty`, changes: () => ({ override: { [name]: "" } }) });
  }
  // The token (§6): where PLUGWIRE_AUTH_TOKEN_SOURCE says, and nowhere else.
  cases.push({ what: `with ${ENV.authTokenSource}=env and no ${ENV.authToken}`, changes: () => ({ tokenVia: "env", unset: [ENV.authToken] }) });
  cases.push({ what: `with ${ENV.authTokenSource}=env and ${ENV.authToken} empty`, changes: () => ({ tokenVia: "env", override: { [ENV.authToken]: "" } }) });
  cases.push({ what: `with ${ENV.authTokenSource}="file" (neither stdin nor env)`, changes: () => ({ override: { [ENV.authTokenSource]: "file" } }) });
  cases.push({ what: "with stdin closed before any token line", changes: () => ({ stdinLine: null, closeStdinAtOnce: true }) });
  cases.push({ what: `with a first stdin line that is not '${TOKEN_LINE_PREFIX} <token>'`, changes: () => ({ stdinLine: "hello\n" }) });
  cases.push({ what: `with an empty token on the '${TOKEN_LINE_PREFIX}' line`, changes: () => ({ stdinLine: `${TOKEN_LINE_PREFIX} \n` }) });
  for (const versions of ["1,abc", "1,,2"]) {
    cases.push({ what: `with ${ENV.protocolVersions}=${JSON.stringify(versions)} (malformed)`, changes: () => ({ protocolVersions: versions }) });
  }
  cases.push({
    what: `with a socket path of ${OVERLONG_SOCKET_PATH_BYTES} bytes (over ${MAX_SOCKET_PATH_BYTES})`,
    changes: (session) => {
      const instanceId = session.nextInstanceId();
      return { instanceId, socketDir: socketDirOfLength(session, instanceId, OVERLONG_SOCKET_PATH_BYTES) };
    },
  });
  return cases;
}

export const envCheck: Check = {
  id: "env",
  title: "refuses a missing, empty or malformed PLUGWIRE_* variable, and does not need PLUGWIRE_PLUGIN_NAME",
  // A plugin that cannot start with every variable set shows nothing by refusing a broken set.
  needs: ["handshake"],
  async run(session: Session): Promise<Outcome> {
    await session.retireMain();
    const cases = refusalCases();
    const results = await runLaunches(cases, async (c) => (await refuses(session, c.changes(session))).problem);
    const problems = results.filter((r) => r.problem).map((r) => `${r.c.what}, ${r.problem}`);

    // The one variable a plugin must not require.
    const named = session.launch("probe", { unset: [ENV.pluginName] });
    try {
      await session.handshakeOf(named);
    } catch (e) {
      problems.push(`without ${ENV.pluginName}, which a plugin must not require, it did not start: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await session.endProbe(named);
    }
    // The legacy token variable, which a host configured with tokenVia: env passes.
    const legacy = session.launch("probe", { tokenVia: "env" });
    try {
      await session.handshakeOf(legacy);
    } catch (e) {
      problems.push(
        `with ${ENV.authTokenSource}=env and the token in ${ENV.authToken} (a host's legacy tokenVia: env), it did not start: ${e instanceof Error ? e.message : String(e)}`,
      );
    } finally {
      await session.endProbe(legacy);
    }

    if (problems.length > 0) {
      const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : "";
      return fail(
        `${problems.slice(0, 3).join("; ")}${more}. Before listening, check each of ${REQUIRED.join(", ")}: when one is missing, empty or malformed ` +
          `(a version list that is not decimal numbers separated by commas, a socket path over ${MAX_SOCKET_PATH_BYTES} bytes), ` +
          `and when the token is not where ${ENV.authTokenSource} says (stdin: a first line '${TOKEN_LINE_PREFIX} <token>'; env: ${ENV.authToken}), ` +
          `print a one-line explanation on stderr and exit non-zero (docs/protocol.md §1, §3, §4, §6)`,
      );
    }
    return pass(
      `refused all ${cases.length} broken environments (each required variable missing, then empty; a missing, empty or misplaced token; a malformed version list; an over-long socket path) ` +
        `with a non-zero exit and a message; started without ${ENV.pluginName}, and with the legacy ${ENV.authToken}`,
    );
  },
};

/** Versions offered in the negotiation case, highest first, with whitespace: the plugin must choose the kit's. */
const OFFERED_WITH_NEWER = [PROTOCOL_VERSION + 1, PROTOCOL_VERSION];
/** Versions no plugin speaks. */
const OFFERED_UNKNOWN = [PROTOCOL_VERSION + 98, PROTOCOL_VERSION + 99];

export const protocolVersionCheck: Check = {
  id: "protocol-version",
  title: "chooses the highest protocol version it shares with the host, and refuses clearly when there is none",
  needs: ["handshake"],
  async run(session: Session): Promise<Outcome> {
    await session.retireMain();
    const offered = OFFERED_WITH_NEWER.join(", ");
    const [chosen, refusal] = await Promise.all([
      (async (): Promise<{ version?: number; problem?: string }> => {
        const proc = session.launch("probe", { protocolVersions: offered, acceptVersions: OFFERED_WITH_NEWER });
        try {
          return { version: (await session.handshakeOf(proc)).handshake.protocolVersion };
        } catch (e) {
          return { problem: e instanceof Error ? e.message : String(e) };
        } finally {
          await session.endProbe(proc);
        }
      })(),
      refuses(session, { protocolVersions: OFFERED_UNKNOWN.join(",") }),
    ]);
    const problems: string[] = [];
    if (chosen.problem) {
      problems.push(`offered ${ENV.protocolVersions}=${JSON.stringify(offered)}, it did not start: ${chosen.problem}`);
    } else if (chosen.version !== PROTOCOL_VERSION) {
      problems.push(
        `offered ${JSON.stringify(offered)}, it chose protocol=${chosen.version}, which it cannot speak (protocol ${PROTOCOL_VERSION} is the only one there is); ` +
          `choose the highest version that is both offered and one the plugin implements`,
      );
    }
    const unknown = OFFERED_UNKNOWN.join(",");
    if (refusal.problem) {
      problems.push(`offered only ${JSON.stringify(unknown)}, ${refusal.problem}; with no version in common, print an error that names both sets on stderr and exit non-zero`);
    } else {
      const stderr = refusal.proc.stderrTail(20).join(" ");
      if (!stderr.includes(String(OFFERED_UNKNOWN[0]))) {
        problems.push(`offered only ${JSON.stringify(unknown)}, it exited but its stderr ${quote(stderr, 100)} does not name the versions offered; name both sets`);
      }
    }
    if (problems.length > 0) return fail(`${problems.join("; ")} (docs/protocol.md §3)`);
    return pass(
      `offered ${JSON.stringify(offered)}, it chose protocol=${PROTOCOL_VERSION}; offered ${JSON.stringify(unknown)}, it refused: ${quote(refusal.proc.stderrTail(3).join(" "), 110)}`,
    );
  },
};
