package plugwire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

var instanceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// described is a Plugin with what it declares read once, at Serve.
type described struct {
	Plugin
	name  string
	kinds []string
	// stateful is nil unless the plugin implements Stateful.
	stateful Stateful
	id       string
	versions []uint32
}

func describe(p Plugin) *described {
	d := &described{Plugin: p, name: p.Name(), kinds: slices.Clone(p.PayloadKinds())}
	if st, ok := p.(Stateful); ok {
		d.stateful = st
		d.id = st.ID()
		d.versions = slices.Clone(st.Versions())
	}
	return d
}

// callHook runs a Start or Shutdown hook, turning a panic into an error.
func callHook(name string, hook func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s hook panicked: %v", name, r)
		}
	}()
	return hook()
}

// Serve runs the plugin until the host stops it, then exits the process. It
// never returns. Run outside a plugwire host (without its magic cookie in
// the environment), it prints what the program is and exits 1.
func Serve(plugin Plugin) {
	program := filepath.Base(os.Args[0])
	if listen := os.Getenv(EnvListen); listen != "" {
		serveRemote(plugin, listen) // attach mode: run by a process manager, mutual TLS (remote.go)
	}
	if os.Getenv(EnvMagicCookie) != MagicCookieValue {
		fmt.Fprintf(os.Stderr,
			"This is a plugwire plugin (%s); it is started by a plugwire host, not run directly.\n"+
				"Add it to a host config and run `plugwire run --config FILE`, or test it with `plugwire check -- COMMAND`.\n",
			program)
		os.Exit(1)
	}
	if plugin == nil {
		fatal("plugwire plugin %s: plugwire.Serve was given a nil Plugin", program)
	}
	p := describe(plugin)
	if p.name == "" {
		fatal("plugwire plugin %s: its Name() is empty; a plugin needs a stable name", program)
	}
	if p.stateful != nil && p.id == "" {
		fatal("plugwire plugin '%s': it implements plugwire.Stateful but its ID() is empty", p.name)
	}
	version := pickVersion(p.name, requireEnv(EnvProtocolVersions))
	socketDir := requireEnv(EnvSocketDir)
	instanceID := requireEnv(EnvInstanceID)
	hostAddress := requireEnv(EnvHostAddress)
	if !instanceIDPattern.MatchString(instanceID) {
		fatal("plugwire plugin '%s': %s=%q may only use [A-Za-z0-9._-]", p.name, EnvInstanceID, instanceID)
	}
	socketPath := filepath.Join(socketDir, instanceID+".sock")
	if !filepath.IsAbs(socketDir) || strings.IndexFunc(socketPath, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		fatal("plugwire plugin '%s': %s=%q must be an absolute path without whitespace or control characters, "+
			"since the socket path goes in the handshake line. The host that started this plugin is broken.", p.name, EnvSocketDir, socketDir)
	}
	if len(socketPath) > MaxSocketPathBytes {
		fatal("plugwire plugin '%s': socket path %s is %d bytes, over the %d-byte unix socket limit. Give the host a shorter runDirParent (docs/protocol.md §4).",
			p.name, socketPath, len(socketPath), MaxSocketPathBytes)
	}

	// The token: by default the first line on stdin, which no other process
	// can read (docs/protocol.md §6); read before anything listens, and
	// before the stdin watcher below starts.
	token, err := readLaunchToken(os.Getenv, os.Stdin, TokenLineTimeout)
	if err != nil {
		fatal("plugwire plugin '%s': %v", p.name, err)
	}
	_ = os.Unsetenv(EnvAuthToken) // the legacy variable is not passed on to child processes

	log := newLogger(os.Stderr)
	// grpc-go's own log lines (plain text, some multi-line) would reach the
	// host's log as errors: send its warnings and errors as JSON lines instead.
	grpclog.SetLoggerV2(grpcLogger{log})
	host, err := dialHost(hostAddress, token)
	if err != nil {
		fatal("plugwire plugin '%s': %v", p.name, err)
	}
	healthServer := health.NewServer()
	life := newLifecycle(p, log, host, healthServer, socketPath)

	// Watch for the host's death from the very start, before the handshake.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		life.stop("stdin closed", 0) // no host left to answer
	}()
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		life.stop(sig.String(), stopGrace)
	}()

	conns := &hostConnection{}
	auth := newTokenCheck(p.name, token, conns)
	server := grpc.NewServer(
		grpc.StatsHandler(conns),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.UnaryInterceptor(auth.unary),
		grpc.StreamInterceptor(auth.stream),
	)
	life.server = server
	service := &pluginService{
		plugin:  p,
		life:    life,
		version: version,
		launch:  &launch{name: p.name, instanceID: instanceID, configJSON: "{}", caps: map[Capability]bool{}, host: host, log: log},
	}
	service.delivery = newDeliveryOf(p, service.currentLaunch, time.Now)
	life.launch = service.currentLaunch
	life.delivery = service.delivery
	pb.RegisterPluginServiceServer(server, service)
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus(pb.PluginService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, healthServer)

	listener, err := listenUnix(socketPath)
	if err != nil {
		fatal("plugwire plugin '%s': cannot listen on %s: %v", p.name, socketPath, err)
	}
	listener = &sameUserListener{Listener: listener, log: log}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("gRPC server failed", "error", err.Error())
			life.exit(1, 0)
		}
	}()
	fmt.Fprint(os.Stdout, handshakeLine(version, socketPath))
	select {} // the lifecycle exits the process
}

