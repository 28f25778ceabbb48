// Package plugwire is the Go SDK of plugwire: it runs a plugin, written as a
// type that implements [Plugin] (and [Stateful] if the host should snapshot
// its state), as the out-of-process plugin a plugwire host launches.
//
//	import plugwire "github.com/plugwire/plugwire/sdk/go"
//
//	func main() { plugwire.Serve(&myPlugin{}) }
//
// Serve does the protocol chores (docs/protocol.md is the specification it
// follows): the magic cookie, version negotiation, the token line on stdin
// (or the legacy PLUGWIRE_AUTH_TOKEN), the unix socket and handshake line,
// the token on every call in both directions, one connection (the host's)
// and SO_PEERCRED, grpc.health.v1, the Deliver stream's items (payloads and
// forgotten peers) applied one at a time in seq order with cumulative acks,
// effects riding on the acks and duplicates skipped, chunked snapshots with
// typed errors, JSON log lines on stderr, and the shutdown order on
// Shutdown, SIGTERM or stdin EOF.
package plugwire

import (
	"context"
	"encoding/json"
	"iter"
	"log/slog"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// Plugin is a plugwire plugin. Embed [BasePlugin] to get no-op Start,
// OnPeerForgotten and Shutdown.
//
// The SDK never runs two of HandlePayload, OnPeerForgotten and (for a
// [Stateful] plugin) Snapshot and Restore at once, so state they alone touch
// needs no lock. Start and Shutdown may run concurrently with them, and so
// may goroutines the plugin starts.
type Plugin interface {
	// Name is the plugin's stable name, reported in Describe and used in
	// logs and errors.
	Name() string
	// PayloadKinds are the payload kinds the plugin claims.
	PayloadKinds() []string
	// Start runs once, when the host hands over the launch's config, data
	// dir and capabilities. ctx stays valid (and is not cancelled) until the
	// plugin begins to shut down, so goroutines started here can keep it and
	// use it as their lifetime and to call the host. An error fails the
	// launch.
	Start(ctx *Context) error
	// HandlePayload handles one payload from peer src. Payloads arrive one at
	// a time, in seq order. A returned error (or a panic) is reported in the
	// payload's ack and the payload is not retried; the effects recorded on
	// ctx are then dropped.
	HandlePayload(ctx *Context, src []byte, kind string, body []byte) error
	// OnPeerForgotten is told that the daemon forgot a peer: drop any state
	// kept about it. Forgotten peers are items of the Deliver stream, so it
	// runs in seq order among the payloads, never during one, and is replayed
	// after a restore like them. A returned error is reported in the item's
	// ack and not retried.
	OnPeerForgotten(ctx *Context, nodeID []byte) error
	// Shutdown cleans up. ctx carries the host's deadline. It runs once, after
	// the last item was handled and acked.
	Shutdown(ctx *Context) error
}

// Stateful is implemented by a plugin whose state the host should snapshot
// and restore after a crash. Snapshot and Restore never run while a handler
// (HandlePayload, OnPeerForgotten) runs.
type Stateful interface {
	// ID is the stable id the host keys stored snapshots by.
	ID() string
	// Versions are the snapshot format versions Restore reads.
	Versions() []uint32
	// Snapshot serializes the state. Return a [*SnapshotFailedError] (see
	// [SnapshotFailed]), or any error, when that is impossible.
	Snapshot() (version uint32, data []byte, err error)
	// Restore replaces the state with a snapshot. Return a
	// [*UnsupportedVersionError] for a format it does not read, leaving the
	// state untouched (the host then discards the snapshot and the plugin
	// starts from its default state), and a [*RestoreFailedError] (see
	// [RestoreFailed]), or any error, for bytes it cannot apply. The SDK
	// refuses a version not in Versions before calling Restore.
	Restore(version uint32, data []byte) error
}

// BasePlugin gives a plugin no-op Start, OnPeerForgotten and Shutdown hooks.
// Embed it and override the ones the plugin needs.
type BasePlugin struct{}

func (BasePlugin) Start(*Context) error                   { return nil }
func (BasePlugin) OnPeerForgotten(*Context, []byte) error { return nil }
func (BasePlugin) Shutdown(*Context) error                { return nil }

// Capability is something the host lets a plugin do on HostService.
type Capability string

const (
	// CapabilityPeers: LookupX25519, LookupName, WatchPeers.
	CapabilityPeers Capability = "peers"
	// CapabilityControl: SendDirect, SendRouted.
	CapabilityControl Capability = "control"
	// CapabilityIdentity: SigningSeed.
	CapabilityIdentity Capability = "identity"
)

var capabilityOfWire = map[pb.Capability]Capability{
	pb.Capability_CAPABILITY_PEERS:    CapabilityPeers,
	pb.Capability_CAPABILITY_CONTROL:  CapabilityControl,
	pb.Capability_CAPABILITY_IDENTITY: CapabilityIdentity,
}

// launch is what the plugin knows about its launch, filled in by Start.
type launch struct {
	name       string
	instanceID string
	dataDir    string
	configJSON string
	caps       map[Capability]bool
	host       *hostClient
	log        *slog.Logger
}

// item is the handler run of one Deliver item: the effects it records.
type itemRun struct {
	seq         uint64
	redelivered bool
	effects     []*pb.Effect
	routedIndex uint32
}

// Context is what every hook gets: a [context.Context] for cancellation and
// deadlines, the launch (name, data dir, config, capabilities, log) and the
// host's ports (LookupX25519, LookupName, WatchPeers, SendDirect, SendRouted,
// SigningSeed).
//
// In Start it lives until the plugin shuts down; in HandlePayload and
// OnPeerForgotten it belongs to that item, and SendDirect and SendRouted are
// effects of the item (see their docs); in Shutdown it carries the host's
// deadline. Do not keep a handler's Context after the handler returns:
// effects recorded on it then go nowhere; keep Start's for goroutines.
type Context struct {
	context.Context
	launch *launch
	item   *itemRun
}

// WithContext returns a copy of c whose cancellation and values are those of
// ctx (for a timeout, say). Effects recorded through the copy are the
// original's.
func (c *Context) WithContext(ctx context.Context) *Context {
	return &Context{Context: ctx, launch: c.launch, item: c.item}
}

// Name is the plugin's name.
func (c *Context) Name() string { return c.launch.name }

// InstanceID identifies this launch of the plugin.
func (c *Context) InstanceID() string { return c.launch.instanceID }

// DataDir is the plugin's private data directory, kept across launches.
func (c *Context) DataDir() string { return c.launch.dataDir }

// ConfigJSON is the plugin's config from the host config, as JSON object
// text ("{}" when there is none).
func (c *Context) ConfigJSON() string { return c.launch.configJSON }

// DecodeConfig unmarshals the plugin's config into v.
func (c *Context) DecodeConfig(v any) error { return json.Unmarshal([]byte(c.launch.configJSON), v) }

// Has reports whether the host granted the capability.
func (c *Context) Has(capability Capability) bool { return c.launch.caps[capability] }

// Log writes JSON lines on stderr, with level, msg and time in milliseconds,
// which the host forwards to its own log.
func (c *Context) Log() *slog.Logger { return c.launch.log }

// Seq is the seq of the item being handled, 0 outside HandlePayload and
// OnPeerForgotten.
func (c *Context) Seq() uint64 {
	if c.item == nil {
		return 0
	}
	return c.item.seq
}

// Redelivered reports whether the host delivered the item being handled
// before: to an earlier launch that never acked it, or as a replay after a
// restore.
func (c *Context) Redelivered() bool { return c.item != nil && c.item.redelivered }

// LookupX25519 returns the peer's X25519 public key, or ok=false if the host
// does not know the peer. Needs [CapabilityPeers].
func (c *Context) LookupX25519(nodeID []byte) (key []byte, ok bool, err error) {
	return c.launch.host.lookupX25519(c, nodeID)
}

// LookupName returns the peer's latest friendly name, or ok=false if the
// host does not know the peer. Needs [CapabilityPeers].
func (c *Context) LookupName(nodeID []byte) (name string, ok bool, err error) {
	return c.launch.host.lookupName(c, nodeID)
}

// WatchPeers yields every peer event the host publishes after the call
// starts, until c is cancelled (then the sequence just ends) or the stream
// fails (then it yields the error last). Needs [CapabilityPeers].
func (c *Context) WatchPeers() iter.Seq2[PeerEvent, error] {
	return c.launch.host.watchPeers(c)
}

// SendDirect sends frame to a directly connected peer. Needs
// [CapabilityControl].
//
// In HandlePayload and OnPeerForgotten it is an effect: it returns at once
// and the host performs it when it receives the item's ack, exactly once even
// if the item is redelivered or replayed, and not at all if the handler fails.
// Elsewhere it is a call to the host, best effort.
func (c *Context) SendDirect(peer, frame []byte) error {
	if c.item == nil {
		return c.launch.host.sendDirect(c, peer, frame)
	}
	if !c.Has(CapabilityControl) {
		return errMissingCapability(c.launch.name, CapabilityControl)
	}
	c.item.effects = append(c.item.effects, &pb.Effect{Effect: &pb.Effect_SendDirect{SendDirect: &pb.SendDirect{Peer: peer, Frame: frame}}})
	return nil
}

// SendRouted sends frame through the host's routing table and reports
// whether a route existed. Needs [CapabilityControl]. In HandlePayload and
// OnPeerForgotten the call names the item (seq, index) so that the host
// answers a replayed item's call without sending twice.
func (c *Context) SendRouted(dst, frame []byte) (routed bool, err error) {
	var origin *pb.EffectOrigin
	if c.item != nil {
		origin = &pb.EffectOrigin{Seq: c.item.seq, Index: c.item.routedIndex}
		c.item.routedIndex++
	}
	return c.launch.host.sendRouted(c, dst, frame, origin)
}

// SigningSeed returns the 32-byte Ed25519 signing seed of the local
// identity. Needs [CapabilityIdentity].
func (c *Context) SigningSeed() ([]byte, error) { return c.launch.host.signingSeed(c) }

// PeerSource says how the host learned of a peer.
type PeerSource string

const (
	PeerSourceUnspecified PeerSource = ""
	// Over a direct session with the peer.
	PeerSourceDirect PeerSource = "direct"
	// Through the multi-hop control plane.
	PeerSourceRouted PeerSource = "routed"
)

// PeerEvent is one event of WatchPeers: a peer seen (or seen again, with
// its latest name), or forgotten.
type PeerEvent struct {
	// Forgotten is true when the daemon forgot the peer; then only NodeID is set.
	Forgotten bool
	NodeID    []byte
	// X25519 public key of the peer (32 bytes).
	X25519 []byte
	// Latest friendly name the peer advertised; may be empty.
	Name   string
	Source PeerSource
}

func peerEventOfWire(e *pb.PeerEvent) (PeerEvent, bool) {
	switch ev := e.GetEvent().(type) {
	case *pb.PeerEvent_Seen:
		source := PeerSourceUnspecified
		switch ev.Seen.Source {
		case pb.PeerSource_PEER_SOURCE_DIRECT:
			source = PeerSourceDirect
		case pb.PeerSource_PEER_SOURCE_ROUTED:
			source = PeerSourceRouted
		}
		return PeerEvent{NodeID: ev.Seen.NodeId, X25519: ev.Seen.X25519Pub, Name: ev.Seen.Name, Source: source}, true
	case *pb.PeerEvent_Forgotten:
		return PeerEvent{Forgotten: true, NodeID: ev.Forgotten.NodeId}, true
	}
	return PeerEvent{}, false
}
