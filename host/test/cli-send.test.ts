/**
 * `plugwire send` through the admin API's Dispatch, against a real host with
 * real plugin processes (the probe fixture, the poison fixture and the echo
 * example), composed with the admin server as the CLI composes them:
 * - the outcome (acked, or the handler's error) and the effects the payload
 *   produced: sends carried by the ack (performed, or dropped for lack of the
 *   control capability) and SendRouted calls with their answers;
 * - a plugin NAME stands for its only kind; an ambiguous or mismatched choice
 *   is refused, and so is a plugin that does not exist;
 * - other failures are typed errors: no plugin for the kind, a stopped plugin,
 *   a failed one; a plugin without the control capability fails its handler
 *   when it sends;
 * - the CLI's text and JSON output, and its argument errors, word for word.
 *
 * Waits are for events with a bound; every test stops its host and checks no
 * plugin process is left (helpers.ts).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConnectError } from "@connectrpc/connect";
import { admin, PlugwireError } from "@plugwire/proto";
import { adminClient, type AdminClient } from "../src/admin/client.js";
import { fromConnectError } from "../src/admin/errors.js";
import { serveAdmin } from "../src/admin/server.js";
import { formatDispatch, sendCommand } from "../src/cli/admin-commands.js";
import { sendRequest } from "../src/cli/send-args.js";
import type { PluginConfig } from "../src/index.js";
import { example, fixture, nodePlugin, peer, testHost, waitFor, type TestHost } from "./helpers.js";

const PROBE = fixture("probe");
const POISON = fixture("poison");
const TEST_TIMEOUT_MS = 60_000;
const text = new TextEncoder();
const SRC = peer(1);
const SRC_HEX = "01".repeat(32);

/** A started host with its admin API, as `plugwire run` composes them; closes both. */
async function withAdmin(plugins: PluginConfig[], body: (t: TestHost & { client: AdminClient }) => Promise<void>): Promise<void> {
  const th = testHost(plugins);
  try {
    await th.host.start();
    const server = await serveAdmin(th.host);
    try {
      await body({ ...th, client: adminClient(server.socketPath, { token: server.token }) });
    } finally {
      await server.close();
    }
  } finally {
    await th.close();
  }
}

/** The typed error a Dispatch failed with. */
async function dispatchError(client: AdminClient, request: Parameters<AdminClient["dispatch"]>[0]): Promise<PlugwireError> {
  try {
    await client.dispatch(request);
  } catch (e) {
    assert.ok(e instanceof ConnectError, `not a ConnectError: ${String(e)}`);
    const typed = fromConnectError(e);
    assert.ok(typed, `no plugwire code in ${e.message}`);
    return typed;
  }
  assert.fail("the dispatch succeeded");
}

function cmd(op: object): Uint8Array {
  return text.encode(JSON.stringify(op));
}

