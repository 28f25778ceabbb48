package plugwire

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A real server on a unix socket, with the token check, the connection rule
// and the same-user listener, as Serve sets them up.
func TestOneConnectionTheHosts(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "p.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	conns := &hostConnection{}
	auth := newTokenCheck("p", "tok", conns)
	server := grpc.NewServer(grpc.StatsHandler(conns), grpc.UnaryInterceptor(auth.unary), grpc.StreamInterceptor(auth.stream))
	healthpb.RegisterHealthServer(server, health.NewServer())
	go func() { _ = server.Serve(&sameUserListener{Listener: lis, log: slog.New(slog.DiscardHandler)}) }()
	defer server.Stop()

	dial := func(token string) (*grpc.ClientConn, healthpb.HealthClient) {
		cc, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(bearer("Bearer "+token).unary))
		if err != nil {
			t.Fatal(err)
		}
		return cc, healthpb.NewHealthClient(cc)
	}
	check := func(c healthpb.HealthClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}

	// A stranger without the token, before the host: refused, and it does not become the host's connection.
	strangerConn, stranger := dial("wrong")
	defer strangerConn.Close()
	if err := check(stranger); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no valid plugwire auth token") {
		t.Fatalf("stranger: %v", err)
	}
	hostConn, host := dial("tok")
	if err := check(host); err != nil {
		t.Fatalf("host: %v", err)
	}
	secondConn, second := dial("tok")
	defer secondConn.Close()
	err = check(second)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "it serves one connection, its host's") {
		t.Fatalf("second connection with the token: %v", err)
	}
	if err := check(host); err != nil {
		t.Fatalf("host after the refusal: %v", err)
	}
	// The host's connection ends; the next one that authenticates is served.
	_ = hostConn.Close()
	for tries := 0; ; tries++ {
		err = check(second)
		if err == nil {
			break
		}
		if tries > 100 {
			t.Fatalf("a new connection is still refused after the host's closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPeerUIDIsOwnUserOnLinux(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "u.sock")
	lis, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := net.Dial("unix", socket)
		if err == nil {
			<-done // held open until the test has looked at it
			_ = c.Close()
		}
	}()
	c, err := (&sameUserListener{Listener: lis, log: slog.New(slog.DiscardHandler)}).Accept()
	if err != nil {
		t.Fatalf("a connection from this user is accepted: %v", err)
	}
	defer c.Close()
	if uid, known := peerUID(c); runtime.GOOS == "linux" && (!known || uid != os.Getuid()) {
		t.Fatalf("SO_PEERCRED: uid %d (known %v), want %d", uid, known, os.Getuid())
	}
}
