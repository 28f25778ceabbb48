package plugwire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/plugwire/plugwire/plugins-example/go/gen/plugwire/v1"
)

// pluginService implements plugwire.v1.PluginService over a Plugin.
type pluginService struct {
	pb.UnimplementedPluginServiceServer

	plugin   *Plugin
	life     *lifecycle
	delivery *delivery
	// version is the protocol version of the handshake line.
	version uint32

	mu sync.Mutex
	pc *Context
}

func (s *pluginService) context() *Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pc
}

func (s *pluginService) Describe(_ context.Context, req *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	if req.ProtocolVersion != s.version {
		return nil, status.Errorf(codes.FailedPrecondition,
			"plugin '%s' refused Describe: it handshook protocol %d, but Describe asked for protocol %d; the host must send the version of the handshake line",
			s.plugin.Name, s.version, req.ProtocolVersion)
	}
	r := &pb.DescribeResponse{
		Name:            s.plugin.Name,
		PayloadKinds:    slices.Clone(s.plugin.PayloadKinds),
		ProtocolVersion: s.version,
		Sdk:             &pb.SdkInfo{Language: "go", Version: SDKVersion},
	}
	if st := s.plugin.Stateful; st != nil {
		r.Stateful = &pb.StatefulSurface{Id: st.ID, SnapshotVersions: slices.Clone(st.Versions)}
	}
	return r, nil
}

func (s *pluginService) Start(_ context.Context, req *pb.StartRequest) (*pb.StartResponse, error) {
	configJSON := req.ConfigJson
	if configJSON == "" {
		configJSON = "{}"
	}
	var config map[string]any
	if err := json.Unmarshal([]byte(configJSON), &config); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "plugin '%s' got a config that is not a JSON object: %v", s.plugin.Name, err)
	}
	caps := map[Capability]bool{}
	for _, c := range req.Capabilities {
		if name, ok := capabilityOfWire[c]; ok {
			caps[name] = true
		}
	}
	s.mu.Lock()
	pc := *s.pc
	pc.DataDir = req.DataDir
	if req.InstanceId != "" {
		pc.InstanceID = req.InstanceId
	}
	pc.ConfigJSON = configJSON
	pc.Capabilities = caps
	s.pc = &pc
	s.mu.Unlock()
	if s.plugin.Start != nil {
		// The hook's context lives until shutdown, not until this call returns.
		if err := s.plugin.Start(s.life.ctx, &pc); err != nil {
			return nil, internalError(s.plugin.Name, "Start", err)
		}
	}
	return &pb.StartResponse{}, nil
}

// Deliver applies the items of one Deliver stream. It ends the stream itself
// when the plugin exits, after the final ack (the host never half-closes it,
// and GracefulStop waits for it), when the host ends it, or when it breaks.
func (s *pluginService) Deliver(stream grpc.BidiStreamingServer[pb.DeliverRequest, pb.DeliverResponse]) error {
	acks := s.delivery.openStream(stream.Send)
	defer s.delivery.closeStream(acks)
	requests := make(chan *pb.DeliverRequest)
	failed := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				failed <- err
				return
			}
			select {
			case requests <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case <-s.delivery.ended:
			return nil
		case err := <-failed:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case req := <-requests:
			if err := s.delivery.process(stream.Context(), req, acks); err != nil {
				return err
			}
		}
	}
}

func (s *pluginService) Snapshot(_ *pb.SnapshotRequest, stream grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	st := s.plugin.Stateful
	if st == nil {
		return failStream(stream, s.plugin.Name, errors.New("this plugin is not stateful (it declares no stateful hooks)"), snapshotFailure)
	}
	var snap Snapshot
	var applied uint64
	err := s.delivery.exclusive(func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("snapshot hook panicked: %v", r)
			}
		}()
		applied = s.delivery.applied
		snap, err = st.Snapshot()
		return err
	})
	if err != nil {
		return failStream(stream, s.plugin.Name, err, snapshotFailure)
	}
	header := &pb.SnapshotHeader{Id: st.ID, Version: snap.Version, AppliedSeq: applied, SizeBytes: uint64(len(snap.Bytes))}
	if err := stream.Send(&pb.SnapshotResponse{Part: &pb.SnapshotResponse_Header{Header: header}}); err != nil {
		return err
	}
	for offset := 0; offset < len(snap.Bytes); offset += SnapshotChunkBytes {
		chunk := snap.Bytes[offset:min(offset+SnapshotChunkBytes, len(snap.Bytes))]
		// Send blocks under flow control, so a slow host slows us down.
		if err := stream.Send(&pb.SnapshotResponse{Part: &pb.SnapshotResponse_Chunk{Chunk: chunk}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *pluginService) Restore(stream grpc.ClientStreamingServer[pb.RestoreRequest, pb.RestoreResponse]) error {
	fail := func(err error) error { return failStream(stream, s.plugin.Name, err, restoreFailure) }
	var header *pb.SnapshotHeader
	var data []byte
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch part := m.Part.(type) {
		case *pb.RestoreRequest_Header:
			if header != nil {
				return fail(errors.New("the restore stream carried a second header"))
			}
			header = part.Header
			data = make([]byte, 0, min(header.SizeBytes, 64<<20))
		case *pb.RestoreRequest_Chunk:
			if header == nil {
				return fail(errors.New("the restore stream carried a chunk before its header"))
			}
			data = append(data, part.Chunk...)
			if uint64(len(data)) > header.SizeBytes {
				return fail(fmt.Errorf("snapshot is longer than its header says: over %d bytes", header.SizeBytes))
			}
		default:
			return fail(errors.New("the restore stream carried a message with neither header nor chunk"))
		}
	}
	st := s.plugin.Stateful
	switch {
	case st == nil:
		return fail(errors.New("this plugin is not stateful (it declares no stateful hooks)"))
	case header == nil:
		return fail(errors.New("the restore stream carried no header"))
	case header.Id != st.ID:
		return fail(fmt.Errorf("snapshot id '%s' is not this plugin's id '%s'", header.Id, st.ID))
	case uint64(len(data)) != header.SizeBytes:
		return fail(fmt.Errorf("snapshot was truncated: header says %d bytes, got %d", header.SizeBytes, len(data)))
	case !slices.Contains(st.Versions, header.Version):
		return fail(&UnsupportedVersionError{Version: header.Version, Expected: st.Versions})
	}
	err := s.delivery.exclusive(func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("restore hook panicked: %v", r)
			}
		}()
		if err := st.Restore(Snapshot{Version: header.Version, Bytes: data}); err != nil {
			return err
		}
		s.delivery.restoredLocked(header.AppliedSeq)
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return stream.SendAndClose(&pb.RestoreResponse{})
}

func (s *pluginService) Shutdown(_ context.Context, req *pb.ShutdownRequest) (*pb.ShutdownResponse, error) {
	deadline := time.Duration(req.DeadlineMs) * time.Millisecond
	if deadline == 0 {
		deadline = exitGrace
	}
	s.life.runShutdownHook(deadline)
	// Reply first; the process exits once this call has finished.
	go s.life.exit(0, stopGrace)
	return &pb.ShutdownResponse{}, nil
}
