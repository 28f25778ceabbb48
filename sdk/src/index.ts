export { definePlugin } from "./plugin.js";
export type {
  Control,
  HandlerContext,
  Identity,
  PluginContext,
  PluginDefinition,
  Peers,
  StatefulHooks,
} from "./plugin.js";
export { serve } from "./serve.js";
export { RestoreFailedError, SnapshotFailedError, UnsupportedVersionError } from "./errors.js";
export { nodeIdFromHex, nodeIdToHex } from "./types.js";
export type { Capability, NodeId, Payload, PeerEvent, PeerSource, Snapshot } from "./types.js";
export type { Logger, LogLevel } from "./log.js";
export { SDK_VERSION } from "./version.js";
