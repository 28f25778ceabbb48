/** Unit tests of the pure handshake-line parser (docs/protocol.md §5). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_HANDSHAKE_REASON_CHARS, isHandshakeLine, parseHandshake, type HandshakeResult } from "../src/handshake/parse.js";

const GOOD = "PLUGWIRE_HANDSHAKE protocol=1 network=unix address=/tmp/pw-k3x9/echo-1.sock transport=grpc";

function failure(result: HandshakeResult): string {
  assert.equal(result.ok, false, "expected the line to be rejected");
  return (result as { ok: false; reason: string }).reason;
}

describe("isHandshakeLine", () => {
  it("recognises the prefix followed by a space, or alone", () => {
    assert.equal(isHandshakeLine(GOOD), true);
    assert.equal(isHandshakeLine("PLUGWIRE_HANDSHAKE"), true);
    assert.equal(isHandshakeLine("PLUGWIRE_HANDSHAKE this is not right"), true);
    // Tabs separate fields wherever spaces do, right after the prefix too (red team: it was waited out as a log line).
    assert.equal(isHandshakeLine("PLUGWIRE_HANDSHAKE\tprotocol=1"), true);
  });

  it("refuses a key outside the grammar (lower-case a-z, 0-9, _), naming it", () => {
    const r = parseHandshake(`${GOOD} Foo=bar`, [1]);
    assert.equal(r.ok, false);
    assert.match(r.ok ? "" : r.reason, /field key 'Foo' is not made of lower-case a-z, 0-9 and _/);
    assert.equal(parseHandshake(`${GOOD} extra_key2=ok`, [1]).ok, true, "an unknown key in the grammar is ignored");
  });

  it("does not take other lines for a handshake", () => {
    for (const line of ["", "loading libfoo 1.2", "PLUGWIRE_HANDSHAKEISH protocol=1", " PLUGWIRE_HANDSHAKE protocol=1", "plugwire_handshake protocol=1"]) {
      assert.equal(isHandshakeLine(line), false, line);
    }
  });
});

describe("parseHandshake", () => {
  it("parses a good line", () => {
    assert.deepEqual(parseHandshake(GOOD, [1]), {
      ok: true,
      handshake: { protocolVersion: 1, network: "unix", address: "/tmp/pw-k3x9/echo-1.sock", transport: "grpc" },
    });
  });

  it("accepts the fields in any order and extra spaces between them", () => {
    const result = parseHandshake("PLUGWIRE_HANDSHAKE transport=grpc  address=/tmp/a.sock protocol=1 network=unix", [1]);
    assert.deepEqual(result, { ok: true, handshake: { protocolVersion: 1, network: "unix", address: "/tmp/a.sock", transport: "grpc" } });
  });

  it("ignores unknown keys", () => {
    const result = parseHandshake(`${GOOD} features=batch,effects future_key=x`, [1]);
    assert.equal(result.ok, true);
    assert.deepEqual(result.ok && result.handshake, { protocolVersion: 1, network: "unix", address: "/tmp/pw-k3x9/echo-1.sock", transport: "grpc" });
  });

  it("picks the version out of several accepted ones", () => {
    const result = parseHandshake(GOOD.replace("protocol=1", "protocol=2"), [1, 2]);
    assert.equal(result.ok && result.handshake.protocolVersion, 2);
  });

  it("rejects a line without the prefix", () => {
    assert.equal(failure(parseHandshake("protocol=1 network=unix address=/tmp/a.sock transport=grpc", [1])), "the line does not start with PLUGWIRE_HANDSHAKE");
  });

  it("rejects a field that is not key=value", () => {
    assert.equal(failure(parseHandshake("PLUGWIRE_HANDSHAKE this is not right", [1])), "field 'this' is not key=value");
    assert.equal(failure(parseHandshake(`${GOOD} =x`, [1])), "field '=x' is not key=value");
  });

  it("says a space in the socket path breaks the line, when a path-like field is left over", () => {
    assert.equal(
      failure(parseHandshake("PLUGWIRE_HANDSHAKE protocol=1 network=unix address=/tmp/my dir/pw-1/echo-1.sock transport=grpc", [1])),
      "field 'dir/pw-1/echo-1.sock' is not key=value (a value cannot contain spaces: does the socket path hold one?)",
    );
  });

  it("splits on spaces and tabs only: other Unicode whitespace stays in a value", () => {
    const address = "/tmp/caf\u00a0e/echo-1.sock";
    const result = parseHandshake(`PLUGWIRE_HANDSHAKE protocol=1\tnetwork=unix address=${address} transport=grpc`, [1]);
    assert.equal(result.ok && result.handshake.address, address);
  });

  it("rejects a control character anywhere in the line", () => {
    assert.equal(failure(parseHandshake(`${GOOD}\u0000`, [1])), "the line contains a control character");
    assert.equal(failure(parseHandshake(GOOD.replace("/tmp", "/t\u001bmp"), [1])), "the line contains a control character");
  });

  it("names each missing or empty required field", () => {
    for (const key of ["protocol", "network", "address", "transport"]) {
      const without = GOOD.split(" ").filter((f) => !f.startsWith(`${key}=`)).join(" ");
      assert.equal(failure(parseHandshake(without, [1])), `required field '${key}' is missing or empty`);
      const empty = GOOD.replace(new RegExp(`${key}=\\S+`), `${key}=`);
      assert.equal(failure(parseHandshake(empty, [1])), `required field '${key}' is missing or empty`);
    }
    assert.equal(failure(parseHandshake("PLUGWIRE_HANDSHAKE", [1])), "required field 'protocol' is missing or empty");
  });

  it("rejects a duplicate field, even with the same value", () => {
    assert.equal(failure(parseHandshake(`${GOOD} protocol=1`, [1])), "field 'protocol' appears twice");
    assert.equal(failure(parseHandshake(`${GOOD} address=/tmp/other.sock`, [1])), "field 'address' appears twice");
  });

  it("rejects a protocol that is not a whole number", () => {
    for (const value of ["one", "1.0", "-1", "0x1", "1e0"]) {
      assert.equal(failure(parseHandshake(GOOD.replace("protocol=1", `protocol=${value}`), [1])), `protocol '${value}' is not a whole number`);
    }
  });

  it("rejects a version the host does not accept, naming the accepted ones", () => {
    assert.equal(
      failure(parseHandshake(GOOD.replace("protocol=1", "protocol=99"), [1])),
      "protocol version 99 is not one the host accepts (1)",
    );
    assert.equal(
      failure(parseHandshake(GOOD.replace("protocol=1", "protocol=3"), [1, 2])),
      "protocol version 3 is not one the host accepts (1, 2)",
    );
  });

  it("rejects an unsupported network or transport", () => {
    assert.equal(
      failure(parseHandshake(GOOD.replace("network=unix", "network=udp"), [1])),
      "network 'udp' is not supported (use unix, or tcp on loopback)",
    );
    assert.equal(
      failure(parseHandshake(GOOD.replace("network=unix", "network=UNIX"), [1])),
      "network 'UNIX' is not supported (use unix, or tcp on loopback)",
    );
    assert.equal(failure(parseHandshake(GOOD.replace("transport=grpc", "transport=netrpc"), [1])), "transport 'netrpc' is not supported (use grpc)");
  });

  it("rejects a relative unix socket path", () => {
    for (const address of ["echo.sock", "./echo.sock", "pw-k3x9/echo.sock", "unix:///tmp/a.sock"]) {
      assert.equal(
        failure(parseHandshake(GOOD.replace(/address=\S+/, `address=${address}`), [1])),
        `unix address '${address}' is not an absolute path`,
      );
    }
  });

  it("accepts tcp only on loopback", () => {
    const tcp = (address: string): HandshakeResult =>
      parseHandshake(`PLUGWIRE_HANDSHAKE protocol=1 network=tcp address=${address} transport=grpc`, [1]);
    for (const address of ["127.0.0.1:50051", "127.1.2.3:1", "[::1]:1234", "localhost:65535"]) {
      assert.deepEqual(tcp(address), { ok: true, handshake: { protocolVersion: 1, network: "tcp", address, transport: "grpc" } }, address);
    }
    for (const address of ["10.0.0.7:50051", "0.0.0.0:50051", "example.com:443", "localhost.example.com:80", "127.0.0.1", "[::]:80", "/tmp/a.sock",
      "127.0.0.1.evil.example:80", "127..:80", "127.0.0.256:80", "127.0.0.1:0", "127.0.0.1:65536", "localhost:99999"]) {
      assert.equal(failure(tcp(address)), `tcp address '${address}' is not a loopback host:port`, address);
    }
  });

  it("quotes at most 120 characters of a value the plugin printed (a 1 MiB field gave a 1 MiB refusal; found by the fuzzer)", () => {
    const huge = "x".repeat(1 << 20);
    const lines = [
      `PLUGWIRE_HANDSHAKE ${huge}`,
      `PLUGWIRE_HANDSHAKE protocol=${"9".repeat(1 << 20)} network=unix address=/a transport=grpc`,
      `PLUGWIRE_HANDSHAKE protocol=1x${huge} network=unix address=/a transport=grpc`,
      `PLUGWIRE_HANDSHAKE protocol=1 network=${huge} address=/a transport=grpc`,
      `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=${huge} transport=grpc`,
      `PLUGWIRE_HANDSHAKE protocol=1 network=tcp address=${huge} transport=grpc`,
      `PLUGWIRE_HANDSHAKE protocol=1 network=unix address=/a transport=${huge}`,
      `PLUGWIRE_HANDSHAKE ${huge}=1 ${huge}=2`,
    ];
    for (const line of lines) {
      const reason = failure(parseHandshake(line, [1]));
      assert.ok(reason.length <= MAX_HANDSHAKE_REASON_CHARS, `${reason.length}: ${reason.slice(0, 80)}`);
      assert.match(reason, /…\(1048576 characters\)|…\(1048578 characters\)/, reason.slice(0, 200));
    }
  });
});
