/** The ack-cadence rule as the kit judges it, on made-up acks. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { cadenceProblems } from "../src/cadence.js";

/** Acks through `through`, `at` ms apart. */
function acks(...pairs: Array<[through: number, at: number]>) {
  return pairs.map(([through, at]) => ({ ackedThrough: BigInt(through), at }));
}

describe("cadenceProblems", () => {
  it("accepts acks of up to 512 items, close together", () => {
    assert.deepEqual(cadenceProblems(acks([512, 5], [1024, 10], [1536, 12]), 0n, 0), []);
  });

  it("flags an ack that covers more than 512 items", () => {
    assert.deepEqual(cadenceProblems(acks([300, 1], [1836, 3]), 0n, 0), ["one ack covered 1536 items (301–1836), over 512"]);
  });

  it("flags acks more than 20 ms apart while several items were handled, past the slack", () => {
    assert.deepEqual(cadenceProblems(acks([100, 0], [300, 400]), 0n, 250), ["400 ms passed between two acks while 200 items were handled (seqs 101–300)"]);
    assert.deepEqual(cadenceProblems(acks([100, 0], [300, 260]), 0n, 250), []);
  });

  it("lets one slow item take as long as it takes, and ignores repeated acks", () => {
    assert.deepEqual(cadenceProblems(acks([100, 0], [101, 5000], [101, 5001]), 0n, 0), []);
  });
});
