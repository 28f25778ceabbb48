// Command {{name}} is a plugwire plugin.
//
//   - {{name}}.ping answers the sender with "pong:" + body, as an effect that
//     rides on the payload's ack (the host performs it exactly once).
{{#stateful}}
//   - {{name}}.hit counts hits per peer; a forgotten peer's count is wiped.
//   - The counts are snapshotted as JSON (id {{name}}.counts, version 1), so
//     they survive restarts and crashes: the host restores the latest
//     snapshot and replays the payloads after it.
{{/stateful}}
//
// Build: go build -o bin/{{name}} . ; a host runs bin/{{name}} (plugwire.yaml).
package main

import (
	"encoding/hex"
{{#stateful}}
	"encoding/json"
{{/stateful}}

	plugwire "github.com/plugwire/plugwire/sdk/go"
)
{{#stateful}}

const snapshotVersion = 1
{{/stateful}}

func main() {
	plugwire.Serve(&plugin{{{#stateful}}counts: map[string]uint64{}{{/stateful}}})
}

{{#stateful}}
// plugin is a plugwire.Plugin and a plugwire.Stateful. The SDK never runs two
// of HandlePayload, OnPeerForgotten, Snapshot and Restore at once, so state
// only they touch needs no lock.
{{/stateful}}
{{^stateful}}
// plugin is a plugwire.Plugin. The SDK never runs HandlePayload and
// OnPeerForgotten at once, so state only they touch needs no lock.
{{/stateful}}
type plugin struct {
{{#stateful}}
	counts map[string]uint64 // hex node id -> hits
{{/stateful}}
}

func (*plugin) Name() string { return "{{name}}" }

func (*plugin) PayloadKinds() []string { return []string{{{#stateful}}"{{name}}.hit", {{/stateful}}"{{name}}.ping"} }

func (*plugin) Start(ctx *plugwire.Context) error {
	ctx.Log().Info("{{name}} started")
	return nil
}

func (p *plugin) HandlePayload(ctx *plugwire.Context, src []byte, kind string, body []byte) error {
{{#stateful}}
	if kind == "{{name}}.hit" {
		p.counts[hex.EncodeToString(src)]++
		return nil
	}
{{/stateful}}
	return ctx.SendDirect(src, append([]byte("pong:"), body...))
}

func (p *plugin) OnPeerForgotten(ctx *plugwire.Context, nodeID []byte) error {
	peer := hex.EncodeToString(nodeID)
{{#stateful}}
	if _, ok := p.counts[peer]; ok {
		delete(p.counts, peer)
		ctx.Log().Info("wiped a forgotten peer's count", "peer", peer)
	}
{{/stateful}}
{{^stateful}}
	// Drop whatever this plugin keeps about the peer.
	ctx.Log().Info("peer forgotten", "peer", peer)
{{/stateful}}
	return nil
}

func (*plugin) Shutdown(ctx *plugwire.Context) error {
	ctx.Log().Info("{{name}} stopping")
	return nil
}
{{#stateful}}

func (*plugin) ID() string { return "{{name}}.counts" }

func (*plugin) Versions() []uint32 { return []uint32{snapshotVersion} }

func (p *plugin) Snapshot() (uint32, []byte, error) {
	data, err := json.Marshal(p.counts) // map keys come out sorted
	if err != nil {
		return 0, nil, plugwire.SnapshotFailed("cannot encode the counts: %v", err)
	}
	return snapshotVersion, data, nil
}

// Restore is only called with a version in Versions (the SDK refuses others).
func (p *plugin) Restore(version uint32, data []byte) error {
	var counts map[string]uint64
	if err := json.Unmarshal(data, &counts); err != nil {
		return plugwire.RestoreFailed("snapshot is not an object of peer -> non-negative count: %v", err)
	}
	if counts == nil { // the JSON was null
		return plugwire.RestoreFailed("snapshot is not an object of peer -> non-negative count")
	}
	// Replace the state only once the bytes checked out.
	p.counts = counts
	return nil
}
{{/stateful}}
