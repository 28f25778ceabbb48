package main

import (
	"errors"
	"maps"
	"testing"

	plugwire "github.com/plugwire/plugwire/sdk/go"
)

func TestSnapshotRestoreRoundTripAndTypedErrors(t *testing.T) {
	c := &counter{counts: map[string]uint64{"aa": 2, "bb": 1}}
	version, data, err := c.Snapshot()
	if err != nil || version != snapshotVersion || string(data) != `{"aa":2,"bb":1}` {
		t.Fatalf("Snapshot: %d %q %v", version, data, err)
	}
	restored := &counter{counts: map[string]uint64{}}
	if err := restored.Restore(version, data); err != nil || !maps.Equal(restored.counts, c.counts) {
		t.Fatalf("Restore: %v %v", restored.counts, err)
	}

	var uv *plugwire.UnsupportedVersionError
	if err := restored.Restore(2, data); !errors.As(err, &uv) || uv.Version != 2 {
		t.Fatalf("Restore of version 2: %v", err)
	}
	var rf *plugwire.RestoreFailedError
	for _, bad := range []string{`null`, `[1]`, `{"aa":-1}`, `{`} {
		if err := restored.Restore(snapshotVersion, []byte(bad)); !errors.As(err, &rf) {
			t.Fatalf("Restore of %s: %v", bad, err)
		}
	}
	if !maps.Equal(restored.counts, c.counts) {
		t.Fatalf("a failed Restore changed the state: %v", restored.counts)
	}
}
