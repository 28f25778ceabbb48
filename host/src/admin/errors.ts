/**
 * Admin API errors: a PlugwireError travels as a Connect error whose status
 * is the code's gRPC status and whose `plugwire-error-code` header holds the
 * plugwire code, so a client gets the typed error back.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { PlugwireError, STATUS_OF_CODE, type ErrorCode } from "@plugwire/proto";

/** Response header of an admin error that holds its plugwire error code (e.g. no_plugin_for_kind). */
export const ERROR_CODE_HEADER = "plugwire-error-code";

/** Maps any error to a Connect error; gRPC and Connect share status codes. */
export function toConnectError(e: unknown): ConnectError {
  const err = PlugwireError.from(e);
  return new ConnectError(err.message, STATUS_OF_CODE[err.code] as number as Code, new Headers({ [ERROR_CODE_HEADER]: err.code }), undefined, err);
}

/** The host's typed error inside a Connect error, when it carries one. */
export function fromConnectError(e: ConnectError): PlugwireError | undefined {
  const code = e.metadata.get(ERROR_CODE_HEADER);
  if (code === null || !Object.hasOwn(STATUS_OF_CODE, code)) return undefined;
  return new PlugwireError(code as ErrorCode, e.rawMessage, { cause: e });
}
