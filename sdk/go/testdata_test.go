package plugwire

// The shared test vectors, sdk/testdata/vectors.json (made by
// scripts/generate-testdata.mjs from the TS contract; every SDK's tests read
// it): the Go generated code decodes and encodes each message exactly, and
// the token line and protocol-version parsers agree with the host's.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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
