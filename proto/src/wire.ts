/**
 * Constants of the plugwire v1 wire protocol, shared by the host, the SDK and
 * the conformance kit. docs/protocol.md is the normative description.
 */

/** The protocol version this code speaks. */
export const PROTOCOL_VERSION = 1;

/** Environment variables the host sets for a plugin. */
export const ENV = {
  /** Must equal {@link MAGIC_COOKIE_VALUE}; proves a host started the plugin. */
  magicCookie: "PLUGWIRE_MAGIC_COOKIE",
  /** Comma-separated protocol versions the host accepts, e.g. "1". */
  protocolVersions: "PLUGWIRE_PROTOCOL_VERSIONS",
  /** A private (0700) directory the plugin creates its socket in. */
  socketDir: "PLUGWIRE_SOCKET_DIR",
  /** Where HostService listens, as a gRPC target such as unix:///tmp/pw-x/host.sock. */
  hostAddress: "PLUGWIRE_HOST_ADDRESS",
  /**
   * The per-launch secret carried by every call in both directions, in the
   * legacy `tokenVia: env` mode only: by default the host writes it on the
   * plugin's stdin instead (see {@link TOKEN_LINE_PREFIX}).
   */
  authToken: "PLUGWIRE_AUTH_TOKEN",
  /**
   * Where the plugin reads its auth token: `stdin` (the first line on stdin,
   * the default) or `env` (PLUGWIRE_AUTH_TOKEN). Unset means `env`, as an
   * older host gives it.
   */
  authTokenSource: "PLUGWIRE_AUTH_TOKEN_SOURCE",
  /** Identifies this launch; short, [A-Za-z0-9._-] only. */
  instanceId: "PLUGWIRE_INSTANCE_ID",
  /** The plugin's configured name, for the plugin's own logs. */
  pluginName: "PLUGWIRE_PLUGIN_NAME",
} as const;

/** The magic cookie value. It is not a secret; it only stops accidental runs. */
export const MAGIC_COOKIE_VALUE = "d5b0c3b2-plugwire-v1-7a41f9e6";

/**
 * First word of the line that carries the auth token on the plugin's stdin:
 * `PLUGWIRE_TOKEN <token>\n`, written by the host right after spawn when
 * PLUGWIRE_AUTH_TOKEN_SOURCE is `stdin` (docs/protocol.md §6).
 */
export const TOKEN_LINE_PREFIX = "PLUGWIRE_TOKEN";

/** How long a plugin waits for the token line on stdin before it gives up. */
export const TOKEN_LINE_TIMEOUT_MS = 5_000;

/** The longest token line a plugin reads, newline included, in bytes. */
export const MAX_TOKEN_LINE_BYTES = 1024;

/** First token of the handshake line a plugin prints on stdout. */
export const HANDSHAKE_PREFIX = "PLUGWIRE_HANDSHAKE";

/** Metadata key of the auth token; the value is `Bearer <token>`. */
export const AUTH_METADATA_KEY = "authorization";

/** Binary trailer that carries a serialized plugwire.v1.ErrorDetail. */
export const ERROR_DETAIL_TRAILER = "plugwire-error-bin";

/** Message size limit set on both ends of every channel, in bytes. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Size of the chunks snapshots are streamed in, in bytes. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;

/**
 * Longest unix socket path the host and SDK accept: sun_path is 108 bytes on
 * Linux and 104 on macOS, both including the terminating NUL.
 */
export const MAX_SOCKET_PATH_BYTES = 103;

/** The human explanation printed by a plugin started without the cookie. */
export function missingCookieMessage(program: string): string {
  return (
    `This is a plugwire plugin (${program}); it is started by a plugwire host, not run directly.\n` +
    `Add it to a host config and run \`plugwire run --config FILE\`, or test it with \`plugwire check -- COMMAND\`.\n`
  );
}

/** The largest protocol version: `protocol_version` fields are uint32. */
const MAX_PROTOCOL_VERSION = 0xffff_ffff;

/**
 * Parses PLUGWIRE_PROTOCOL_VERSIONS strictly (docs/protocol.md §3): decimal
 * numbers from 0 to 4294967295 (uint32), separated by commas, each with
 * optional spaces or tabs around it. Returns undefined for anything else,
 * such as an empty value or entry (`1,,2`, `1,`), a sign, a fraction or a
 * letter. (No version is 0, so no plugin chooses it.)
 */
export function parseProtocolVersions(value: string): number[] | undefined {
  const versions: number[] = [];
  for (const entry of value.split(",")) {
    const digits = /^[ \t]*([0-9]+)[ \t]*$/.exec(entry)?.[1];
    if (digits === undefined) return undefined;
    const version = Number(digits);
    if (version > MAX_PROTOCOL_VERSION) return undefined;
    versions.push(version);
  }
  return versions;
}

/**
 * Whether `value` can go in the handshake line as a field value: at least
 * one byte, none of them whitespace or a control character (docs/protocol.md §5).
 */
export function isHandshakeValue(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return value.length > 0 && !/[\x00-\x20\x7f]/.test(value);
}
