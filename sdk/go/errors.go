package plugwire

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// The typed errors of a Stateful plugin, the seeds' SnapshotFailed,
// RestoreFailed and UnsupportedVersion. Return them (or wrap them: the SDK
// uses errors.As) from Snapshot and Restore; the SDK sends each with its gRPC
// status and the ErrorDetail trailer of docs/protocol.md §10. Any other error
// from Snapshot counts as SnapshotFailed, from Restore as RestoreFailed.

// SnapshotFailed returns a *SnapshotFailedError with a formatted message.
func SnapshotFailed(format string, args ...any) error {
	return &SnapshotFailedError{Details: fmt.Sprintf(format, args...)}
}

// RestoreFailed returns a *RestoreFailedError with a formatted message.
func RestoreFailed(format string, args ...any) error {
	return &RestoreFailedError{Details: fmt.Sprintf(format, args...)}
}

// UnsupportedVersion returns an *UnsupportedVersionError: version is not one
// of the expected versions.
func UnsupportedVersion(version uint32, expected ...uint32) error {
	return &UnsupportedVersionError{Version: version, Expected: expected}
}

// UnsupportedVersionError: the snapshot is in a format version the plugin
// does not read. The host treats it as a reset: it discards the snapshot and
// the plugin keeps its default state.
type UnsupportedVersionError struct {
	Version  uint32
	Expected []uint32
}

func (e *UnsupportedVersionError) Error() string {
	return fmt.Sprintf("cannot read snapshot version %d (it reads %s)", e.Version, joinVersions(e.Expected))
}

// RestoreFailedError: the snapshot bytes are corrupt or break an invariant.
type RestoreFailedError struct{ Details string }

func (e *RestoreFailedError) Error() string { return e.Details }

// SnapshotFailedError: the state could not be serialized.
type SnapshotFailedError struct{ Details string }

func (e *SnapshotFailedError) Error() string { return e.Details }

func joinVersions(vs []uint32) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ", ")
}

func errMissingCapability(plugin string, c Capability) error {
	return fmt.Errorf("plugin '%s' was not granted the '%s' capability; add it to the plugin's capabilities in the host config", plugin, c)
}

// failure says which typed error a plain error from a hook becomes.
type failure int

const (
	snapshotFailure failure = iota
	restoreFailure
)

// typedStatus turns a stateful error into its gRPC status and the serialized
// ErrorDetail for the plugwire-error-bin trailer.
func typedStatus(plugin string, err error, fallback failure) (*status.Status, []byte) {
	detail := &pb.ErrorDetail{Plugin: plugin}
	var st *status.Status
	var uv *UnsupportedVersionError
	var sf *SnapshotFailedError
	var rf *RestoreFailedError
	kind := fallback
	switch {
	case errors.As(err, &uv):
		st = status.New(codes.FailedPrecondition, errorText(fmt.Sprintf("plugin '%s' %s", plugin, uv.Error())))
		detail.Kind = &pb.ErrorDetail_UnsupportedVersion{UnsupportedVersion: &pb.UnsupportedVersion{Version: uv.Version, Expected: uv.Expected}}
	case errors.As(err, &sf):
		kind = snapshotFailure
	case errors.As(err, &rf):
		kind = restoreFailure
	}
	if st == nil && kind == snapshotFailure {
		st = status.New(codes.Internal, errorText(fmt.Sprintf("plugin '%s' failed to snapshot its state: %v", plugin, err)))
		detail.Kind = &pb.ErrorDetail_SnapshotFailed{SnapshotFailed: &pb.SnapshotFailed{Details: errorText(err.Error())}}
	} else if st == nil {
		st = status.New(codes.InvalidArgument, errorText(fmt.Sprintf("plugin '%s' failed to restore its state: %v", plugin, err)))
		detail.Kind = &pb.ErrorDetail_RestoreFailed{RestoreFailed: &pb.RestoreFailed{Details: errorText(err.Error())}}
	}
	raw, marshalErr := proto.Marshal(detail)
	if marshalErr != nil {
		return st, nil
	}
	return st, raw
}

// failStream ends a streaming call with a typed error and its trailer.
func failStream(stream grpc.ServerStream, plugin string, err error, fallback failure) error {
	st, raw := typedStatus(plugin, err, fallback)
	if raw != nil {
		stream.SetTrailer(metadata.Pairs(ErrorDetailTrailer, string(raw)))
	}
	return st.Err()
}

// internalError is the status of any other failed plugin RPC: INTERNAL with a
// message for a human, unless the hook already returned a gRPC status.
func internalError(plugin, method string, err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return err
	}
	return status.Error(codes.Internal, errorText(fmt.Sprintf("plugin '%s' failed %s: %v", plugin, method, err)))
}

// errorText is text a plugin sends the host as an error (a handler's error
// message, a status's details): valid UTF-8, since protobuf strings must be
// (invalid bytes become U+FFFD), and at most MaxErrorTextBytes, cut on a
// character boundary and marked "…(truncated, N bytes)" as the host would
// cut it (docs/protocol.md §13, proto/src/limits.ts truncateText).
func errorText(text string) string {
	text = strings.ToValidUTF8(text, "\uFFFD")
	if len(text) <= MaxErrorTextBytes {
		return text
	}
	marker := fmt.Sprintf("…(truncated, %d bytes)", len(text))
	room := max(0, MaxErrorTextBytes-len(marker))
	for room > 0 && !utf8.RuneStart(text[room]) {
		room--
	}
	return text[:room] + marker
}
