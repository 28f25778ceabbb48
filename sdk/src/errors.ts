/**
 * Errors a stateful plugin throws from `snapshot` and `restore`. The SDK sends
 * them to the host as the typed plugwire.v1.ErrorDetail; any other exception
 * becomes SnapshotFailed or RestoreFailed with its message.
 */

/** The plugin could not serialize its state. */
export class SnapshotFailedError extends Error {
  override name = "SnapshotFailedError";
}

/** The snapshot bytes are corrupt or break the plugin's invariants. */
export class RestoreFailedError extends Error {
  override name = "RestoreFailedError";
}

/**
 * The snapshot is in a format version the plugin does not read. The host
 * discards it and the plugin continues from its default state.
 */
export class UnsupportedVersionError extends Error {
  override name = "UnsupportedVersionError";
  constructor(
    readonly version: number,
    readonly expected: readonly number[],
  ) {
    super(`unsupported snapshot version ${version} (expected one of ${expected.join(", ")})`);
  }
}
