package plugwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
)

// HostClient calls the host's HostService. Every call carries the auth
// token. Lookups answer ok=false for a peer the host does not know; calls
// that need a capability the plugin lacks fail with PERMISSION_DENIED.
type HostClient struct {
	conn   *grpc.ClientConn
	client pb.HostServiceClient
}

func dialHost(address, token string) (*HostClient, error) {
	auth := bearer("Bearer " + token)
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithUnaryInterceptor(auth.unary),
		grpc.WithStreamInterceptor(auth.stream),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot use host address %q from %s: %w", address, EnvHostAddress, err)
	}
	return &HostClient{conn: conn, client: pb.NewHostServiceClient(conn)}, nil
}

func (h *HostClient) close() { _ = h.conn.Close() }

// LookupX25519 returns the peer's X25519 public key, or ok=false if unknown.
func (h *HostClient) LookupX25519(ctx context.Context, nodeID []byte) (key []byte, ok bool, err error) {
	r, err := h.client.LookupX25519(ctx, &pb.LookupX25519Request{NodeId: nodeID})
	if err != nil {
		return nil, false, err
	}
	return r.X25519Pub, r.X25519Pub != nil, nil
}

// LookupName returns the peer's latest friendly name, or ok=false if unknown.
func (h *HostClient) LookupName(ctx context.Context, nodeID []byte) (name string, ok bool, err error) {
	r, err := h.client.LookupName(ctx, &pb.LookupNameRequest{NodeId: nodeID})
	if err != nil {
		return "", false, err
	}
	return r.GetName(), r.Name != nil, nil
}

// WatchPeers yields every peer event published after the call starts, until
// ctx is cancelled (then the sequence just ends) or the stream fails (then it
// yields the error last).
func (h *HostClient) WatchPeers(ctx context.Context) iter.Seq2[*pb.PeerEvent, error] {
	return func(yield func(*pb.PeerEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := h.client.WatchPeers(ctx, &pb.WatchPeersRequest{})
		if err != nil {
			yield(nil, err)
			return
		}
		for {
			r, err := stream.Recv()
			switch {
			case err == nil:
				if r.Event != nil && !yield(r.Event, nil) {
					return
				}
			case errors.Is(err, io.EOF), ctx.Err() != nil && status.Code(err) == codes.Canceled:
				return
			default:
				yield(nil, err)
				return
			}
		}
	}
}

// SendDirect sends a control frame to a directly connected peer, best effort.
// Inside a payload handler use Handler.SendDirect, which rides on the ack.
func (h *HostClient) SendDirect(ctx context.Context, peer, frame []byte) error {
	_, err := h.client.SendDirect(ctx, &pb.SendDirectRequest{Send: &pb.SendDirect{Peer: peer, Frame: frame}})
	return err
}

// SendRouted sends through the routing table and reports whether a route
// existed. Inside a payload handler use Handler.SendRouted.
func (h *HostClient) SendRouted(ctx context.Context, dst, frame []byte) (bool, error) {
	return h.sendRouted(ctx, dst, frame, nil)
}

func (h *HostClient) sendRouted(ctx context.Context, dst, frame []byte, origin *pb.EffectOrigin) (bool, error) {
	r, err := h.client.SendRouted(ctx, &pb.SendRoutedRequest{Dst: dst, Frame: frame, Origin: origin})
	if err != nil {
		return false, err
	}
	return r.Routed, nil
}

// SigningSeed returns the 32-byte Ed25519 signing seed of the local identity.
func (h *HostClient) SigningSeed(ctx context.Context) ([]byte, error) {
	r, err := h.client.GetSigningSeed(ctx, &pb.GetSigningSeedRequest{})
	if err != nil {
		return nil, err
	}
	return r.Seed, nil
}
