/** The plugin's own HostService calls carry its token. */
import type { HostCall } from "./host-stub.js";
import type { Session } from "./session.js";
import { fail, pass, skip, type Check, type Outcome } from "./types.js";

/** "LookupName×150, WatchPeers×1" */
function summarize(calls: readonly HostCall[]): string {
  const counts = new Map<string, number>();
  for (const c of calls) counts.set(c.method, (counts.get(c.method) ?? 0) + 1);
  return [...counts].map(([method, n]) => `${method}×${n}`).join(", ");
}

export const hostCallsCheck: Check = {
  id: "host-calls",
  title: "its HostService calls carry the auth token",
  needs: ["handshake"],
  async run(session: Session): Promise<Outcome> {
    const calls = [...session.host.calls];
    if (calls.length === 0) return skip("the plugin made no host calls, so there is nothing to check");
    const refused = calls.filter((c) => c.token !== "valid");
    if (refused.length > 0) {
      const missing = refused.filter((c) => c.token === "missing").length;
      const why = missing === refused.length ? "no authorization metadata" : missing === 0 ? "a wrong token" : "no or a wrong token";
      return fail(
        `${refused.length} of ${calls.length} host call(s) carried ${why} and were refused as UNAUTHENTICATED (${summarize(refused)}); ` +
          `attach 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>' to every HostService call, streams such as WatchPeers included`,
      );
    }
    return pass(`${calls.length} call(s) (${summarize(calls)}), all with the token`);
  },
};
