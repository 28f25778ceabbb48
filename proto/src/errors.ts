import * as grpc from "@grpc/grpc-js";
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ErrorDetailSchema, type ErrorDetail } from "./gen/plugwire/v1/types_pb.js";
import { MAX_ERROR_TEXT_BYTES, truncateText } from "./limits.js";
import { ERROR_DETAIL_TRAILER } from "./wire.js";

/**
 * What went wrong, independent of where. Each code maps to exactly one gRPC
 * status code in {@link STATUS_OF_CODE}; that table is the only place the
 * mapping lives.
 */
export type ErrorCode =
  | "invalid_argument"
  | "invalid_config"
  | "no_plugin_for_kind"
  | "handler_failed"
  | "handshake_failed"
  | "handshake_timeout"
  | "protocol_mismatch"
  | "socket_path_too_long"
  | "plugin_exited"
  | "plugin_unavailable"
  | "plugin_failed"
  | "plugin_refused"
  | "queue_full"
  | "payload_too_large"
  | "too_many_effects"
  | "unauthenticated"
  | "permission_denied"
  | "snapshot_failed"
  | "restore_failed"
  | "unsupported_version"
  | "snapshot_too_large"
  | "deadline_exceeded"
  | "cancelled"
  | "internal";

/** The single mapping of plugwire error codes to gRPC status codes. */
export const STATUS_OF_CODE: Readonly<Record<ErrorCode, grpc.status>> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  invalid_config: grpc.status.INVALID_ARGUMENT,
  no_plugin_for_kind: grpc.status.NOT_FOUND,
  handler_failed: grpc.status.ABORTED,
  handshake_failed: grpc.status.UNAVAILABLE,
  handshake_timeout: grpc.status.DEADLINE_EXCEEDED,
  protocol_mismatch: grpc.status.FAILED_PRECONDITION,
  socket_path_too_long: grpc.status.INVALID_ARGUMENT,
  plugin_exited: grpc.status.UNAVAILABLE,
  plugin_unavailable: grpc.status.UNAVAILABLE,
  plugin_failed: grpc.status.UNAVAILABLE,
  plugin_refused: grpc.status.FAILED_PRECONDITION,
  queue_full: grpc.status.RESOURCE_EXHAUSTED,
  payload_too_large: grpc.status.RESOURCE_EXHAUSTED,
  too_many_effects: grpc.status.RESOURCE_EXHAUSTED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  snapshot_failed: grpc.status.INTERNAL,
  restore_failed: grpc.status.INVALID_ARGUMENT,
  unsupported_version: grpc.status.FAILED_PRECONDITION,
  snapshot_too_large: grpc.status.RESOURCE_EXHAUSTED,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  cancelled: grpc.status.CANCELLED,
  internal: grpc.status.INTERNAL,
};

/** Codes for a bare gRPC status that arrived without an ErrorDetail. */
const CODE_OF_STATUS: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: "invalid_argument",
  [grpc.status.UNAUTHENTICATED]: "unauthenticated",
  [grpc.status.PERMISSION_DENIED]: "permission_denied",
  [grpc.status.DEADLINE_EXCEEDED]: "deadline_exceeded",
  [grpc.status.CANCELLED]: "cancelled",
  [grpc.status.UNAVAILABLE]: "plugin_unavailable",
  [grpc.status.RESOURCE_EXHAUSTED]: "queue_full",
};

export interface PlugwireErrorOptions {
  /** The plugin the error concerns. */
  plugin?: string;
  /** The typed stateful-plugin error, when there is one. */
  detail?: ErrorDetail;
  /** The plugin name a plugin's ErrorDetail claimed, when it is not the plugin the error came from. */
  claimedPlugin?: string;
  cause?: unknown;
}

/**
 * The one error class of plugwire. `message` says what happened, to which
 * plugin, and what to do; `code` is for programs.
 */
export class PlugwireError extends Error {
  override name = "PlugwireError";
  readonly code: ErrorCode;
  readonly plugin: string | undefined;
  readonly detail: ErrorDetail | undefined;
  /**
   * Set when the plugin's `plugwire-error-bin` trailer named another plugin
   * than the one the error came from: what it claimed. `plugin` and
   * `detail.plugin` then name the plugin that sent it.
   */
  readonly claimedPlugin: string | undefined;

  constructor(code: ErrorCode, message: string, options: PlugwireErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.plugin = options.plugin;
    this.detail = options.detail;
    this.claimedPlugin = options.claimedPlugin;
  }

  /** The gRPC status code this error travels as. */
  get grpcStatus(): grpc.status {
    return STATUS_OF_CODE[this.code];
  }

  /**
   * Converts anything thrown into a PlugwireError, keeping the original as
   * `cause`. A gRPC error keeps its typed ErrorDetail if it carried one.
   */
  static from(reason: unknown, fallback: ErrorCode = "internal", plugin?: string): PlugwireError {
    if (reason instanceof PlugwireError) return reason;
    if (isServiceError(reason)) return fromServiceError(reason, plugin);
    const message = reason instanceof Error ? reason.message : String(reason);
    return new PlugwireError(fallback, message, { plugin, cause: reason });
  }
}

