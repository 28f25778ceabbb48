/** The plugin refuses to run when a human starts it by hand (no magic cookie). */
import { ENV } from "@plugwire/proto";
import type { Session } from "./session.js";
import { awaitRefusal, describeExit, type ExitSeen } from "./process.js";
import { fail, pass, type Check, type Outcome } from "./types.js";
import { quote } from "./util.js";

/** How long a plugin that must refuse to run may take to give up, at least (slow machines start slowly). */
const REFUSAL_MIN_MS = 5_000;

/** How long a launch that should refuse to run gets: 5 s, or the timeout if longer. */
export function refusalWaitMs(session: Session): number {
  return Math.max(session.timeoutMs, REFUSAL_MIN_MS);
}

const HOW = "check PLUGWIRE_MAGIC_COOKIE before anything else (docs/protocol.md §2)";

export const cookieCheck: Check = {
  id: "cookie",
  title: "refuses to run without the magic cookie",
  async run(session: Session): Promise<Outcome> {
    const waitMs = refusalWaitMs(session);
    const proc = session.launch("probe", { unset: [ENV.magicCookie] });
    const result = await awaitRefusal(proc, waitMs);
    await session.endProbe(proc); // it should be gone already; this also reaps anything left in its group
    if (result.kind === "handshake") {
      return fail(`started without ${ENV.magicCookie}, it printed a handshake line and served anyway; ${HOW}, then print an explanation to stderr and exit non-zero`);
    }
    if (result.kind === "running") {
      return fail(`started without ${ENV.magicCookie}, it was still running after ${waitMs} ms; ${HOW} and exit non-zero at once`);
    }
    return judgeExit(result.exit, proc.stderrTail(20).join("\n"));
  },
};

function judgeExit(exit: ExitSeen, stderr: string): Outcome {
  if (exit.spawnError) return fail(`the command ${describeExit(exit)}; check the command and its path`);
  if (exit.code === 0) {
    return fail(`started without ${ENV.magicCookie}, it exited with code 0; exit non-zero so a user sees it did not run`);
  }
  if (stderr.trim() === "") {
    return fail(`it ${describeExit(exit)} but wrote nothing to stderr; print a human explanation such as "This is a plugwire plugin; it is started by a plugwire host, not run directly."`);
  }
  if (!/plugin/i.test(stderr) || !/host/i.test(stderr)) {
    return fail(`its stderr ${quote(stderr)} does not say it is a plugin started by a host; print e.g. "This is a plugwire plugin; it is started by a plugwire host, not run directly."`);
  }
  return pass(`${describeExit(exit)} and explained on stderr: ${quote(stderr.split("\n")[0] ?? "", 130)}`);
}
