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

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// hostClient calls the host's HostService. Every call carries the auth
// token. Lookups answer ok=false for a peer the host does not know; calls
// that need a capability the plugin lacks fail with PERMISSION_DENIED.
type hostClient struct {
	conn   *grpc.ClientConn
	client pb.HostServiceClient
}

func dialHost(address, token string) (*hostClient, error) {
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
	return &hostClient{conn: conn, client: pb.NewHostServiceClient(conn)}, nil
}

func (h *hostClient) close() { _ = h.conn.Close() }

func (h *hostClient) lookupX25519(ctx context.Context, nodeID []byte) ([]byte, bool, error) {
	r, err := h.client.LookupX25519(ctx, &pb.LookupX25519Request{NodeId: nodeID})
	if err != nil {
		return nil, false, err
	}
	return r.X25519Pub, r.X25519Pub != nil, nil
}

func (h *hostClient) lookupName(ctx context.Context, nodeID []byte) (string, bool, error) {
	r, err := h.client.LookupName(ctx, &pb.LookupNameRequest{NodeId: nodeID})
	if err != nil {
		return "", false, err
	}
	return r.GetName(), r.Name != nil, nil
}

func (h *hostClient) watchPeers(ctx context.Context) iter.Seq2[PeerEvent, error] {
	return func(yield func(PeerEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := h.client.WatchPeers(ctx, &pb.WatchPeersRequest{})
		if err != nil {
			yield(PeerEvent{}, err)
			return
		}
		for {
			r, err := stream.Recv()
			switch {
			case err == nil:
				if r.Event == nil {
					continue
				}
				if event, ok := peerEventOfWire(r.Event); ok && !yield(event, nil) {
					return
				}
			case errors.Is(err, io.EOF), ctx.Err() != nil && status.Code(err) == codes.Canceled:
				return
			default:
				yield(PeerEvent{}, err)
				return
			}
		}
	}
}

func (h *hostClient) sendDirect(ctx context.Context, peer, frame []byte) error {
	_, err := h.client.SendDirect(ctx, &pb.SendDirectRequest{Send: &pb.SendDirect{Peer: peer, Frame: frame}})
	return err
}

func (h *hostClient) sendRouted(ctx context.Context, dst, frame []byte, origin *pb.EffectOrigin) (bool, error) {
	r, err := h.client.SendRouted(ctx, &pb.SendRoutedRequest{Dst: dst, Frame: frame, Origin: origin})
	if err != nil {
		return false, err
	}
	return r.Routed, nil
}

func (h *hostClient) signingSeed(ctx context.Context) ([]byte, error) {
	r, err := h.client.GetSigningSeed(ctx, &pb.GetSigningSeedRequest{})
	if err != nil {
		return nil, err
	}
	return r.Seed, nil
}
