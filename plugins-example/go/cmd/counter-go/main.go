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
	"encoding/hex"
	"encoding/json"

	plugwire "github.com/plugwire/plugwire/sdk/go"
)

const snapshotVersion = 1

func main() {
	plugwire.Serve(&counter{counts: map[string]uint64{}})
}

// counter is a plugwire.Plugin and a plugwire.Stateful. The SDK never runs
// two of HandlePayload, OnPeerForgotten, Snapshot and Restore at once, so the
// counts need no lock.
type counter struct {
	plugwire.BasePlugin // no Start or Shutdown hook

	counts map[string]uint64 // hex node id -> hits
}

func (*counter) Name() string { return "counter-go" }

func (*counter) PayloadKinds() []string { return []string{"counter-go.hit", "counter-go.ping"} }

func (c *counter) HandlePayload(ctx *plugwire.Context, src []byte, kind string, body []byte) error {
	if kind == "counter-go.ping" {
		return ctx.SendDirect(src, append([]byte("pong:"), body...))
	}
	c.counts[hex.EncodeToString(src)]++
	return nil
}

func (c *counter) OnPeerForgotten(ctx *plugwire.Context, nodeID []byte) error {
	peer := hex.EncodeToString(nodeID)
	if _, ok := c.counts[peer]; ok {
		delete(c.counts, peer)
		ctx.Log().Info("wiped a forgotten peer's count", "peer", peer)
	}
	return nil
}

func (*counter) ID() string { return "example.counter-go" }

func (*counter) Versions() []uint32 { return []uint32{snapshotVersion} }

func (c *counter) Snapshot() (uint32, []byte, error) {
	data, err := json.Marshal(c.counts) // map keys come out sorted
	if err != nil {
		return 0, nil, plugwire.SnapshotFailed("cannot encode the counts: %v", err)
	}
	return snapshotVersion, data, nil
}

func (c *counter) Restore(version uint32, data []byte) error {
	if version != snapshotVersion { // the SDK checks Versions() first; this is the belt to its braces
		return plugwire.UnsupportedVersion(version, snapshotVersion)
	}
	var counts map[string]uint64
	if err := json.Unmarshal(data, &counts); err != nil {
		return plugwire.RestoreFailed("snapshot is not an object of peer -> non-negative count: %v", err)
	}
	if counts == nil { // the JSON was null
		return plugwire.RestoreFailed("snapshot is not an object of peer -> non-negative count")
	}
	// Replace the state only once the bytes checked out.
	c.counts = counts
	return nil
}
