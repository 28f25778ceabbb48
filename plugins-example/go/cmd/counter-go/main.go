// Command counter-go is an example stateful plugwire plugin in Go, the twin
// of the TypeScript and Python counters.
//
//   - counter-go.hit counts hits per peer (by the hex of the sender's node id).
//   - counter-go.ping answers the sender with "pong:" + body, as an effect
//     that rides on the payload's ack.
//   - A forgotten peer (an item of the Deliver stream, in seq order among the
//     payloads) wipes that peer's count.
//   - The counts are snapshotted as JSON (id example.counter-go, version 1).
//     After a crash the host restores the latest snapshot and replays the
//     items after it, forgets included, so the counts end exactly as if no
//     crash had happened.
//
// The host runs it as plugins-example/go/bin/counter-go (built by
// scripts/setup-polyglot.sh) and grants it the control capability.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/plugwire/plugwire/plugins-example/go/internal/plugwire"
)

const snapshotVersion = 1

func main() {
	// The helper never runs two of HandlePayload, PeerForgotten, Snapshot and
	// Restore at once, so the counts need no lock.
	c := &counter{counts: map[string]uint64{}}
	plugwire.Serve(plugwire.Plugin{
		Name:          "counter-go",
		PayloadKinds:  []string{"counter-go.hit", "counter-go.ping"},
		HandlePayload: c.handlePayload,
		PeerForgotten: c.peerForgotten,
		Stateful: &plugwire.Stateful{
			ID:       "example.counter-go",
			Versions: []uint32{snapshotVersion},
			Snapshot: c.snapshot,
			Restore:  c.restore,
		},
	})
}

type counter struct {
	counts map[string]uint64 // hex node id -> hits
}

func (c *counter) handlePayload(_ context.Context, p plugwire.Payload, h *plugwire.Handler) error {
	if p.Kind == "counter-go.ping" {
		return h.SendDirect(p.Src, append([]byte("pong:"), p.Body...))
	}
	c.counts[hex.EncodeToString(p.Src)]++
	return nil
}

func (c *counter) peerForgotten(_ context.Context, nodeID []byte, h *plugwire.Handler) error {
	peer := hex.EncodeToString(nodeID)
	if _, ok := c.counts[peer]; ok {
		delete(c.counts, peer)
		h.Log.Info("wiped a forgotten peer's count", "peer", peer)
	}
	return nil
}

func (c *counter) snapshot() (plugwire.Snapshot, error) {
	data, err := json.Marshal(c.counts) // map keys come out sorted
	if err != nil {
		return plugwire.Snapshot{}, &plugwire.SnapshotFailedError{Details: err.Error()}
	}
	return plugwire.Snapshot{Version: snapshotVersion, Bytes: data}, nil
}

func (c *counter) restore(s plugwire.Snapshot) error {
	if s.Version != snapshotVersion {
		return &plugwire.UnsupportedVersionError{Version: s.Version, Expected: []uint32{snapshotVersion}}
	}
	var counts map[string]uint64
	if err := json.Unmarshal(s.Bytes, &counts); err != nil {
		return &plugwire.RestoreFailedError{Details: fmt.Sprintf("snapshot is not an object of peer -> non-negative count: %v", err)}
	}
	if counts == nil { // the JSON was null
		return &plugwire.RestoreFailedError{Details: "snapshot is not an object of peer -> non-negative count"}
	}
	// Replace the state only once the bytes checked out.
	c.counts = counts
	return nil
}
