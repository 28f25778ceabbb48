/**
 * HostService calls and the token: every call the plugin made carried it,
 * and calls without it are refused. A plugin that made no host calls of its
 * own still gets the second half, made through the kit's HostService on its
 * behalf, so the line never depends on whether the plugin happened to call.
 */
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { HostService, connect, serviceDefinition } from "@plugwire/proto";
import { KNOWN_PEER, type HostCall } from "./host-stub.js";
import type { Session } from "./session.js";
import { fail, pass, type Check, type Outcome } from "./types.js";
import { grpcCodeOf, statusName } from "./util.js";

/** "LookupName×150, WatchPeers×1" */
function summarize(calls: readonly HostCall[]): string {
  const counts = new Map<string, number>();
  for (const c of calls) counts.set(c.method, (counts.get(c.method) ?? 0) + 1);
  return [...counts].map(([method, n]) => `${method}×${n}`).join(", ");
}

/** LookupName with no authorization metadata at all; resolves with the status it ended with. */
function lookupWithoutToken(target: string, deadlineMs: number): Promise<grpc.status> {
  const method = serviceDefinition(HostService).lookupName!;
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, { nodeId: KNOWN_PEER }, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err) => {
      client.close();
      resolve(err ? err.code : grpc.status.OK);
    });
  });
}

/** LookupName with a token no launch has; resolves with the status it ended with. */
async function lookupWithWrongToken(target: string, deadlineMs: number): Promise<grpc.status> {
  const wrong = connect(HostService, target, { token: `wrong-${randomBytes(12).toString("base64url")}` });
  try {
    await wrong.client.lookupName({ nodeId: KNOWN_PEER }, { deadlineMs });
    return grpc.status.OK;
  } catch (e) {
    return grpcCodeOf(e) ?? grpc.status.UNKNOWN;
  } finally {
    wrong.close();
  }
}

export const hostCallsCheck: Check = {
  id: "host-calls",
  title: "HostService calls carry the auth token, and calls without it are refused",
  needs: ["handshake"],
  async run(session: Session): Promise<Outcome> {
    const calls = [...session.host.calls];
    if (calls.length === 0) {
      // Through the kit's HostService, on the plugin's behalf: what its calls would meet without the token.
      const target = session.host.address;
      const endings = await Promise.all([lookupWithoutToken(target, session.timeoutMs), lookupWithWrongToken(target, session.timeoutMs)]);
      const wrongly = endings.filter((code) => code !== grpc.status.UNAUTHENTICATED);
      if (wrongly.length > 0) {
        return fail(`the check itself failed unexpectedly (please report this): a HostService call without a valid token got ${statusName(wrongly[0])}`);
      }
      return pass(
        "the plugin made no host calls of its own; made on its behalf, a LookupName without the token and one with a wrong token were both refused " +
          "(UNAUTHENTICATED), as a host refuses them: attach 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>' to every HostService call you add",
      );
    }
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
