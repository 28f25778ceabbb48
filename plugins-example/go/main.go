// Command presence-go is an example plugwire plugin in Go.
//
//   - echo-go.ping answers the sender with "pong:" + body, as an effect that
//     rides on the payload's ack.
//   - presence-go.who looks up the sender's name and X25519 key on the host
//     and logs them.
//   - From Start on, it watches the host's peer directory and keeps the names
//     it has seen.
//   - A forgotten peer (an item of the Deliver stream, in seq order among the
//     payloads) drops that peer's name.
//
// The host runs it as plugins-example/go/bin/presence-go (built by
// scripts/setup-polyglot.sh) and grants it the peers and control capabilities.
package main

import (
	"context"
	"encoding/hex"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
	"github.com/plugwire/plugwire/plugins-example/go/internal/plugwire"
)

func main() {
	p := &presence{names: map[string]string{}}
	plugwire.Serve(plugwire.Plugin{
		Name:          "presence-go",
		PayloadKinds:  []string{"echo-go.ping", "presence-go.who"},
		Start:         p.start,
		HandlePayload: p.handlePayload,
		PeerForgotten: p.peerForgotten,
	})
}

// presence remembers the latest name of every peer seen since Start.
type presence struct {
	mu    sync.Mutex
	names map[string]string // hex node id -> name
}

func (p *presence) start(ctx context.Context, pc *plugwire.Context) error {
	if !pc.Has(plugwire.CapabilityPeers) {
		pc.Log.Warn("not watching peers: the host did not grant the peers capability")
		return nil
	}
	go p.watchPeers(ctx, pc)
	return nil
}

func (p *presence) handlePayload(ctx context.Context, payload plugwire.Payload, h *plugwire.Handler) error {
	switch payload.Kind {
	case "echo-go.ping":
		return h.SendDirect(payload.Src, append([]byte("pong:"), payload.Body...))
	case "presence-go.who":
		name, known, err := h.Host.LookupName(ctx, payload.Src)
		if err != nil {
			return err
		}
		key, keyKnown, err := h.Host.LookupX25519(ctx, payload.Src)
		if err != nil {
			return err
		}
		h.Log.Info("who",
			"peer", hex.EncodeToString(payload.Src),
			"name", name, "name_known", known,
			"x25519", hex.EncodeToString(key), "x25519_known", keyKnown,
		)
	}
	return nil
}

func (p *presence) peerForgotten(_ context.Context, nodeID []byte, h *plugwire.Handler) error {
	id := hex.EncodeToString(nodeID)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, known := p.names[id]
	delete(p.names, id)
	h.Log.Info("dropped a forgotten peer", "peer", id, "seq", h.Seq, "was_known", known, "known_peers", len(p.names))
	return nil
}

// watchPeers follows the peer directory until ctx ends, resubscribing after
// a broken stream.
func (p *presence) watchPeers(ctx context.Context, pc *plugwire.Context) {
	for ctx.Err() == nil {
		for event, err := range pc.Host.WatchPeers(ctx) {
			if err != nil {
				if code := status.Code(err); code == codes.PermissionDenied || code == codes.Unauthenticated {
					pc.Log.Error("cannot watch peers", "error", err.Error())
					return
				}
				pc.Log.Warn("peer watch broke; resubscribing", "error", err.Error())
				break
			}
			p.record(pc, event)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (p *presence) record(pc *plugwire.Context, event *pb.PeerEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e := event.Event.(type) {
	case *pb.PeerEvent_Seen:
		id := hex.EncodeToString(e.Seen.NodeId)
		p.names[id] = e.Seen.Name
		pc.Log.Info("peer seen", "peer", id, "name", e.Seen.Name, "source", e.Seen.Source.String(), "known_peers", len(p.names))
	case *pb.PeerEvent_Forgotten:
		id := hex.EncodeToString(e.Forgotten.NodeId)
		delete(p.names, id)
		pc.Log.Info("peer forgotten", "peer", id, "known_peers", len(p.names))
	}
}
