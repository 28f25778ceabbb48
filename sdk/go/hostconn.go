package plugwire

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// hostConnection keeps the plugin's server to one connection, its host's
// (docs/protocol.md §6.3): the first connection that makes a call with the
// token becomes the host's, and while it is open a call on any other
// connection is refused, even with the token. When it closes, the next
// connection that authenticates becomes the host's. Connections are told
// apart by a tag that this stats.Handler puts in each connection's context
// (grpc-go derives every stream's context from it). Unlike the TS SDK, the
// other connection is not closed: grpc-go gives a handler no way to close
// the connection a call came on.
type hostConnection struct {
	mu   sync.Mutex
	host *connTag
}

type connTag struct{ closed atomic.Bool }

type connKey struct{}

func (h *hostConnection) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, connKey{}, &connTag{})
}

func (h *hostConnection) HandleConn(ctx context.Context, s stats.ConnStats) {
	if _, end := s.(*stats.ConnEnd); end {
		if tag, ok := ctx.Value(connKey{}).(*connTag); ok {
			tag.closed.Store(true)
		}
	}
}

func (h *hostConnection) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (h *hostConnection) HandleRPC(context.Context, stats.RPCStats) {}

// admit reports whether a call that carried the token may be served: it came
// on the host's connection, or no host connection is open (then its
// connection becomes the host's).
func (h *hostConnection) admit(ctx context.Context) bool {
	tag, ok := ctx.Value(connKey{}).(*connTag)
	if !ok {
		return true // not served through the stats handler: nothing to tell apart
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.host == tag {
		return true
	}
	if h.host == nil || h.host.closed.Load() {
		h.host = tag
		return true
	}
	return false
}

// sameUserListener accepts only connections whose peer runs as this
// process's user, where the platform tells it (SO_PEERCRED on Linux). The
// socket is 0600 in a 0700 dir, so this is a second lock on the same door.
// The first refusal is logged; later ones only counted.
type sameUserListener struct {
	net.Listener
	log     *slog.Logger
	refused atomic.Int64
}

func (l *sameUserListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if uid, known := peerUID(conn); known && uid != os.Getuid() {
			_ = conn.Close()
			if l.refused.Add(1) == 1 {
				l.log.Warn("refused a connection from another user (SO_PEERCRED); only the first is logged", "peer_uid", uid)
			}
			continue
		}
		return conn, nil
	}
}
