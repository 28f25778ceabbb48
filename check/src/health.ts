/**
 * grpc.health.v1 beyond Check: Watch answers with the current status and
 * stays open (docs/protocol.md §7), and Health stops saying SERVING once
 * Shutdown has begun (§12).
 */
import * as grpc from "@grpc/grpc-js";
import { health } from "@plugwire/proto";
import type { DialedPlugin } from "./dial.js";
import type { Session } from "./session.js";
import { CheckFailure, fail, pass, skip, type Check, type Outcome } from "./types.js";
import { describeFailure, grpcCodeOf, statusName, withTimeout } from "./util.js";

const { SERVING } = health.HealthCheckResponse_ServingStatus;

export function servingStatusName(status: health.HealthCheckResponse_ServingStatus): string {
  return health.HealthCheckResponse_ServingStatus[status] ?? String(status);
}

const HOW_TO_WATCH =
  "implement grpc.health.v1.Health/Watch: send the current status at once, then a message whenever it changes, and keep the stream open until the host cancels it";

export const healthWatchCheck: Check = {
  id: "health-watch",
  title: "Health.Watch sends the current status at once and keeps the stream open",
  needs: ["start"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const conn = session.main!.conn!;
    const stream = conn.health.watch({ service: "" });
    let ended: string | undefined;
    stream.on("status", (s: grpc.StatusObject) => (ended ??= `${statusName(s.code)}${s.details ? `: ${s.details}` : ""}`));
    stream.on("error", () => undefined); // the status event says how it ended
    try {
      const first = await withTimeout(
        new Promise<health.HealthCheckResponse>((resolve, reject) => {
          stream.once("data", resolve);
          stream.once("status", () => reject(new CheckFailure(`Health.Watch("") ended (${ended}) without sending a status`)));
        }),
        session.timeoutMs,
        `a first message on Health.Watch("")`,
      );
      if (first.status !== SERVING) {
        return fail(`Health.Watch("") first sent ${servingStatusName(first.status)} while Check says SERVING; send the current status first`);
      }
      // A round trip on the same connection: a Watch that ends right after its first message has ended by now.
      await conn.health.check({ service: "" }, { deadlineMs: session.timeoutMs });
      if (ended !== undefined) return fail(`Health.Watch("") sent SERVING and then ended the stream (${ended}); ${HOW_TO_WATCH}`);
      return pass(`Health.Watch("") sent SERVING at once and kept the stream open`);
    } catch (e) {
      if (e instanceof CheckFailure) return fail(`${e.message}; ${HOW_TO_WATCH}`);
      return fail(`Health.Watch("") failed: ${describeFailure(e)}; ${HOW_TO_WATCH}`);
    } finally {
      stream.cancel();
    }
  },
};

/** How long after its Shutdown reply the kit keeps asking a plugin that has not exited yet for its health, in ms. */
export const AFTER_SHUTDOWN_POLL_MS = 1_000;
/** Deadline of each of those checks, in ms. */
const AFTER_SHUTDOWN_CHECK_DEADLINE_MS = 250;

/**
 * Asks Health.Check again and again, from the Shutdown reply until the
 * plugin has exited, a check fails, or `AFTER_SHUTDOWN_POLL_MS` passed.
 */
export async function healthAfterShutdown(
  check: () => Promise<health.HealthCheckResponse>,
  exited: () => boolean,
): Promise<{ statuses: string[]; ended?: string }> {
  const statuses: string[] = [];
  const until = Date.now() + AFTER_SHUTDOWN_POLL_MS;
  while (!exited() && Date.now() < until) {
    try {
      statuses.push(servingStatusName((await check()).status));
    } catch (e) {
      return { statuses, ended: `a check then failed with ${statusName(grpcCodeOf(e))}` };
    }
  }
  return { statuses, ended: exited() ? "the plugin exited" : `it was still answering ${AFTER_SHUTDOWN_POLL_MS} ms after the reply` };
}

/** A short Health.Check, for healthAfterShutdown. */
export function quickCheck(conn: DialedPlugin): () => Promise<health.HealthCheckResponse> {
  return () => conn.health.check({ service: "" }, { deadlineMs: AFTER_SHUTDOWN_CHECK_DEADLINE_MS });
}

export const healthAfterShutdownCheck: Check = {
  id: "health-after-shutdown",
  title: "Health stops answering SERVING once Shutdown has begun",
  needs: ["shutdown"],
  async run(session: Session): Promise<Outcome> {
    const seen = session.afterShutdown;
    if (!seen) return skip("'shutdown' did not reach the Shutdown reply");
    const serving = seen.statuses.filter((s) => s === servingStatusName(SERVING)).length;
    if (serving > 0) {
      return fail(
        `after its Shutdown reply, Health.Check still answered SERVING (${serving} of ${seen.statuses.length} checks; then ${seen.ended}); ` +
          `switch Health to NOT_SERVING as soon as Shutdown begins, before cleaning up and replying (Watch streams get NOT_SERVING too)`,
      );
    }
    if (seen.statuses.length === 0) return pass(`no check after the Shutdown reply got an answer (${seen.ended}): the plugin was already leaving`);
    return pass(`checks after the Shutdown reply answered ${[...new Set(seen.statuses)].join(", ")}; then ${seen.ended}`);
  },
};
