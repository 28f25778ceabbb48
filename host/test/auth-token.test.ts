/** Unit tests of the auth header rule (docs/protocol.md §6), shared by the host, the SDK and the kit. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { bearerToken, hasBearerToken } from "@plugwire/proto";

function metadata(...values: string[]): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const v of values) m.add("authorization", v);
  return m;
}

describe("the authorization header", () => {
  it("is accepted exactly once, as 'Bearer <token>'", () => {
    assert.equal(bearerToken(metadata("Bearer abc")), "abc");
    assert.equal(hasBearerToken(metadata("Bearer abc"), "abc"), true);
  });

  it("is refused when it appears twice, even with the right token both times", () => {
    assert.equal(bearerToken(metadata("Bearer abc", "Bearer abc")), undefined);
    assert.equal(hasBearerToken(metadata("Bearer abc", "Bearer abc"), "abc"), false);
    assert.equal(hasBearerToken(metadata("Bearer abc", "Bearer other"), "abc"), false);
  });

  it("is refused in any other form", () => {
    for (const value of ["bearer abc", "Bearer  abc", "Bearer abc ", "Basic abc", "abc", "Bearer "]) {
      assert.equal(hasBearerToken(metadata(value), "abc"), false, JSON.stringify(value));
    }
    assert.equal(hasBearerToken(metadata(), "abc"), false);
    assert.equal(hasBearerToken(metadata("Bearer abcd"), "abc"), false);
  });
});
