/**
 * Each mode of the broken fixture (fixtures/broken.ts) about delivery and
 * state fails exactly the check it breaks.
 */
import { describe } from "node:test";
import { failsExactlyOne } from "./helpers.js";
import { DELIVERY_MODES } from "./modes.js";

describe("broken fixture modes: delivery, reconnects, message size, state", { concurrency: 2 }, () => {
  failsExactlyOne(DELIVERY_MODES);
});