describe("plugwire send (admin Dispatch)", () => {
  it("reports an ack and the send its handler made, which the control port performed once", { timeout: TEST_TIMEOUT_MS }, () =>
    withAdmin([nodePlugin("echo", example("echo"), { capabilities: ["control"] })], async ({ client, sent }) => {
      const r = await client.dispatch({ plugin: "echo", src: SRC, body: text.encode("hi") });
      assert.equal(r.plugin, "echo");
      assert.equal(r.kind, "echo.ping");
      assert.equal(r.outcome, admin.DispatchOutcome.ACKED);
      assert.equal(r.error, "");
      assert.equal(r.effects.length, 1);
      const effect = r.effects[0]!.effect;
      assert.equal(effect.case, "sendDirect");
      assert.deepEqual(effect.value, { $typeName: "plugwire.admin.v1.SendDirectEffect", peer: SRC, frame: text.encode("pong:hi"), performed: true, droppedReason: "" });
      assert.deepEqual(sent, [{ kind: "direct", peer: SRC_HEX, frame: "pong:hi" }]);
      // The CLI's rendering of it, minus the duration.
      assert.equal(formatDispatch({ ...r, durationMs: 0n }), `acked by echo (kind echo.ping) in 0 ms\neffects (1):\n  sendDirect to 0101010101010101…: 7 bytes "pong:hi"\n`);
    }),
  );

  it("reports SendRouted calls with their answers, and a handler error with its message", { timeout: TEST_TIMEOUT_MS }, () =>
    withAdmin([nodePlugin("probe", PROBE, { args: ["probe"], capabilities: ["control"] })], async ({ client }) => {
      // helpers.ts: a route exists to destinations whose first byte is 1.
      const routed = await client.dispatch({ kind: "probe.cmd", src: SRC, body: cmd({ op: "routed", dst: SRC_HEX, frame: "hello" }) });
      assert.equal(routed.outcome, admin.DispatchOutcome.ACKED);
      assert.deepEqual(
        routed.effects.map((e) => [e.effect.case, e.effect.value]),
        [
          ["sendRouted", { $typeName: "plugwire.admin.v1.SendRoutedEffect", dst: SRC, frame: text.encode("hello"), routed: true, error: "" }],
          ["sendDirect", { $typeName: "plugwire.admin.v1.SendDirectEffect", peer: SRC, frame: text.encode("routed:true"), performed: true, droppedReason: "" }],
        ],
      );
      const unrouted = await client.dispatch({ kind: "probe.cmd", src: SRC, body: cmd({ op: "routed", dst: "02".repeat(32) }) });
      assert.deepEqual(
        unrouted.effects.map((e) => (e.effect.case === "sendRouted" ? `routed ${e.effect.value.routed}` : e.effect.case)),
        ["routed false", "sendDirect"],
      );

      const failed = await client.dispatch({ plugin: "probe", kind: "probe.cmd", src: SRC, body: cmd({ op: "throw", message: "no such thing" }) });
      assert.equal(failed.outcome, admin.DispatchOutcome.HANDLER_ERROR);
      assert.match(failed.error, /^plugin 'probe' failed to handle payload seq \d+ \(kind 'probe\.cmd'\): no such thing$/);
      assert.deepEqual(failed.effects, []);
      const out = await sendCommand(client, { kind: "probe.cmd", src: SRC, body: cmd({ op: "throw", message: "again" }) }, true);
      assert.equal(out.code, 1);
      const json = JSON.parse(out.output) as Record<string, unknown>;
      assert.equal(json.outcome, "handler_error");
      assert.match(String(json.error), /: again$/);
    }),
  );

  it("a plugin without the control capability: its handler's send fails it, and nothing is sent", { timeout: TEST_TIMEOUT_MS }, () =>
    withAdmin([nodePlugin("echo", example("echo"))], async ({ client, sent }) => {
      const r = await client.dispatch({ plugin: "echo", src: SRC, body: text.encode("x") });
      assert.equal(r.outcome, admin.DispatchOutcome.HANDLER_ERROR);
      assert.match(r.error, /plugin 'echo' was not granted the 'control' capability; add it to the plugin's capabilities in the host config$/);
      assert.deepEqual(r.effects, []);
      assert.deepEqual(sent, []);
      assert.match(formatDispatch(r), /^handler error from echo \(kind echo\.ping\) after \d+ ms: .+\nno effects\n$/);
    }),
  );

  it("refuses what it cannot route, with typed errors that say what to do", { timeout: TEST_TIMEOUT_MS }, () =>
    withAdmin(
      [nodePlugin("probe", PROBE, { args: ["probe"] }), nodePlugin("echo", example("echo"), { capabilities: ["control"] })],
      async ({ client, host }) => {
        let e = await dispatchError(client, { kind: "nope", src: SRC });
        assert.equal(e.code, "no_plugin_for_kind");
        assert.equal(
          e.message,
          `no plugin claims payload kind 'nope' (from peer 0101010101010101); claimed kinds: probe.cmd, probe.data, echo.ping. Add a plugin that lists it in its payload kinds.`,
        );
        e = await dispatchError(client, { plugin: "probe", src: SRC });
        assert.equal(e.code, "invalid_argument");
        assert.equal(e.message, "plugin 'probe' claims 2 payload kinds (probe.cmd, probe.data); name the kind to send with --kind KIND");
        e = await dispatchError(client, { plugin: "echo", kind: "probe.cmd", src: SRC });
        assert.equal(e.message, "payload kind 'probe.cmd' is routed to plugin 'probe', not 'echo' (the first plugin listed that claims a kind wins it)");
        e = await dispatchError(client, { plugin: "ehco", src: SRC });
        assert.equal(e.message, "no plugin named 'ehco'; plugins: probe, echo");

        await host.stopPlugin("echo");
        e = await dispatchError(client, { plugin: "echo", src: SRC });
        assert.equal(e.code, "plugin_unavailable");
        assert.equal(e.message, "plugin 'echo' is stopped, so payload kind 'echo.ping' cannot be delivered; start the host or restart the plugin");
      },
    ),
  );

  it("a plugin that crashed into failed: the payload that killed it is not acked, the next one fails with plugin_failed", { timeout: TEST_TIMEOUT_MS }, () =>
    withAdmin([nodePlugin("poison", POISON, { maxRestarts: 0, capabilities: ["control"] })], async ({ client, host }) => {
      const ok = await client.dispatch({ plugin: "poison", src: SRC, body: text.encode("fine") });
      assert.equal(formatDispatch({ ...ok, durationMs: 0n }), `acked by poison (kind poison.data) in 0 ms\neffects (1):\n  sendDirect to 0101010101010101…: 12 bytes "handled:fine"\n`);
      const failed = waitFor<{ plugin: string; state: string }>(host, "plugin:state", (e) => e.state === "failed");
      const killer = await dispatchError(client, { plugin: "poison", src: SRC, body: text.encode("poison") });
      await failed;
      assert.equal(killer.code, "plugin_unavailable");
      assert.equal(
        killer.message,
        "payload of kind 'poison.data' for plugin 'poison' was not acked: plugin 'poison' failed (crash loop: more than 0 restarts in 60000 ms; last: exited with code 1 (crash))",
      );
      const next = await dispatchError(client, { plugin: "poison", src: SRC, body: text.encode("fine") });
      assert.equal(next.code, "plugin_failed");
      assert.match(next.message, /^plugin 'poison' has failed \(.+\), so payload kind 'poison\.data' cannot be delivered\. Fix the plugin and restart it/);
    }),
  );
});

describe("plugwire send arguments", () => {
  const usage = "\nusage: plugwire send NAME|--kind KIND --src HEX (--body TEXT | --body-hex HEX | --body-file FILE)";
  const refused = (args: Parameters<typeof sendRequest>[0], message: string): void => {
    assert.throws(
      () => sendRequest(args),
      (e: unknown) => e instanceof PlugwireError && e.code === "invalid_argument" && e.message === message + usage,
    );
  };

  it("builds the request from a NAME or a kind, a hex src and one body", () => {
    assert.deepEqual(sendRequest({ plugin: "echo", src: "0a0B", body: "hé" }), { plugin: "echo", kind: undefined, src: Buffer.from([10, 11]), body: text.encode("hé") });
    assert.deepEqual(sendRequest({ kind: "k", src: "0x01", "body-hex": "00ff" }).body, Buffer.from([0, 255]));
  });

  it("refuses missing or malformed arguments with a message that names the fix", () => {
    refused({ src: "01", body: "x" }, "say where the payload goes: a plugin NAME (see plugwire status), or --kind KIND");
    refused({ plugin: "echo", body: "x" }, "--src HEX is required: the node id of the peer the payload comes from");
    refused({ plugin: "echo", src: "xyz", body: "x" }, `--src must be hex digits, two per byte (got "xyz")`);
    refused({ plugin: "echo", src: "", body: "x" }, "--src must not be empty");
    refused({ plugin: "echo", src: "01" }, "give the payload body with one of --body, --body-hex or --body-file");
    refused({ plugin: "echo", src: "01", body: "x", "body-hex": "00" }, "give one body, not --body and --body-hex");
    refused({ plugin: "echo", src: "01", "body-hex": "0" }, `--body-hex must be hex digits, two per byte (got "0")`);
    refused({ plugin: "echo", extra: ["more"], src: "01", body: "x" }, "unexpected argument 'more' after the plugin name");
    assert.throws(() => sendRequest({ plugin: "echo", src: "01", "body-file": "/nonexistent/body" }), /^PlugwireError: cannot read --body-file \/nonexistent\/body: ENOENT/);
  });
});
