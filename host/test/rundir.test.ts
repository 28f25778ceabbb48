/** Unit tests of the run dir choice (docs/protocol.md §4): no whitespace, and room for every socket path. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { PlugwireError } from "@plugwire/proto";
import { chooseRunDirParent, longestSocketFileName, unusableRunDirPath } from "../src/launch/rundir.js";

const SHORT_NAME = longestSocketFileName(["echo"]);

describe("chooseRunDirParent", () => {
  it("uses the OS temp dir when it suits", () => {
    assert.deepEqual(chooseRunDirParent(undefined, SHORT_NAME, "/var/tmp"), { parent: "/var/tmp" });
  });

  it("falls back to /tmp when the OS temp dir holds a space, and says why", () => {
    const choice = chooseRunDirParent(undefined, SHORT_NAME, "/home/ann/my temp");
    assert.equal(choice.parent, "/tmp");
    assert.equal(
      choice.note,
      `the OS temp dir "/home/ann/my temp" (TMPDIR) does not suit the host's sockets ` +
        `(it contains whitespace or a control character, which cannot go in the handshake line); using /tmp. Set runDirParent to choose another directory.`,
    );
  });

  it("falls back to /tmp when socket paths under the OS temp dir would not fit", () => {
    // macOS-like: 49 bytes of TMPDIR leave no room for a 64-byte plugin name.
    const macTmp = "/var/folders/zz/zyxvpxvq6csfxvn_n0000000000000/T";
    const choice = chooseRunDirParent(undefined, longestSocketFileName(), macTmp);
    assert.equal(choice.parent, "/tmp");
    assert.match(choice.note ?? "", /it is too long: socket paths under it would be over the 103-byte unix socket limit/);
    // The same dir is fine for short plugin names.
    assert.deepEqual(chooseRunDirParent(undefined, SHORT_NAME, macTmp), { parent: macTmp });
  });

  it("takes an explicit runDirParent as given, even if long (each socket path is checked at its launch)", () => {
    const long = `/${"d".repeat(120)}`;
    assert.deepEqual(chooseRunDirParent(long, SHORT_NAME, "/tmp"), { parent: long });
  });

  it("refuses an explicit runDirParent with whitespace or that is relative, naming it", () => {
    for (const [dir, why] of [
      ["/srv/plug wire", "it contains whitespace or a control character, which cannot go in the handshake line"],
      ["/srv/tab\there", "it contains whitespace or a control character, which cannot go in the handshake line"],
      ["run", "it is not an absolute path"],
    ] as const) {
      assert.throws(
        () => chooseRunDirParent(dir, SHORT_NAME, "/tmp"),
        (e: unknown) =>
          e instanceof PlugwireError &&
          e.code === "invalid_config" &&
          e.message ===
            `runDirParent ${JSON.stringify(dir)} cannot hold the host's socket dir: ${why}. ` +
              `Set runDirParent to a short absolute path without spaces, such as /tmp (docs/protocol.md §4).`,
      );
    }
  });
});

describe("longestSocketFileName", () => {
  it("leaves room for six-digit launch numbers of the longest name", () => {
    assert.equal(longestSocketFileName(["a", "echo"]), "xxxx-999999.sock");
    assert.equal(longestSocketFileName().length, 64 + "-999999.sock".length);
  });
});

describe("unusableRunDirPath", () => {
  it("accepts absolute paths without whitespace, non-ASCII included", () => {
    assert.equal(unusableRunDirPath("/tmp/café"), undefined);
  });
  it("rejects non-breaking spaces too", () => {
    assert.match(unusableRunDirPath("/tmp/a\u00a0b") ?? "", /whitespace/);
  });
});
