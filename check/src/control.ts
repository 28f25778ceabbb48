/** The unary control calls a host makes before delivering: Describe, Start (plus Health). */
import { PROTOCOL_VERSION, describeProblems as limitProblems, health, type DescribeResponse } from "@plugwire/proto";
import type { Session } from "./session.js";
import { fail, pass, skip, type Check, type Outcome } from "./types.js";
import { describeFailure, ms } from "./util.js";

const SERVING = health.HealthCheckResponse_ServingStatus.SERVING;

/** What is wrong with a Describe answer, one phrase per problem. */
function describeProblems(d: DescribeResponse, handshakeVersion: number): string[] {
  const problems: string[] = [];
  if (!d.name) problems.push("name is empty (return a stable name such as 'my-plugin')");
  // No kinds at all is fine: a watch-only plugin gets forgotten peers and no payloads, as a host runs it.
  if (d.payloadKinds.some((k) => k === "")) problems.push("payload_kinds contains an empty string");
  if (d.protocolVersion !== handshakeVersion) {
    problems.push(`protocol_version is ${d.protocolVersion} but the handshake said protocol=${handshakeVersion} (report the version you chose)`);
  }
  if (d.stateful) {
    if (!d.stateful.id) problems.push("stateful.id is empty (set a stable id, or leave stateful out if the plugin keeps no state)");
    if (d.stateful.snapshotVersions.length === 0) problems.push("stateful.snapshot_versions is empty (list the versions Restore reads)");
  }
  if (!d.sdk?.language) problems.push("sdk.language is not set (e.g. 'python', 'go')");
  // The limits a host refuses a Describe past (docs/protocol.md §13); the empty cases are reported above.
  for (const p of limitProblems({ name: d.name || "x", payloadKinds: d.payloadKinds, stateful: d.stateful })) {
    if (!/ is empty$|lists no snapshot versions|stateful id is empty/.test(p)) problems.push(`${p} (a host refuses this; docs/protocol.md §13)`);
  }
  return problems;
}

export const describeCheck: Check = {
  id: "describe",
  title: "Describe answers with a valid description",
  needs: ["handshake"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const main = session.main!;
    const version = main.seen!.handshake.protocolVersion;
    let d: DescribeResponse;
    try {
      d = await main.conn!.plugin.describe({ protocolVersion: PROTOCOL_VERSION }, { deadlineMs: session.timeoutMs });
    } catch (e) {
      return fail(`Describe failed: ${describeFailure(e)}`);
    }
    main.description = d;
    const problems = describeProblems(d, version);
    if (problems.length > 0) return fail(`Describe: ${problems.join("; ")}`);
    const stateful = d.stateful ? `stateful '${d.stateful.id}' v${d.stateful.snapshotVersions.join(",")}` : "not stateful";
    const kinds = d.payloadKinds.length > 0 ? `claims ${d.payloadKinds.join(", ")}` : "claims no payload kinds (watch-only)";
    return pass(`'${d.name}' ${kinds}; ${stateful}; sdk ${d.sdk!.language} ${d.sdk!.version}`);
  },
};

export const startCheck: Check = {
  id: "start",
  title: "accepts Start and then reports SERVING",
  needs: ["handshake"],
  mainLaunch: true,
  async run(session: Session): Promise<Outcome> {
    const main = session.main!;
    if (!main.description) return skip("Describe did not answer, and a host never calls Start before it");
    const conn = main.conn!;
    try {
      await session.start(main.proc, conn);
    } catch (e) {
      return fail(`Start (config "{}", capabilities peers+control+identity) failed: ${describeFailure(e)}.${main.proc.stderrHint()}`);
    }
    try {
      const r = await conn.health.check({ service: "" }, { deadlineMs: session.timeoutMs });
      if (r.status !== SERVING) {
        return fail(`Health.Check("") answered ${health.HealthCheckResponse_ServingStatus[r.status]} after Start; answer SERVING until Shutdown begins`);
      }
    } catch (e) {
      return fail(`Health.Check("") failed after Start: ${describeFailure(e)}; serve grpc.health.v1.Health on the plugin's socket`);
    }
    return pass(`ready ${ms(main.proc.readyAfterMs!)} after spawn; Health SERVING`);
  },
};
