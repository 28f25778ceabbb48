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

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// pluginService implements plugwire.v1.PluginService over a Plugin.
type pluginService struct {
	pb.UnimplementedPluginServiceServer

	plugin   *described
	life     *lifecycle
	delivery *delivery
	// version is the protocol version of the handshake line.
	version uint32

	mu     sync.Mutex
	launch *launch
}

func (s *pluginService) currentLaunch() *launch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.launch
}

func (s *pluginService) Describe(_ context.Context, req *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	if req.ProtocolVersion != s.version {
		return nil, status.Errorf(codes.FailedPrecondition,
			"plugin '%s' refused Describe: it handshook protocol %d, but Describe asked for protocol %d; the host must send the version of the handshake line",
			s.plugin.name, s.version, req.ProtocolVersion)
	}
	r := &pb.DescribeResponse{
		Name:            s.plugin.name,
		PayloadKinds:    slices.Clone(s.plugin.kinds),
		ProtocolVersion: s.version,
		Sdk:             &pb.SdkInfo{Language: "go", Version: SDKVersion},
	}
	if s.plugin.stateful != nil {
		r.Stateful = &pb.StatefulSurface{Id: s.plugin.id, SnapshotVersions: slices.Clone(s.plugin.versions)}
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
		return nil, status.Errorf(codes.InvalidArgument, "plugin '%s' got a config that is not a JSON object: %v", s.plugin.name, err)
	}
	caps := map[Capability]bool{}
	for _, c := range req.Capabilities {
		if name, ok := capabilityOfWire[c]; ok {
			caps[name] = true
		}
	}
	s.mu.Lock()
	l := *s.launch
	l.dataDir = req.DataDir
	if req.InstanceId != "" {
		l.instanceID = req.InstanceId
	}
	l.configJSON = configJSON
	l.caps = caps
	s.launch = &l
	s.mu.Unlock()
	// The hook's context lives until shutdown, not until this call returns.
	if err := callHook("Start", func() error { return s.plugin.Start(&Context{Context: s.life.ctx, launch: &l}) }); err != nil {
		return nil, internalError(s.plugin.name, "Start", err)
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
	st := s.plugin.stateful
	if st == nil {
		return failStream(stream, s.plugin.name, errors.New("this plugin is not stateful (it does not implement plugwire.Stateful)"), snapshotFailure)
	}
	var version uint32
	var data []byte
	var applied uint64
	err := s.delivery.exclusive(func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("snapshot hook panicked: %v", r)
			}
		}()
		applied = s.delivery.applied
		version, data, err = st.Snapshot()
		return err
	})
	if err != nil {
		return failStream(stream, s.plugin.name, err, snapshotFailure)
	}
	header := &pb.SnapshotHeader{Id: s.plugin.id, Version: version, AppliedSeq: applied, SizeBytes: uint64(len(data))}
	if err := stream.Send(&pb.SnapshotResponse{Part: &pb.SnapshotResponse_Header{Header: header}}); err != nil {
		return err
	}
	for offset := 0; offset < len(data); offset += SnapshotChunkBytes {
		chunk := data[offset:min(offset+SnapshotChunkBytes, len(data))]
		// Send blocks under flow control, so a slow host slows us down.
		if err := stream.Send(&pb.SnapshotResponse{Part: &pb.SnapshotResponse_Chunk{Chunk: chunk}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *pluginService) Restore(stream grpc.ClientStreamingServer[pb.RestoreRequest, pb.RestoreResponse]) error {
	fail := func(err error) error { return failStream(stream, s.plugin.name, err, restoreFailure) }
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
	st := s.plugin.stateful
	switch {
	case st == nil:
		return fail(errors.New("this plugin is not stateful (it does not implement plugwire.Stateful)"))
	case header == nil:
		return fail(errors.New("the restore stream carried no header"))
	case header.Id != s.plugin.id:
		return fail(fmt.Errorf("snapshot id '%s' is not this plugin's id '%s'", header.Id, s.plugin.id))
	case uint64(len(data)) != header.SizeBytes:
		return fail(fmt.Errorf("snapshot was truncated: header says %d bytes, got %d", header.SizeBytes, len(data)))
	case !slices.Contains(s.plugin.versions, header.Version):
		return fail(&UnsupportedVersionError{Version: header.Version, Expected: slices.Clone(s.plugin.versions)})
	}
	err := s.delivery.exclusive(func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("restore hook panicked: %v", r)
			}
		}()
		if err := st.Restore(header.Version, data); err != nil {
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
