/** Every check, in the order it runs and is reported. */
import { authCheck } from "./auth.js";
import { describeCheck, startCheck } from "./control.js";
import { cookieCheck } from "./cookie.js";
import { deliverCheck, effectsCheck, unclaimedKindCheck } from "./deliver.js";
import { shutdownCheck, sigtermCheck, stdinEofCheck } from "./exits.js";
import { peerForgottenCheck } from "./forget.js";
import { handshakeCheck, socketCheck } from "./handshake.js";
import { hostCallsCheck } from "./host-calls.js";
import { restoreGarbageCheck, restoreOwnCheck, restoreUnsupportedCheck, snapshotCheck } from "./stateful.js";
import type { Check } from "./types.js";

export const CHECKS: readonly Check[] = [
  // A launch without the cookie.
  cookieCheck,
  // The main launch: handshake, control calls, delivery, state.
  handshakeCheck,
  socketCheck,
  describeCheck,
  startCheck,
  authCheck,
  deliverCheck,
  unclaimedKindCheck,
  effectsCheck,
  peerForgottenCheck,
  snapshotCheck,
  restoreOwnCheck,
  restoreUnsupportedCheck,
  restoreGarbageCheck,
  hostCallsCheck,
  // One fresh launch each.
  shutdownCheck,
  stdinEofCheck,
  sigtermCheck,
];
