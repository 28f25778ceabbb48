/** The handshake line, and the socket it names. */
import { lstatSync } from "node:fs";
import { isAbsolute, join, relative } from "node:path";
import { ENV, HANDSHAKE_PREFIX, PROTOCOL_VERSION } from "@plugwire/proto";
import { handshakeLineNoise } from "./handshake-line.js";
import { HandshakeProblem } from "./process.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, type Check, type Outcome } from "./types.js";
import { ms, quote } from "./util.js";

const EXPECTED_LINE = `${HANDSHAKE_PREFIX} protocol=${PROTOCOL_VERSION} network=unix address=<${ENV.socketDir}>/<${ENV.instanceId}>.sock transport=grpc`;

export const handshakeCheck: Check = {
  id: "handshake",
  title: "prints a well-formed handshake line within the timeout",
  async run(session: Session): Promise<Outcome> {
    const proc = session.launch("main");
    session.main = { proc };
    try {
      const seen = await session.handshakeOf(proc);
      session.main.seen = seen;
      session.main.conn = session.dial(proc, seen);
      const noise = seen.linesBefore > 0 ? ` (${seen.linesBefore} stdout line(s) before it were ignored, as a host does)` : "";
      return pass(`"${seen.line}" after ${ms(seen.afterMs)}${noise}`);
    } catch (e) {
      if (e instanceof HandshakeProblem && e.kind === "malformed") {
        return fail(`${e.message}; print exactly one line "${EXPECTED_LINE}" on stdout once the server listens`);
      }
      if (e instanceof HandshakeProblem) {
        return fail(`${e.message} Fix that crash first: with every PLUGWIRE_* variable set, the plugin must start, listen and print its handshake`);
      }
      if (e instanceof CheckFailure) {
        return fail(
          `no handshake line within ${ms(session.timeoutMs)}: once listening, print "${EXPECTED_LINE}" and flush stdout (Python buffers a piped stdout); raise --timeout-ms if the plugin is just slow.${proc.stderrHint()}`,
        );
      }
      throw e;
    }
  },
};

export const socketCheck: Check = {
  id: "socket",
  title: "listens on a private socket inside PLUGWIRE_SOCKET_DIR",
  needs: ["handshake"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const { seen, proc } = session.main!;
    const { handshake } = seen!;
    if (handshake.network !== "unix") {
      return fail(`the handshake says network=${handshake.network}; protocol 1 plugins listen on a unix socket at ${proc.socketPath}`);
    }
    const where = relative(session.runDir, handshake.address);
    if (where === "" || where.startsWith("..") || isAbsolute(where)) {
      return fail(`the socket ${handshake.address} is outside ${ENV.socketDir} (${session.runDir}); listen on ${ENV.socketDir}/${ENV.instanceId}.sock`);
    }
    let stat;
    try {
      stat = lstatSync(handshake.address);
    } catch (e) {
      return fail(`the handshake names ${handshake.address}, but it does not exist (${(e as NodeJS.ErrnoException).code}); print the handshake only once the server listens`);
    }
    if (!stat.isSocket()) return fail(`${handshake.address} is not a unix socket`);
    const mode = stat.mode & 0o777;
    if ((mode & 0o077) !== 0) {
      return fail(`the socket's mode is 0${mode.toString(8)}, open to group/others; chmod it to 0600 right after listening (or listen under umask 0177)`);
    }
    const expected = join(session.runDir, `${proc.request.instanceId}.sock`);
    const name = handshake.address === expected ? "" : ` (the spec names it ${expected})`;
    return pass(`${handshake.address}, mode 0${mode.toString(8)}${name}`);
  },
};

export const handshakeOnceCheck: Check = {
  id: "handshake-once",
  title: "prints exactly one handshake line, with nothing after its last field",
  needs: ["handshake"],
  async run(session: Session): Promise<Outcome> {
    // Judged late, so that a second line printed any time during the main launch is seen.
    const lines = session.main!.proc.handshakeLines;
    if (lines.length > 1) {
      return fail(
        `it printed ${lines.length} handshake lines on stdout; the second was ${quote(lines[1]!)}. Print exactly one, once the server listens; ` +
          `later stdout lines are logs and must not start with ${HANDSHAKE_PREFIX}`,
      );
    }
    const noise = handshakeLineNoise(lines[0]!);
    if (noise) {
      return fail(
        `its handshake line ${JSON.stringify(lines[0])} is not exactly the grammar: ${noise}. A host reads it leniently, but write exactly ` +
          `"${EXPECTED_LINE}" and a bare LF: fields after single spaces, nothing after the last one (docs/protocol.md §5)`,
      );
    }
    return pass("one handshake line in the whole main launch, exactly as the grammar says");
  },
};
