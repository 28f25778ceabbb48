package plugwire

// The shared test vectors, sdk/testdata/vectors.json (made by
// scripts/generate-testdata.mjs from the TS contract; every SDK's tests read
// it): the Go generated code decodes and encodes each message exactly, and
// the token line and protocol-version parsers agree with the host's.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"io"
	"log/slog"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

type vectorFile struct {
	ProtocolVersion int            `json:"protocolVersion"`
	TokenLinePrefix string         `json:"tokenLinePrefix"`
	HandshakePrefix string         `json:"handshakePrefix"`
	Limits          map[string]int `json:"limits"`
	Messages        []struct {
		Type string          `json:"type"`
		Name string          `json:"name"`
		Hex  string          `json:"hex"`
		JSON json.RawMessage `json:"json"`
	} `json:"messages"`
	TokenLines []struct {
		Line  string  `json:"line"`
		Token *string `json:"token"`
	} `json:"tokenLines"`
	DeliverStreams []struct {
		Name    string   `json:"name"`
		Batches []string `json:"batches"`
		Calls   []struct {
			Seq         uint64 `json:"seq"`
			Item        string `json:"item"`
			Redelivered bool   `json:"redelivered"`
		} `json:"calls"`
		AckedThrough uint64 `json:"ackedThrough"`
		Outcomes     []struct {
			Seq     uint64 `json:"seq"`
			Error   bool   `json:"error"`
			Effects []struct {
				Peer  string `json:"peer"`
				Frame string `json:"frame"`
			} `json:"effects"`
		} `json:"outcomes"`
	} `json:"deliverStreams"`
	HandshakeLines []struct {
		ProtocolVersion uint32 `json:"protocolVersion"`
		SocketPath      string `json:"socketPath"`
		Line            string `json:"line"`
	} `json:"handshakeLines"`
	VersionLists []struct {
		Value    string   `json:"value"`
		Versions []uint32 `json:"versions"`
	} `json:"versionLists"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "vectors.json"))
	if err != nil {
		t.Fatalf("reading the shared vectors: %v", err)
	}
	var v vectorFile
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parsing sdk/testdata/vectors.json: %v", err)
	}
	if len(v.Messages) == 0 || len(v.TokenLines) == 0 || len(v.VersionLists) == 0 {
		t.Fatal("sdk/testdata/vectors.json has an empty section")
	}
	return v
}

func newMessage(t *testing.T, typ string) proto.Message {
	switch strings.TrimPrefix(typ, "plugwire.v1.") {
	case "DeliverRequest":
		return &pb.DeliverRequest{}
	case "DeliverResponse":
		return &pb.DeliverResponse{}
	case "SnapshotResponse":
		return &pb.SnapshotResponse{}
	case "RestoreRequest":
		return &pb.RestoreRequest{}
	}
	t.Fatalf("no Go type for %s: add it here", typ)
	return nil
}

func TestSharedVectorsMessages(t *testing.T) {
	for _, v := range loadVectors(t).Messages {
		t.Run(v.Type+": "+v.Name, func(t *testing.T) {
			want, err := hex.DecodeString(v.Hex)
			if err != nil {
				t.Fatal(err)
			}
			decoded := newMessage(t, v.Type)
			if err := proto.Unmarshal(want, decoded); err != nil {
				t.Fatalf("decoding: %v", err)
			}
			fromJSON := newMessage(t, v.Type)
			if err := protojson.Unmarshal(v.JSON, fromJSON); err != nil {
				t.Fatalf("reading the vector's JSON: %v", err)
			}
			if !proto.Equal(decoded, fromJSON) {
				t.Fatalf("decoding the hex gives %v, the JSON says %v", decoded, fromJSON)
			}
			got, err := proto.MarshalOptions{Deterministic: true}.Marshal(fromJSON)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding gives %x, the host's bytes are %x", got, want)
			}
		})
	}
}

func TestSharedVectorsTokenLines(t *testing.T) {
	for _, v := range loadVectors(t).TokenLines {
		token, err := readTokenLine(strings.NewReader(v.Line + "\n"))
		if v.Token == nil {
			if err == nil {
				t.Errorf("%q: accepted token %q, the host refuses the line", v.Line, token)
			}
		} else if err != nil || token != *v.Token {
			t.Errorf("%q: got %q, %v; want %q", v.Line, token, err, *v.Token)
		}
	}
}

func TestSharedVectorsHandshakeLines(t *testing.T) {
	v := loadVectors(t)
	if len(v.HandshakeLines) == 0 {
		t.Fatal("no handshake lines")
	}
	for _, h := range v.HandshakeLines {
		if got := handshakeLine(h.ProtocolVersion, h.SocketPath); got != h.Line {
			t.Errorf("handshake line %q, want %q", got, h.Line)
		}
	}
}

func TestSharedVectorsVersionLists(t *testing.T) {
	for _, v := range loadVectors(t).VersionLists {
		got, ok := parseVersions(v.Value)
		if v.Versions == nil {
			if ok {
				t.Errorf("%q: parsed as %v, the host calls it malformed", v.Value, got)
			}
		} else if !ok || !slices.Equal(got, v.Versions) {
			t.Errorf("%q: got %v (ok %v), want %v", v.Value, got, ok, v.Versions)
		}
	}
}

func TestSharedVectorsConstants(t *testing.T) {
	v := loadVectors(t)
	if v.ProtocolVersion != ProtocolVersion || v.TokenLinePrefix != TokenLinePrefix || v.HandshakePrefix != HandshakePrefix {
		t.Errorf("constants differ: %d %q %q", v.ProtocolVersion, v.TokenLinePrefix, v.HandshakePrefix)
	}
	for name, got := range map[string]int{"maxMessageBytes": MaxMessageBytes, "snapshotChunkBytes": SnapshotChunkBytes, "maxTokenLineBytes": MaxTokenLineBytes} {
		if v.Limits[name] != got {
			t.Errorf("limit %s: Go has %d, the host %d", name, got, v.Limits[name])
		}
	}
}

// vecRecorder is the recorder plugin of the deliverStreams vectors.
type vecRecorder struct {
	BasePlugin
	calls *[]string
}

func (vecRecorder) Name() string { return "recorder" }

func (vecRecorder) PayloadKinds() []string { return []string{"vec.hit", "vec.ping", "vec.fail"} }

func (p vecRecorder) HandlePayload(ctx *Context, src []byte, kind string, _ []byte) error {
	*p.calls = append(*p.calls, fmt.Sprintf("%d payload %v", ctx.Seq(), ctx.Redelivered()))
	switch kind {
	case "vec.ping":
		return ctx.SendDirect(src, []byte("pong"))
	case "vec.fail":
		_ = ctx.SendDirect(src, []byte("dropped"))
		return errors.New("vec.fail fails")
	}
	return nil
}

func (p vecRecorder) OnPeerForgotten(ctx *Context, nodeID []byte) error {
	*p.calls = append(*p.calls, fmt.Sprintf("%d forget %v", ctx.Seq(), ctx.Redelivered()))
	return ctx.SendDirect(nodeID, []byte("bye"))
}

func TestSharedVectorsDeliverStreams(t *testing.T) {
	for _, v := range loadVectors(t).DeliverStreams {
		t.Run(v.Name, func(t *testing.T) {
			var calls []string
			p := describe(vecRecorder{calls: &calls})
			l := &launch{name: p.name, caps: map[Capability]bool{CapabilityControl: true}, log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
			d := newDeliveryOf(p, func() *launch { return l }, func() time.Time { return time.Time{} })
			var acks []*pb.DeliverResponse
			s := d.openStream(func(r *pb.DeliverResponse) error {
				acks = append(acks, r)
				return nil
			})
			for _, batch := range v.Batches {
				raw, _ := hex.DecodeString(batch)
				req := &pb.DeliverRequest{}
				if err := proto.Unmarshal(raw, req); err != nil {
					t.Fatal(err)
				}
				if err := d.process(context.Background(), req, s); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			for _, c := range v.Calls {
				want = append(want, fmt.Sprintf("%d %s %v", c.Seq, c.Item, c.Redelivered))
			}
			if !slices.Equal(calls, want) {
				t.Fatalf("handler calls %q, want %q", calls, want)
			}
			var through uint64
			var got []string
			for _, a := range acks {
				if a.AckedThrough < through {
					t.Fatalf("acks went down: %v", throughs(acks))
				}
				through = a.AckedThrough
				for _, o := range a.Outcomes {
					line := fmt.Sprintf("%d error=%v", o.Seq, o.Error != nil)
					for _, e := range o.Effects {
						line += fmt.Sprintf(" %x:%s", e.GetSendDirect().GetPeer(), e.GetSendDirect().GetFrame())
					}
					got = append(got, line)
				}
			}
			if through != v.AckedThrough {
				t.Fatalf("acked through %d, want %d", through, v.AckedThrough)
			}
			var wantOutcomes []string
			for _, o := range v.Outcomes {
				line := fmt.Sprintf("%d error=%v", o.Seq, o.Error)
				for _, e := range o.Effects {
					line += fmt.Sprintf(" %s:%s", e.Peer, e.Frame)
				}
				wantOutcomes = append(wantOutcomes, line)
			}
			if !slices.Equal(got, wantOutcomes) {
				t.Fatalf("outcomes %q, want %q", got, wantOutcomes)
			}
		})
	}
}
