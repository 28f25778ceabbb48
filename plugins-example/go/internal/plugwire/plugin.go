// Package plugwire does the protocol chores of a plugwire plugin written in
// Go, so that a plugin's main package reads like a plugin: the magic cookie,
// version negotiation, the unix socket and handshake line, the auth token on
// every call, grpc.health.v1, the Deliver stream's items (payloads and
// forgotten peers) applied in seq order with cumulative acks and effects, chunked snapshots with typed errors, and exiting on Shutdown,
// SIGTERM or stdin EOF. docs/protocol.md is the specification it follows.
package plugwire

import (
	"context"
	"log/slog"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
)

// Plugin describes a plugin. Name, PayloadKinds and HandlePayload are
// required; the other hooks are optional.
type Plugin struct {
	// Stable plugin name, reported in Describe and used in logs and errors.
	Name string
	// Payload kinds the plugin claims.
	PayloadKinds []string
	// Start runs once the host has handed over the context. ctx is cancelled
	// when the plugin begins to shut down, so goroutines started here can use
	// it as their lifetime.
	Start func(ctx context.Context, pc *Context) error
	// HandlePayload handles one payload. Payloads arrive one at a time, in
	// seq order. A returned error is reported in the payload's ack and the
	// payload is not retried; effects recorded on h are then dropped.
	HandlePayload func(ctx context.Context, p Payload, h *Handler) error
	// PeerForgotten is told that the daemon forgot a peer: drop any state
	// kept about it. Forgotten peers are items of the Deliver stream, so it
	// runs in seq order among the payloads, never during one, and is replayed
	// after a restore like them: state restored from an older snapshot
	// forgets the peer again. A returned error is reported in the item's ack
	// and not retried. Effects recorded on h travel with that ack.
	PeerForgotten func(ctx context.Context, nodeID []byte, h *Handler) error
	// Shutdown cleans up; ctx carries the host's deadline.
	Shutdown func(ctx context.Context, pc *Context) error
	// Stateful is set only by plugins whose state the host should snapshot.
	Stateful *Stateful
}

// Stateful is the snapshot surface of a stateful plugin. Snapshot and Restore
// never run while a handler (HandlePayload, PeerForgotten) runs.
type Stateful struct {
	// Stable id the host keys stored snapshots by.
	ID string
	// Snapshot format versions Restore understands.
	Versions []uint32
	// Snapshot serializes the state. Return a SnapshotFailedError, or any
	// error, when that is impossible.
	Snapshot func() (Snapshot, error)
	// Restore replaces the state. Return an UnsupportedVersionError for a
	// format it does not read (leaving the state untouched) and a
	// RestoreFailedError, or any error, for bytes it cannot apply.
	Restore func(Snapshot) error
}

// Snapshot is a plugin's state in one format version.
type Snapshot struct {
	Version uint32
	Bytes   []byte
}

// Payload is one inbound payload.
type Payload struct {
	Seq  uint64
	Src  []byte
	Kind string
	Body []byte
	// True when the host delivered this payload before: to an earlier launch
	// that never acked it, or as a replay after a restore.
	Redelivered bool
}

// Capability is something the host lets a plugin do on HostService.
type Capability string

const (
	CapabilityPeers    Capability = "peers"
	CapabilityControl  Capability = "control"
	CapabilityIdentity Capability = "identity"
)

var capabilityOfWire = map[pb.Capability]Capability{
	pb.Capability_CAPABILITY_PEERS:    CapabilityPeers,
	pb.Capability_CAPABILITY_CONTROL:  CapabilityControl,
	pb.Capability_CAPABILITY_IDENTITY: CapabilityIdentity,
}

// Context is what a plugin knows about its launch. It is filled in by Start.
type Context struct {
	Name       string
	InstanceID string
	DataDir    string
	// The plugin's config as JSON object text ("{}" when there is none).
	ConfigJSON   string
	Capabilities map[Capability]bool
	// Client of the host's HostService, carrying the auth token.
	Host *HostClient
	// JSON lines on stderr, with level, msg and time in milliseconds.
	Log *slog.Logger
}

// Has reports whether the host granted the capability.
func (c *Context) Has(capability Capability) bool { return c.Capabilities[capability] }

// Handler is the context of one handler run (HandlePayload or
// PeerForgotten).
type Handler struct {
	*Context
	// Seq of the item being applied.
	Seq         uint64
	effects     []*pb.Effect
	routedIndex uint32
}

// SendDirect asks the host to send frame to a directly connected peer. It is
// an effect: the host performs it when it receives this item's ack, and
// exactly once even if the item is redelivered or replayed.
func (h *Handler) SendDirect(peer, frame []byte) error {
	if !h.Has(CapabilityControl) {
		return errMissingCapability(h.Name, CapabilityControl)
	}
	h.effects = append(h.effects, &pb.Effect{Effect: &pb.Effect_SendDirect{SendDirect: &pb.SendDirect{Peer: peer, Frame: frame}}})
	return nil
}

// SendRouted sends frame through the host's routing table and reports whether
// a route existed. The call names this item (seq, index) so that the host
// answers a replayed item's call without sending twice.
func (h *Handler) SendRouted(ctx context.Context, dst, frame []byte) (bool, error) {
	origin := &pb.EffectOrigin{Seq: h.Seq, Index: h.routedIndex}
	h.routedIndex++
	return h.Host.sendRouted(ctx, dst, frame, origin)
}
