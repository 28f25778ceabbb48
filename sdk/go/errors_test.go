package plugwire

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

func detailOf(t *testing.T, raw []byte) *pb.ErrorDetail {
	t.Helper()
	d := &pb.ErrorDetail{}
	if err := proto.Unmarshal(raw, d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestTypedErrorsBecomeTheirStatusAndTrailer(t *testing.T) {
	st, raw := typedStatus("p", fmt.Errorf("wrapped: %w", UnsupportedVersion(3, 1, 2)), restoreFailure)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("UnsupportedVersion: code %v", st.Code())
	}
	if uv := detailOf(t, raw).GetUnsupportedVersion(); uv == nil || uv.Version != 3 || !slices.Equal(uv.Expected, []uint32{1, 2}) {
		t.Fatalf("UnsupportedVersion detail: %v", detailOf(t, raw))
	}

	st, raw = typedStatus("p", RestoreFailed("bad bytes at %d", 7), snapshotFailure)
	if st.Code() != codes.InvalidArgument || detailOf(t, raw).GetRestoreFailed().GetDetails() != "bad bytes at 7" {
		t.Fatalf("RestoreFailed: %v %v", st, detailOf(t, raw))
	}

	st, raw = typedStatus("p", SnapshotFailed("cannot encode"), restoreFailure)
	if st.Code() != codes.Internal || detailOf(t, raw).GetSnapshotFailed().GetDetails() != "cannot encode" {
		t.Fatalf("SnapshotFailed: %v %v", st, detailOf(t, raw))
	}

	// A plain error is the failure of the hook that returned it.
	st, raw = typedStatus("p", errors.New("disk full"), snapshotFailure)
	if st.Code() != codes.Internal || detailOf(t, raw).GetSnapshotFailed() == nil || detailOf(t, raw).Plugin != "p" {
		t.Fatalf("plain snapshot error: %v %v", st, detailOf(t, raw))
	}
	st, raw = typedStatus("p", errors.New("garbage"), restoreFailure)
	if st.Code() != codes.InvalidArgument || detailOf(t, raw).GetRestoreFailed() == nil {
		t.Fatalf("plain restore error: %v %v", st, detailOf(t, raw))
	}
}

type statefulPlugin struct{ recorderPlugin }

func (statefulPlugin) ID() string                             { return "s" }
func (statefulPlugin) Versions() []uint32                     { return []uint32{2, 1} }
func (statefulPlugin) Snapshot() (uint32, []byte, error)      { return 2, nil, nil }
func (statefulPlugin) Restore(version uint32, _ []byte) error { return nil }

func TestDescribeFindsTheStatefulSurface(t *testing.T) {
	if d := describe(recorderPlugin{}); d.stateful != nil {
		t.Fatal("a plugin without Stateful is described as stateful")
	}
	d := describe(statefulPlugin{})
	if d.stateful == nil || d.id != "s" || !slices.Equal(d.versions, []uint32{2, 1}) || d.name != "recorder" {
		t.Fatalf("described: %+v", d)
	}
}

func TestErrorTextsAreValidUTF8AndCutAsTheHostCutsThem(t *testing.T) {
	if got := errorText("bad \xff\xfe bytes"); got != "bad \uFFFD bytes" {
		t.Fatalf("invalid UTF-8: %q", got)
	}
	if got := errorText("short"); got != "short" {
		t.Fatalf("short text changed: %q", got)
	}
	long := strings.Repeat("é", 3000) // 6000 bytes
	got := errorText(long)
	if len(got) > MaxErrorTextBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "…(truncated, 6000 bytes)") {
		t.Fatalf("cut text: %d bytes, valid %v, ends %q", len(got), utf8.ValidString(got), got[len(got)-30:])
	}
	if again := errorText(got); again != got {
		t.Fatal("cutting a cut text again changed it")
	}
	// An outcome with such a text marshals (an invalid string field would break the Deliver stream).
	o := &pb.ItemOutcome{Seq: 1, Error: &pb.HandlerError{Message: errorText("\xc3\x28" + long)}}
	if _, err := proto.Marshal(o); err != nil {
		t.Fatal(err)
	}
}
