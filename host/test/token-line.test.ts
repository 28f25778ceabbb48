/**
 * The plugin side of the token line (proto/src/token.ts, docs/protocol.md
 * §6.1), on in-memory streams: how the line is split into chunks does not
 * matter, what follows it is left alone, and every malformed input is refused
 * without the line in the message.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ENV, MAX_TOKEN_LINE_BYTES, TOKEN_LINE_PREFIX, isTokenValue, parseTokenLine, readLaunchToken } from "@plugwire/proto";

const STDIN = { [ENV.authTokenSource]: "stdin" };

/** Feeds `chunks` into a stream, then (if `end`) ends it; resolves with what readLaunchToken gave. */
async function feed(chunks: Buffer[], end = false, timeoutMs = 2_000): Promise<{ token?: string; error?: string; stream: PassThrough }> {
  const stream = new PassThrough();
  const reading = readLaunchToken(STDIN, stream, timeoutMs);
  for (const c of chunks) stream.write(c);
  if (end) stream.end();
  try {
    return { token: await reading, stream };
  } catch (e) {
    return { error: (e as Error).message, stream };
  }
}

describe("the token line", () => {
  it("gives the same token however the line is split into chunks, with anything after it", async () => {
    const token = fc.stringMatching(/^[\x21-\x7e]{1,64}$/);
    await fc.assert(
      fc.asyncProperty(token, fc.array(fc.nat(80), { maxLength: 6 }), fc.string({ maxLength: 20 }), async (t, cuts, rest) => {
        const bytes = Buffer.from(`${TOKEN_LINE_PREFIX} ${t}\n${rest}`, "latin1");
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of [...points, bytes.length]) {
          if (p > at) chunks.push(bytes.subarray(at, p));
          at = Math.max(at, p);
        }
        const { token: got, stream } = await feed(chunks);
        stream.destroy();
        assert.equal(got, t);
      }),
      { numRuns: 200 },
    );
  });

  it("refuses malformed lines without quoting them", async () => {
    const cases: Array<[string, RegExp]> = [
      ["secret-word\n", /does not start with 'PLUGWIRE_TOKEN '/],
      [`${TOKEN_LINE_PREFIX}\n`, /does not start with 'PLUGWIRE_TOKEN '/],
      [`${TOKEN_LINE_PREFIX} \n`, /empty or holds a space or a control character/],
      [`${TOKEN_LINE_PREFIX} a b\n`, /empty or holds a space/],
      [`${TOKEN_LINE_PREFIX} ab\r\n`, /control character/],
      [`${TOKEN_LINE_PREFIX} ${"x".repeat(MAX_TOKEN_LINE_BYTES)}\n`, /over 1024 bytes/],
      ["y".repeat(MAX_TOKEN_LINE_BYTES + 10), /over 1024 bytes/],
    ];
    for (const [line, expected] of cases) {
      const { error, stream } = await feed([Buffer.from(line, "latin1")]);
      stream.destroy();
      assert.match(error ?? "(resolved)", expected, JSON.stringify(line));
      assert.ok(!error!.includes("secret-word"), "the line is not quoted");
    }
  });

  it("refuses EOF before the line, a line that never comes, and an unknown source", async () => {
    assert.match((await feed([Buffer.from("PLUGWIRE_TOKEN abc")], true)).error!, /^stdin closed before the host wrote the 'PLUGWIRE_TOKEN <token>' line/);
    const waited = await feed([], false, 50);
    waited.stream.destroy();
    assert.match(waited.error!, /^no 'PLUGWIRE_TOKEN <token>' line arrived on stdin within 50 ms/);
    await assert.rejects(readLaunchToken({ [ENV.authTokenSource]: "file" }, new PassThrough()), /PLUGWIRE_AUTH_TOKEN_SOURCE="file" is neither 'stdin' nor 'env'/);
  });

  it("reads PLUGWIRE_AUTH_TOKEN when the source is env or unset, and refuses it missing", async () => {
    assert.equal(await readLaunchToken({ [ENV.authTokenSource]: "env", [ENV.authToken]: "t1" }, new PassThrough()), "t1");
    assert.equal(await readLaunchToken({ [ENV.authToken]: "t2" }, new PassThrough()), "t2");
    await assert.rejects(readLaunchToken({ [ENV.authTokenSource]: "env" }, new PassThrough()), /the host did not set PLUGWIRE_AUTH_TOKEN/);
  });

  it("parses exactly the grammar", () => {
    assert.deepEqual(parseTokenLine("PLUGWIRE_TOKEN abc"), { token: "abc" });
    assert.ok("problem" in parseTokenLine("PLUGWIRE_TOKEN  abc"), "two spaces");
    assert.ok("problem" in parseTokenLine("plugwire_token abc"), "letter case");
    assert.equal(isTokenValue("~!"), true);
    assert.equal(isTokenValue("é"), false);
  });
});
