/** Plugin log lines (docs/protocol.md §5): unit tests of the parsing, and the forwarding of a real plugin's lines. */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { pino } from "pino";
import type { HostEvents } from "../src/index.js";
import { hostLogFields, parseLogLine } from "../src/launch/logs.js";
import { fixture, nodePlugin, peer, testHost, waitFor } from "./helpers.js";

type LogEvent = HostEvents["plugin:log"][0];

describe("parseLogLine", () => {
  it("keeps a JSON line's level, msg and its own fields, time included", () => {
    assert.deepEqual(parseLogLine('{"level":"warn","time":5,"msg":"hi","kind":"chat"}', "stderr"), {
      level: "warn",
      msg: "hi",
      fields: { time: 5, kind: "chat" },
    });
  });

  it("reads pino's numeric levels, 'warning' and any case; an unknown level falls back to the stream's", () => {
    assert.equal(parseLogLine('{"level":40,"msg":"x"}', "stderr").level, "warn");
    assert.equal(parseLogLine('{"level":"WARNING","msg":"x"}', "stderr").level, "warn");
    assert.equal(parseLogLine('{"level":"loud","msg":"x"}', "stderr").level, "error");
    assert.equal(parseLogLine('{"msg":"x"}', "stdout").level, "info");
  });

  it("uses `message` when there is no `msg`, and keeps it as a field otherwise", () => {
    assert.deepEqual(parseLogLine('{"level":"info","message":"hi"}', "stderr"), { level: "info", msg: "hi", fields: {} });
    assert.deepEqual(parseLogLine('{"level":"info","msg":"hi","message":"m"}', "stderr").fields, { message: "m" });
  });

  it("logs other lines as they are, at info on stdout and error on stderr", () => {
    assert.deepEqual(parseLogLine("plain", "stdout"), { level: "info", msg: "plain", fields: {} });
    assert.deepEqual(parseLogLine("[1, 2]", "stderr"), { level: "error", msg: "[1, 2]", fields: {} });
    assert.deepEqual(parseLogLine('{"level":"info"', "stderr"), { level: "error", msg: '{"level":"info"', fields: {} });
  });

  it("keeps the level a cut JSON line names", () => {
    assert.deepEqual(parseLogLine('{"level":"warn","msg":"abc', "stderr", true), { level: "warn", msg: '{"level":"warn","msg":"abc', fields: {} });
    assert.equal(parseLogLine('{"time":1,"level":30,"msg":"ab', "stderr", true).level, "info");
    assert.equal(parseLogLine('{"msg":"no level yet', "stdout", true).level, "info");
  });
});

describe("hostLogFields", () => {
  it("renames the reserved keys with a plugin_ prefix and leaves the rest", () => {
    assert.deepEqual(hostLogFields({ time: 1, plugin: "p", stream: "s", pid: 2, kind: "k" }), {
      plugin_time: 1,
      plugin_plugin: "p",
      plugin_stream: "s",
      plugin_pid: 2,
      kind: "k",
    });
    const plain = { kind: "k" };
    assert.equal(hostLogFields(plain), plain, "no copy when nothing collides");
  });
});

describe("a plugin's log lines in the host", () => {
  it("keep the plugin's own fields (in plugin:log, and renamed when they collide in the host's record) and a cut line's level", { timeout: 30_000 }, async () => {
    const records: Array<Record<string, unknown>> = [];
    const logger = pino(
      { level: "info" },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          records.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    );
    const th = testHost([nodePlugin("speclog", fixture("spec-sdk"), { maxLogLineBytes: 200 })], { logger });
    try {
      await th.host.start();
      const short = waitFor<LogEvent>(th.host, "plugin:log", (e) => e.msg === "padded");
      await th.host.dispatch(peer(1), "spec.log", new TextEncoder().encode("3"));
      const event = await short;
      assert.equal(event.level, "warn");
      assert.equal(event.truncated, false);
      assert.equal(event.fields.pad, "xxx");
      assert.equal(event.fields.plugin, "mine");
      assert.equal(typeof event.fields.time, "number");
      const record = records.find((r) => r.msg === "padded")!;
      assert.equal(record.plugin, "speclog", "the host's own field");
      assert.equal(record.plugin_plugin, "mine");
      assert.equal(record.plugin_time, event.fields.time);
      assert.equal(record.level, 40);

      const long = waitFor<LogEvent>(th.host, "plugin:log", (e) => e.truncated);
      await th.host.dispatch(peer(1), "spec.log", new TextEncoder().encode("1000"));
      const cut = await long;
      assert.equal(cut.level, "warn", "a cut line keeps the level it names");
      assert.equal(Buffer.byteLength(cut.msg), 200);
      const cutRecord = records.find((r) => r.truncated === true)!;
      assert.equal(cutRecord.level, 40);
    } finally {
      await th.close();
    }
  });
});
