package plugwire

import "time"

// Constants of the plugwire v1 wire protocol (proto/src/wire.ts).
const (
	ProtocolVersion    = 1
	MagicCookieValue   = "d5b0c3b2-plugwire-v1-7a41f9e6"
	HandshakePrefix    = "PLUGWIRE_HANDSHAKE"
	AuthMetadataKey    = "authorization"
	ErrorDetailTrailer = "plugwire-error-bin"
	MaxMessageBytes    = 16 * 1024 * 1024
	SnapshotChunkBytes = 1024 * 1024
	MaxSocketPathBytes = 103
	// MaxErrorTextBytes: error texts a plugin sends are cut to this (docs/protocol.md §13).
	MaxErrorTextBytes = 4096

	// SDKVersion is reported in Describe.
	SDKVersion = "0.1.0"
)

// Environment variables the host sets.
const (
	EnvMagicCookie      = "PLUGWIRE_MAGIC_COOKIE"
	EnvProtocolVersions = "PLUGWIRE_PROTOCOL_VERSIONS"
	EnvSocketDir        = "PLUGWIRE_SOCKET_DIR"
	EnvHostAddress      = "PLUGWIRE_HOST_ADDRESS"
	EnvAuthToken        = "PLUGWIRE_AUTH_TOKEN"
	EnvAuthTokenSource  = "PLUGWIRE_AUTH_TOKEN_SOURCE"
	EnvInstanceID       = "PLUGWIRE_INSTANCE_ID"
	EnvPluginName       = "PLUGWIRE_PLUGIN_NAME"
)

// Timings of this implementation.
const (
	// While a batch of items is being applied, an ack goes out after this
	// many items or this long, whichever comes first; and always once the
	// batch is drained.
	maxUnacked  = 512
	ackInterval = 20 * time.Millisecond
	// How long the Shutdown hook may run on stdin EOF or SIGTERM, and when
	// the host's Shutdown deadline is 0.
	exitGrace = 500 * time.Millisecond
	// How long in-flight calls may finish once the plugin decided to exit.
	stopGrace = 200 * time.Millisecond
)

// supportedVersions are the protocol versions this package implements.
var supportedVersions = []uint32{ProtocolVersion}