// listenUnix listens on socketPath with the socket file readable and
// writable by this user only.
func listenUnix(socketPath string) (net.Listener, error) {
	if info, err := os.Lstat(socketPath); err == nil && info.Mode()&os.ModeSocket != 0 {
		_ = os.Remove(socketPath) // a stale socket of an earlier process
	}
	old := syscall.Umask(0o177)
	listener, err := net.Listen("unix", socketPath)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(socketPath, 0o600); err != nil {
		_ = listener.Close()
		return nil, err
	}
	return listener, nil
}

// handshakeLine is the line printed once the socket listens (docs/protocol.md §5), with its LF.
func handshakeLine(version uint32, socketPath string) string {
	return fmt.Sprintf("%s protocol=%d network=unix address=%s transport=grpc\n", HandshakePrefix, version, socketPath)
}

// parseVersions reads PLUGWIRE_PROTOCOL_VERSIONS: decimal numbers separated
// by commas, spaces or tabs around each (docs/protocol.md §3); ok is false
// when the value is malformed.
func parseVersions(offered string) (versions []uint32, ok bool) {
	for _, field := range strings.Split(offered, ",") {
		digits := strings.Trim(field, " \t")
		v, err := strconv.ParseUint(digits, 10, 32)
		if err != nil || digits == "" || digits[0] < '0' || digits[0] > '9' {
			return nil, false
		}
		versions = append(versions, uint32(v))
	}
	return versions, true
}

// pickVersion chooses the highest protocol version both sides speak.
func pickVersion(plugin, offered string) uint32 {
	host, ok := parseVersions(offered)
	if !ok {
		fatal("plugwire plugin '%s': %s=%q is malformed; it must be decimal versions separated by commas, such as \"1\" or \"1,2\". "+
			"The host that started this plugin is broken.", plugin, EnvProtocolVersions, offered)
	}
	best := uint32(0)
	for _, v := range supportedVersions {
		if slices.Contains(host, v) && v > best {
			best = v
		}
	}
	if best == 0 {
		fatal("plugwire plugin '%s': the host accepts protocol versions %s, but this plugin speaks version %s. "+
			"Upgrade the plugin or the host so they share a version.", plugin, joinVersions(host), joinVersions(supportedVersions))
	}
	return best
}

func requireEnv(name string) string {
	value := os.Getenv(name)
	if value == "" {
		fatal("plugwire plugin: the host did not set %s; this plugin must be started by a plugwire host.", name)
	}
	return value
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// lifecycle owns shutdown: the hook runs at most once, health turns
// NOT_SERVING, the Start context is cancelled, and the process exits.
type lifecycle struct {
	plugin     *described
	log        *slog.Logger
	host       *hostClient
	health     *health.Server
	socketPath string
	server     *grpc.Server
	launch     func() *launch
	delivery   *delivery

	ctx      context.Context
	cancel   context.CancelFunc
	hookOnce sync.Once
	exitOnce sync.Once
}

func newLifecycle(p *described, log *slog.Logger, host *hostClient, h *health.Server, socketPath string) *lifecycle {
	ctx, cancel := context.WithCancel(context.Background())
	return &lifecycle{plugin: p, log: log, host: host, health: h, socketPath: socketPath, ctx: ctx, cancel: cancel}
}

// runShutdownHook is the start of every shutdown (Shutdown, SIGTERM, SIGINT,
// stdin EOF), once: Health turns NOT_SERVING, no new item starts, the handler
// running now finishes and the final ack is sent, and the plugin's Shutdown
// hook runs; all within deadline. exit then ends the Deliver streams.
func (l *lifecycle) runShutdownHook(deadline time.Duration) {
	l.hookOnce.Do(func() {
		end := time.Now().Add(deadline)
		l.health.Shutdown() // every service NOT_SERVING from now on
		l.cancel()
		if l.delivery != nil {
			l.delivery.stop(deadline)
		}
		if l.launch == nil {
			return
		}
		ctx, cancel := context.WithDeadline(context.Background(), end)
		defer cancel()
		hc := &Context{Context: ctx, launch: l.launch()}
		done := make(chan error, 1)
		go func() { done <- callHook("Shutdown", func() error { return l.plugin.Shutdown(hc) }) }()
		select {
		case err := <-done:
			if err != nil {
				l.log.Error("shutdown hook failed", "error", err.Error())
			}
		case <-ctx.Done():
			l.log.Warn("shutdown hook did not finish in time", "deadline_ms", deadline.Milliseconds())
		}
	})
}

// stop is the graceful path for stdin EOF and signals.
func (l *lifecycle) stop(reason string, grace time.Duration) {
	l.log.Debug("stopping", "reason", reason)
	l.runShutdownHook(exitGrace)
	l.exit(0, grace)
}

// exit lets in-flight calls finish for at most grace, then exits the process.
func (l *lifecycle) exit(code int, grace time.Duration) {
	l.exitOnce.Do(func() {
		if l.delivery != nil {
			l.delivery.endStreams() // the final ack went out in runShutdownHook
		}
		if l.server != nil && grace > 0 {
			stopped := make(chan struct{})
			go func() {
				l.server.GracefulStop()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-time.After(grace):
			}
		}
		l.host.close()
		_ = os.Remove(l.socketPath)
		os.Exit(code)
	})
}
