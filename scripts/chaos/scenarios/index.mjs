// The chaos matrix, in the order `npm run chaos` runs it.
import steady from "./steady.mjs";
import burstIdle from "./burst-idle.mjs";
import killDuringReplay from "./kill-during-replay.mjs";
import killDuringSnapshot from "./kill-during-snapshot.mjs";
import doubleKill from "./double-kill.mjs";
import hostRestart from "./host-restart.mjs";
import slowHandler from "./slow-handler.mjs";
import forgetThenKill from "./forget-then-kill.mjs";
import polyglot from "./polyglot.mjs";
import steadyAttach from "./steady-attach.mjs";
import freeze from "./freeze.mjs";

export const SCENARIOS = [steady, burstIdle, killDuringReplay, killDuringSnapshot, doubleKill, hostRestart, slowHandler, forgetThenKill, freeze, polyglot, steadyAttach];
