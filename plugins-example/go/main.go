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
	"encoding/hex"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugwire "github.com/plugwire/plugwire/sdk/go"
)

func main() {
	plugwire.Serve(&presence{names: map[string]string{}})
}

// presence remembers the latest name of every peer seen since Start.
type presence struct {
	plugwire.BasePlugin // no Shutdown hook

	mu    sync.Mutex
	names map[string]string // hex node id -> name
}

func (*presence) Name() string { return "presence-go" }

func (*presence) PayloadKinds() []string { return []string{"echo-go.ping", "presence-go.who"} }

func (p *presence) Start(ctx *plugwire.Context) error {
	if !ctx.Has(plugwire.CapabilityPeers) {
		ctx.Log().Warn("not watching peers: the host did not grant the peers capability")
		return nil
	}
	// ctx lives until shutdown: the watch ends with it.
	go p.watchPeers(ctx)
	return nil
}

func (p *presence) HandlePayload(ctx *plugwire.Context, src []byte, kind string, body []byte) error {
	switch kind {
	case "echo-go.ping":
		return ctx.SendDirect(src, append([]byte("pong:"), body...))
	case "presence-go.who":
		name, known, err := ctx.LookupName(src)
		if err != nil {
			return err
		}
		key, keyKnown, err := ctx.LookupX25519(src)
		if err != nil {
			return err
		}
		ctx.Log().Info("who",
			"peer", hex.EncodeToString(src),
			"name", name, "name_known", known,
			"x25519", hex.EncodeToString(key), "x25519_known", keyKnown,
		)
	}
	return nil
}

func (p *presence) OnPeerForgotten(ctx *plugwire.Context, nodeID []byte) error {
	id := hex.EncodeToString(nodeID)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, known := p.names[id]
	delete(p.names, id)
	ctx.Log().Info("dropped a forgotten peer", "peer", id, "seq", ctx.Seq(), "was_known", known, "known_peers", len(p.names))
	return nil
}

// watchPeers follows the peer directory until ctx ends, resubscribing after
// a broken stream.
func (p *presence) watchPeers(ctx *plugwire.Context) {
	for ctx.Err() == nil {
		for event, err := range ctx.WatchPeers() {
			if err != nil {
				if code := status.Code(err); code == codes.PermissionDenied || code == codes.Unauthenticated {
					ctx.Log().Error("cannot watch peers", "error", err.Error())
					return
				}
				ctx.Log().Warn("peer watch broke; resubscribing", "error", err.Error())
				break
			}
			p.record(ctx, event)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (p *presence) record(ctx *plugwire.Context, event plugwire.PeerEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := hex.EncodeToString(event.NodeID)
	if event.Forgotten {
		delete(p.names, id)
		ctx.Log().Info("peer forgotten", "peer", id, "known_peers", len(p.names))
		return
	}
	p.names[id] = event.Name
	ctx.Log().Info("peer seen", "peer", id, "name", event.Name, "source", string(event.Source), "known_peers", len(p.names))
}
