/** Every check, in the order it runs and is reported. */
import { authCheck } from "./auth.js";
import { ackCadenceCheck } from "./cadence.js";
import { describeCheck, startCheck } from "./control.js";
import { cookieCheck } from "./cookie.js";
import { deliverCheck, effectsCheck, unclaimedKindCheck } from "./deliver.js";
import { envCheck, protocolVersionCheck } from "./environment.js";
import { shutdownCheck, sigtermCheck, stdinEofCheck } from "./exits.js";
import { peerForgottenCheck } from "./forget.js";
import { handshakeCheck, handshakeOnceCheck, socketCheck } from "./handshake.js";
import { healthAfterShutdownCheck, healthWatchCheck } from "./health.js";
import { hostCallsCheck } from "./host-calls.js";
import { messageLimitCheck } from "./message-limit.js";
import { reconnectCheck, redeliveryCheck } from "./reconnect.js";
import { restoreGarbageCheck, restoreKeepsStateCheck, restoreOwnCheck, restoreUnsupportedCheck, snapshotCheck } from "./stateful.js";
import type { Check } from "./types.js";

export const CHECKS: readonly Check[] = [
  // A launch without the cookie.
  cookieCheck,
  // The main launch: handshake, control calls, health, delivery on two streams, state.
  handshakeCheck,
  socketCheck,
  describeCheck,
  startCheck,
  healthWatchCheck,
  authCheck,
  deliverCheck,
  unclaimedKindCheck,
  effectsCheck,
  ackCadenceCheck,
  peerForgottenCheck,
  reconnectCheck,
  redeliveryCheck,
  messageLimitCheck,
  snapshotCheck,
  restoreOwnCheck,
  restoreUnsupportedCheck,
  restoreGarbageCheck,
  restoreKeepsStateCheck,
  hostCallsCheck,
  handshakeOnceCheck,
  // Launches with a broken environment, once the main launch is gone.
  envCheck,
  protocolVersionCheck,
  // One fresh launch each.
  shutdownCheck,
  healthAfterShutdownCheck,
  stdinEofCheck,
  sigtermCheck,
];
