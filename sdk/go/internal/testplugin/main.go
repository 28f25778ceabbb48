// Command testplugin is the plugin the SDK's host tests (host_test.go) run
// under a real plugwire host. It uses every part of the API:
//
//   - t.hit counts hits per peer (state, snapshotted as JSON, version 1);
//   - t.state answers the sender with the counts, the config's greeting and
//     whether Start saw the data dir, as a SendDirect effect;
//   - t.fail fails with the body as its message;
//   - t.who answers with the sender's name (LookupName) and whether its
//     X25519 key is known (LookupX25519);
//   - t.route answers with what SendRouted to the sender reported;
//   - t.seed answers with the length of the signing seed (SigningSeed);
//   - a forgotten peer drops its count;
//   - Shutdown writes the counts to <data dir>/shutdown.json;
//   - its snapshot format version is $TESTPLUGIN_SNAPSHOT_VERSION (default 1),
//     so that a test can make it unable to read an earlier launch's snapshot.
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	plugwire "github.com/plugwire/plugwire/sdk/go"
)

type config struct {
	Greeting string `json:"greeting"`
}

type plugin struct {
	config  config
	dataDir bool
	counts  map[string]uint64
}

// snapshotVersion is the one format version this build reads and writes.
var snapshotVersion = uint32(1)

func main() {
	if v := os.Getenv("TESTPLUGIN_SNAPSHOT_VERSION"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TESTPLUGIN_SNAPSHOT_VERSION=%q is not a version\n", v)
			os.Exit(1)
		}
		snapshotVersion = uint32(n)
	}
	plugwire.Serve(&plugin{counts: map[string]uint64{}})
}

func (*plugin) Name() string { return "go-sdk-test" }

func (*plugin) PayloadKinds() []string {
	return []string{"t.hit", "t.state", "t.fail", "t.who", "t.route", "t.seed"}
}

func (p *plugin) Start(ctx *plugwire.Context) error {
	if err := ctx.DecodeConfig(&p.config); err != nil {
		return err
	}
	info, err := os.Stat(ctx.DataDir())
	p.dataDir = err == nil && info.IsDir()
	ctx.Log().Info("started", "data_dir", ctx.DataDir(), "instance", ctx.InstanceID())
	return nil
}

func (p *plugin) HandlePayload(ctx *plugwire.Context, src []byte, kind string, body []byte) error {
	reply := func(v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return ctx.SendDirect(src, data)
	}
	switch kind {
	case "t.hit":
		p.counts[hex.EncodeToString(src)]++
		return nil
	case "t.state":
		return reply(map[string]any{"counts": p.counts, "greeting": p.config.Greeting, "dataDir": p.dataDir, "seq": ctx.Seq()})
	case "t.fail":
		return errors.New(string(body))
	case "t.who":
		name, known, err := ctx.LookupName(src)
		if err != nil {
			return err
		}
		_, keyKnown, err := ctx.LookupX25519(src)
		if err != nil {
			return err
		}
		return reply(map[string]any{"name": name, "known": known, "keyKnown": keyKnown})
	case "t.route":
		routed, err := ctx.SendRouted(src, body)
		if err != nil {
			return err
		}
		return reply(map[string]any{"routed": routed})
	case "t.seed":
		seed, err := ctx.SigningSeed()
		if err != nil {
			return err
		}
		return reply(map[string]any{"seedBytes": len(seed)})
	}
	return fmt.Errorf("unexpected kind %q", kind)
}

func (p *plugin) OnPeerForgotten(_ *plugwire.Context, nodeID []byte) error {
	delete(p.counts, hex.EncodeToString(nodeID))
	return nil
}

func (p *plugin) Shutdown(ctx *plugwire.Context) error {
	data, err := json.Marshal(p.counts)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(ctx.DataDir(), "shutdown.json"), data, 0o600)
}

func (*plugin) ID() string { return "go-sdk-test.counts" }

func (*plugin) Versions() []uint32 { return []uint32{snapshotVersion} }

func (p *plugin) Snapshot() (uint32, []byte, error) {
	data, err := json.Marshal(p.counts)
	if err != nil {
		return 0, nil, plugwire.SnapshotFailed("%v", err)
	}
	return snapshotVersion, data, nil
}

func (p *plugin) Restore(version uint32, data []byte) error {
	if version != snapshotVersion {
		return plugwire.UnsupportedVersion(version, snapshotVersion)
	}
	var counts map[string]uint64
	if err := json.Unmarshal(data, &counts); err != nil || counts == nil {
		return plugwire.RestoreFailed("not an object of peer -> count: %v", err)
	}
	p.counts = counts
	return nil
}
