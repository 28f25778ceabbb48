/** The kit's two readings of the handshake line: as a host reads it, and against the exact grammar. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { handshakeLineNoise, parseHandshakeLine } from "../src/index.js";

const LINE = "PLUGWIRE_HANDSHAKE protocol=1 network=unix address=/tmp/pw-x/p-1.sock transport=grpc";

describe("handshakeLineNoise: nothing but the grammar", () => {
  it("accepts the exact line, unknown fields included", () => {
    assert.equal(handshakeLineNoise(LINE), undefined);
    assert.equal(handshakeLineNoise(`${LINE} later_field=x`), undefined);
  });

  it("names what follows the last field, a CR, doubled spaces and stray tokens", () => {
    assert.equal(handshakeLineNoise(`${LINE} `), `1 whitespace character(s) " " follow its last field`);
    assert.equal(handshakeLineNoise(`${LINE}\t `), `2 whitespace character(s) "\\t " follow its last field`);
    assert.equal(handshakeLineNoise(`${LINE}\r`), "it ends in a carriage return (CR LF); end it with a bare LF");
    assert.equal(handshakeLineNoise(LINE.replace(" network", "  network")), "two spaces in a row; separate fields with exactly one space");
    assert.match(handshakeLineNoise(`${LINE} ready!`)!, /^"ready!" is not a field of the grammar/);
    assert.match(handshakeLineNoise(LINE.replace("protocol", "Protocol"))!, /^"Protocol=1" is not a field of the grammar/);
    assert.match(handshakeLineNoise(LINE.replace(" network", "\tnetwork"))!, /is not a field of the grammar/);
  });

  it("is stricter than the host's reading, which takes all of these lines", () => {
    for (const line of [`${LINE} `, LINE.replace(" network", "  network"), LINE.replace(" network", "\tnetwork")]) {
      assert.equal(parseHandshakeLine(line, [1]).ok, true, line);
      assert.notEqual(handshakeLineNoise(line), undefined, line);
    }
  });
});