/** Builds the typed stateful errors of the bmux contract. */
export const statefulErrors = {
  snapshotFailed(plugin: string, details: string): PlugwireError {
    return new PlugwireError("snapshot_failed", `plugin '${plugin}' failed to snapshot its state: ${details}`, {
      plugin,
      detail: create(ErrorDetailSchema, { plugin, kind: { case: "snapshotFailed", value: { details } } }),
    });
  },
  restoreFailed(plugin: string, details: string): PlugwireError {
    return new PlugwireError("restore_failed", `plugin '${plugin}' failed to restore its state: ${details}`, {
      plugin,
      detail: create(ErrorDetailSchema, { plugin, kind: { case: "restoreFailed", value: { details } } }),
    });
  },
  unsupportedVersion(plugin: string, version: number, expected: readonly number[]): PlugwireError {
    return new PlugwireError(
      "unsupported_version",
      `plugin '${plugin}' cannot read snapshot version ${version} (it reads ${expected.join(", ") || "none"})`,
      {
        plugin,
        detail: create(ErrorDetailSchema, {
          plugin,
          kind: { case: "unsupportedVersion", value: { version, expected: [...expected] } },
        }),
      },
    );
  },
};

export function isServiceError(e: unknown): e is grpc.ServiceError {
  return (
    e instanceof Error &&
    typeof (e as Partial<grpc.ServiceError>).code === "number" &&
    (e as Partial<grpc.ServiceError>).metadata instanceof grpc.Metadata
  );
}

/**
 * A gRPC error from a plugin (or any peer) as a PlugwireError. Its texts are
 * the sender's: the status details and the ErrorDetail's strings are cut to
 * MAX_ERROR_TEXT_BYTES. When the caller knows which plugin it called
 * (`plugin`), an ErrorDetail naming any other plugin is not passed on as that
 * plugin's error: `detail.plugin` is set to `plugin` and the name it claimed
 * is kept in `claimedPlugin`.
 */
function fromServiceError(e: grpc.ServiceError, plugin: string | undefined): PlugwireError {
  const raw = e.metadata.get(ERROR_DETAIL_TRAILER)[0];
  const text = truncateText(e.details || e.message, MAX_ERROR_TEXT_BYTES);
  if (raw instanceof Buffer) {
    try {
      const detail = boundDetail(fromBinary(ErrorDetailSchema, raw));
      const code: ErrorCode =
        detail.kind.case === "snapshotFailed"
          ? "snapshot_failed"
          : detail.kind.case === "restoreFailed"
            ? "restore_failed"
            : detail.kind.case === "unsupportedVersion"
              ? "unsupported_version"
              : "internal";
      // The caller's name for the plugin wins, in the error and in its detail.
      let claimedPlugin: string | undefined;
      if (plugin !== undefined && detail.plugin !== plugin) {
        claimedPlugin = detail.plugin;
        detail.plugin = plugin;
      }
      return new PlugwireError(code, text, { plugin: plugin ?? (detail.plugin || undefined), detail, claimedPlugin, cause: e });
    } catch (decodeError) {
      return new PlugwireError("internal", `${text} (and an undecodable ${ERROR_DETAIL_TRAILER} trailer)`, {
        plugin,
        cause: decodeError,
      });
    }
  }
  return new PlugwireError(CODE_OF_STATUS[e.code] ?? "internal", text, { plugin, cause: e });
}

/**
 * A gRPC status carried as data (a failed call on HostService.Calls: its
 * `CallError`) as the PlugwireError the same status would give as a call's
 * status: the same CODE_OF_STATUS table, the text cut to MAX_ERROR_TEXT_BYTES.
 */
export function fromStatus(code: number, details: string, plugin?: string): PlugwireError {
  return new PlugwireError(CODE_OF_STATUS[code as grpc.status] ?? "internal", truncateText(details, MAX_ERROR_TEXT_BYTES), { plugin });
}

/** Most snapshot versions kept from an UnsupportedVersion detail's `expected`. */
const MAX_DETAIL_VERSIONS = 64;

/** The ErrorDetail with its strings cut to MAX_ERROR_TEXT_BYTES (the plugin name to 256 bytes) and `expected` to 64 entries. */
function boundDetail(detail: ErrorDetail): ErrorDetail {
  detail.plugin = truncateText(detail.plugin, 256);
  const kind = detail.kind;
  if (kind.case === "snapshotFailed" || kind.case === "restoreFailed") kind.value.details = truncateText(kind.value.details, MAX_ERROR_TEXT_BYTES);
  if (kind.case === "unsupportedVersion" && kind.value.expected.length > MAX_DETAIL_VERSIONS) {
    kind.value.expected = kind.value.expected.slice(0, MAX_DETAIL_VERSIONS);
  }
  return detail;
}

/** Turns an error into the status object a grpc-js handler reports. */
export function toServiceStatus(e: unknown): Partial<grpc.StatusObject> {
  const err = PlugwireError.from(e);
  const metadata = new grpc.Metadata();
  // Both travel in HTTP/2 trailers, where megabytes break the connection
  // rather than the call: cut them as a receiver would (MAX_ERROR_TEXT_BYTES).
  if (err.detail) metadata.set(ERROR_DETAIL_TRAILER, Buffer.from(toBinary(ErrorDetailSchema, boundDetail(clone(ErrorDetailSchema, err.detail)))));
  // grpc-js encodeURI()s the details, which throws on a lone UTF-16
  // surrogate (for example one quoted from bad JSON): send well-formed text.
  return { code: err.grpcStatus, details: toWellFormed(truncateText(err.message, MAX_ERROR_TEXT_BYTES)), metadata };
}

/** Replaces lone UTF-16 surrogates with U+FFFD, so the text survives encodeURI. */
function toWellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}
