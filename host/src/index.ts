export { createHost, Host } from "./host.js";
export type { HostOptions, FanOutResult } from "./host.js";
/** The operator admin API, composed with a started host by the application (the CLI does). */
export { serveAdmin, AdminServer } from "./admin/server.js";
export type { AdminServerOptions, AdminTlsOptions } from "./admin/server.js";
export { HostObserver, type HostObserverOptions } from "./admin/observe.js";
export { ADMIN_TOKEN_ENV, ADMIN_TOKEN_FILE, adminTokenPath, loadOrCreateAdminToken, readAdminTokenFile, type AdminToken } from "./admin/token.js";
export type { PluginConfig, AttachedPluginConfig, AttachConfig, PluginEntry, Capability, RestartType, OverflowPolicy } from "./config.js";
export { PLUGIN_DEFAULTS } from "./config.js";
export type { HostPorts, PeerDirectoryPort, ControlPort, IdentityPort, PeerEvent, PeerSource, NodeId } from "./ports.js";
export { MemoryPeerDirectory, hex } from "./ports.js";
export type { HostEvents, PluginState } from "./events.js";
export type { Build, LaunchTimings, PluginStatus, ShadowedKind, UpgradeResult } from "./supervisor/runner.js";
export type { StandbyStatus } from "./supervisor/standby.js";
export type { DeadLetter, DispatchOptions, PayloadEffect } from "./delivery/channel.js";
/** The largest payload (src + kind + body, in bytes) one dispatch can carry. */
export { MAX_ITEM_BYTES } from "./delivery/channel.js";
export { FileSnapshotStore, MemorySnapshotStore } from "./snapshot/store.js";
export type { SnapshotStore, SnapshotRecord, CorruptSnapshot, AdoptedSnapshots, FileSnapshotStoreOptions } from "./snapshot/store.js";
export { PlugwireError } from "@plugwire/proto";
export type { ErrorCode } from "@plugwire/proto";
