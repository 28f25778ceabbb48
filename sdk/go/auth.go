package plugwire

import (
	"context"
	"crypto/subtle"
	"path"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// tokenCheck refuses, with UNAUTHENTICATED, every call that does not carry
// `authorization: Bearer <token>`, health checks included.
type tokenCheck struct {
	plugin string
	want   []byte
	// conns, when set, keeps calls to the host's connection (docs/protocol.md §6.3).
	conns *hostConnection
}

func newTokenCheck(plugin, token string, conns *hostConnection) *tokenCheck {
	return &tokenCheck{plugin: plugin, want: []byte("Bearer " + token), conns: conns}
}

func (t *tokenCheck) authorize(ctx context.Context, fullMethod string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get(AuthMetadataKey)
	if len(values) == 1 && subtle.ConstantTimeCompare([]byte(values[0]), t.want) == 1 {
		if t.conns != nil && !t.conns.admit(ctx) {
			return status.Errorf(codes.Unauthenticated,
				"plugin '%s' refused %s: it serves one connection, its host's, and another connection is already the host's; "+
					"only the host that started this plugin may call it (docs/protocol.md §6)",
				t.plugin, path.Base(fullMethod))
		}
		return nil
	}
	return status.Errorf(codes.Unauthenticated,
		"plugin '%s' refused %s: the call carried no valid plugwire auth token (send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')",
		t.plugin, path.Base(fullMethod))
}

func (t *tokenCheck) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := t.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (t *tokenCheck) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := t.authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// bearer attaches the auth token to every outgoing call.
type bearer string

func (b bearer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(metadata.AppendToOutgoingContext(ctx, AuthMetadataKey, string(b)), method, req, reply, cc, opts...)
}

func (b bearer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(metadata.AppendToOutgoingContext(ctx, AuthMetadataKey, string(b)), desc, cc, method, opts...)
}
