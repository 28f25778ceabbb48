import test from "node:test";
import assert from "node:assert/strict";
import { Semaphore } from "../src/supervisor/semaphore.js";

test("a semaphore grants at most `limit` holders, in arrival order", async () => {
  const s = new Semaphore(2);
  const order: string[] = [];
  const a = await s.acquire();
  const b = await s.acquire();
  const c = s.acquire().then((release) => {
    order.push("c");
    return release;
  });
  const d = s.acquire().then((release) => {
    order.push("d");
    return release;
  });
  await Promise.resolve();
  assert.deepEqual(order, [], "nobody gets a third slot while two are held");
  a();
  a(); // releasing twice frees one slot only
  const releaseC = await c;
  assert.deepEqual(order, ["c"]);
  b();
  const releaseD = await d;
  assert.deepEqual(order, ["c", "d"]);
  releaseC();
  releaseD();
});

test("a semaphore refuses a limit below 1", () => {
  assert.throws(() => new Semaphore(0), /positive integer/);
});
