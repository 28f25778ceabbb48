/** Calls without the launch's token are refused with UNAUTHENTICATED. */
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { PROTOCOL_VERSION, PluginService, connect, health, serviceDefinition } from "@plugwire/proto";
import { targetOf } from "./dial.js";
import type { Session } from "./session.js";
import { fail, pass, type Check, type Outcome } from "./types.js";
import { grpcCodeOf, statusName } from "./util.js";

/** How a refused call ended: its status, or OK when it was served. */
type Ending = grpc.status;

/** Describe with no `authorization` metadata at all. */
function describeWithoutMetadata(target: string, deadlineMs: number): Promise<Ending> {
  const method = serviceDefinition(PluginService).describe!;
  const client = new grpc.Client(target, grpc.credentials.createInsecure());
  return new Promise<Ending>((resolve) => {
    client.makeUnaryRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { protocolVersion: PROTOCOL_VERSION },
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (err) => {
        client.close();
        resolve(err ? err.code : grpc.status.OK);
      },
    );
  });
}

function ending(p: Promise<unknown>): Promise<Ending> {
  return p.then(
    () => grpc.status.OK,
    (e: unknown) => grpcCodeOf(e) ?? grpc.status.UNKNOWN,
  );
}

/** A server stream read to its end. */
function streamEnding(stream: grpc.ClientReadableStream<unknown>): Promise<Ending> {
  return new Promise<Ending>((resolve) => {
    stream.on("data", () => undefined);
    stream.on("status", (s: grpc.StatusObject) => resolve(s.code));
    stream.on("error", () => undefined); // the status event carries the code
  });
}

/** A stream that stays open when served (Watch): its first message counts as served, and the kit cancels it. */
function openStreamEnding(stream: grpc.ClientReadableStream<unknown>): Promise<Ending> {
  return new Promise<Ending>((resolve) => {
    stream.once("data", () => {
      resolve(grpc.status.OK);
      stream.cancel();
    });
    stream.on("status", (s: grpc.StatusObject) => resolve(s.code));
    stream.on("error", () => undefined); // the status event carries the code
  });
}

/** Deliver opened, half-closed at once, and read to its status. Sends no payload. */
function deliverEnding<T>(stream: grpc.ClientDuplexStream<T, unknown>): Promise<Ending> {
  const ended = streamEnding(stream);
  stream.end();
  return ended;
}

export const authCheck: Check = {
  id: "auth",
  title: "refuses calls without the auth token (UNAUTHENTICATED)",
  needs: ["handshake"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const target = targetOf(session.main!.seen!.handshake);
    const wrong = `wrong-${randomBytes(12).toString("base64url")}`;
    const plugin = connect(PluginService, target, { token: wrong });
    const healthConn = connect(health.Health, target, { token: wrong });
    const deadlineMs = session.timeoutMs;
    try {
      const probes: Array<[string, Promise<Ending>]> = [
        ["Describe with no token", describeWithoutMetadata(target, deadlineMs)],
        ["Describe with a wrong token", ending(plugin.client.describe({ protocolVersion: PROTOCOL_VERSION }, { deadlineMs }))],
        ["Health.Check with a wrong token", ending(healthConn.client.check({ service: "" }, { deadlineMs }))],
        ["Health.Watch (a server stream) with a wrong token", openStreamEnding(healthConn.client.watch({ service: "" }, { deadlineMs }))],
        ["Snapshot (a server stream) with a wrong token", streamEnding(plugin.client.snapshot({}, { deadlineMs }))],
        ["Deliver (a bidi stream) with a wrong token", deliverEnding(plugin.client.deliver({ deadlineMs }))],
      ];
      const results = await Promise.all(probes.map(async ([what, p]) => [what, await p] as const));
      const wrongly = results.filter(([, code]) => code !== grpc.status.UNAUTHENTICATED);
      if (wrongly.length > 0) {
        const list = wrongly.map(([what, code]) => `${what} got ${statusName(code)}`).join("; ");
        return fail(
          `${list}. Check 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>' on every call, Health and streams included, before the handler runs (Go: unary and stream interceptors; Python: a grpc.ServerInterceptor)`,
        );
      }
      return pass(`${results.length} calls without a valid token (Describe ×2, Health.Check, Health.Watch, Snapshot, Deliver) all got UNAUTHENTICATED`);
    } finally {
      plugin.close();
      healthConn.close();
    }
  },
};
