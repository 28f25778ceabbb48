/** The plugin refuses to run when a human starts it by hand (no magic cookie). */
import { ENV } from "@plugwire/proto";
import type { Session } from "./session.js";
import { describeExit, type ExitSeen } from "./process.js";
import { fail, pass, type Check, type Outcome } from "./types.js";
import { quote } from "./util.js";

/** How long a plugin started without the cookie may take to give up, at least (slow machines start slowly). */
const COOKIE_EXIT_MIN_MS = 5_000;

const HOW = "check PLUGWIRE_MAGIC_COOKIE before anything else (docs/protocol.md §2)";

export const cookieCheck: Check = {
  id: "cookie",
  title: "refuses to run without the magic cookie",
  async run(session: Session): Promise<Outcome> {
    const waitMs = Math.max(session.timeoutMs, COOKIE_EXIT_MIN_MS);
    const proc = session.launch("probe", { unset: [ENV.magicCookie] });
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      proc.exited.then((exit) => ({ kind: "exited" as const, exit })),
      proc.handshake.then(
        () => ({ kind: "handshake" as const }),
        () => new Promise<never>(() => undefined), // a bad line or an exit: the exit decides
      ),
      new Promise<{ kind: "running" }>((resolve) => {
        timer = setTimeout(() => resolve({ kind: "running" }), waitMs);
      }),
    ]);
    clearTimeout(timer);
    await proc.kill(); // it should be gone already; this also reaps anything left in its group
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
