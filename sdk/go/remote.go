package plugwire

// Attach mode (docs/protocol.md §18, docs/remote-plugins.md): with
// PLUGWIRE_LISTEN set, the plugin is run by a process manager (Kubernetes,
// systemd, a supervisor script), not by a host, and serves on TCP with
// mutual TLS. No cookie, no handshake line, no token: a caller is the host
// when its client certificate chains to PLUGWIRE_TLS_CLIENT_CA.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/plugwire/plugwire/sdk/go/gen/plugwire/v1"
)

// The environment of attach mode; no host sets it.
const (
	// EnvListen is tcp://HOST:PORT: serve there instead of on a unix socket.
	EnvListen = "PLUGWIRE_LISTEN"
	// EnvTLSCert and EnvTLSKey are PEM files: the plugin's server certificate and key.
	EnvTLSCert = "PLUGWIRE_TLS_CERT"
	EnvTLSKey  = "PLUGWIRE_TLS_KEY"
	// EnvTLSClientCA is a PEM file: the CA (bundle) that signs the host's client certificate.
	EnvTLSClientCA = "PLUGWIRE_TLS_CLIENT_CA"
	// EnvTLSReloadMs is how often the three files are re-read, in ms (default 10000).
	EnvTLSReloadMs = "PLUGWIRE_TLS_RELOAD_MS"
	// EnvHealthListen is tcp://HOST:PORT: also serve grpc.health.v1 (only) there
	// in plaintext, for probes that cannot present a client certificate (the kubelet's).
	EnvHealthListen = "PLUGWIRE_HEALTH_LISTEN"
	// EnvAllowPlaintextLoopback = 1 serves plaintext; refused unless the address is loopback.
	EnvAllowPlaintextLoopback = "PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK"
)

// remoteNewSessionExitCode is the exit status of a process that ends because
// a second host session began (docs/protocol.md §18).
const remoteNewSessionExitCode = 3

// remoteNoHostService is the HostService target when PLUGWIRE_HOST_ADDRESS is
// unset in attach mode: host calls then fail as unavailable.
const remoteNoHostService = "unix:///nonexistent/plugwire-attach-mode-has-no-host-service"

var tcpAddressPattern = regexp.MustCompile(`^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$`)

// parseListen parses tcp://HOST:PORT into host and port.
func parseListen(value string) (string, int, error) {
	m := tcpAddressPattern.FindStringSubmatch(value)
	if m == nil {
		return "", 0, fmt.Errorf("%q is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)", value)
	}
	port, _ := strconv.Atoi(m[2])
	if port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %d of %q is not between 1 and 65535", port, value)
	}
	return strings.Trim(m[1], "[]"), port, nil
}

// isLoopbackHost is true for 127.0.0.0/8, ::1 and localhost.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// certFiles re-reads a certificate, key and client CA every interval (on
// demand, at a handshake), so a renewed pair or a new CA serves the next
// connections without a restart. A file that fails to load keeps the last
// good material and is logged.
type certFiles struct {
	cert, key, ca string
	every         time.Duration
	onError       func(error)

	mu       sync.Mutex
	loadedAt time.Time
	pair     *tls.Certificate
	pool     *x509.CertPool
	rawCA    []byte
}

func (c *certFiles) load() error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("cannot load %s=%s and %s=%s: %w", EnvTLSCert, c.cert, EnvTLSKey, c.key, err)
	}
	rawCA, err := os.ReadFile(c.ca)
	if err != nil {
		return fmt.Errorf("cannot read %s=%s: %w", EnvTLSClientCA, c.ca, err)
	}
	pool := c.pool
	if pool == nil || !bytes.Equal(rawCA, c.rawCA) {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(rawCA) {
			return fmt.Errorf("%s=%s holds no PEM certificate", EnvTLSClientCA, c.ca)
		}
	}
	c.pair, c.pool, c.rawCA = &pair, pool, rawCA
	return nil
}

// current returns the material, re-read if older than the interval.
func (c *certFiles) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.loadedAt) >= c.every {
		c.loadedAt = time.Now()
		if err := c.load(); err != nil && c.onError != nil {
			c.onError(err)
		}
	}
	return c.pair, c.pool
}

// tlsConfig requires client certificates from the (current) client CA.
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			pair, pool := c.current()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{"h2"},
				Certificates: []tls.Certificate{*pair},
				ClientCAs:    pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
			}, nil
		},
	}
}

// remoteCredentials reads the attach-mode TLS environment.
func remoteCredentials(plugin, listen, host string) (credentials.TransportCredentials, string, error) {
	cert, key, ca := os.Getenv(EnvTLSCert), os.Getenv(EnvTLSKey), os.Getenv(EnvTLSClientCA)
	if cert == "" && key == "" && ca == "" {
		if os.Getenv(EnvAllowPlaintextLoopback) != "1" {
			return nil, "", fmt.Errorf("%s=%s needs TLS material: set %s, %s and %s (the CA that signs the host's client certificate). "+
				"Plaintext is only for loopback tests, with %s=1 (docs/protocol.md §18)", EnvListen, listen, EnvTLSCert, EnvTLSKey, EnvTLSClientCA, EnvAllowPlaintextLoopback)
		}
		if !isLoopbackHost(host) {
			return nil, "", fmt.Errorf("refusing to serve plaintext on %s: %s allows plaintext only on a loopback address (127.0.0.1, ::1, localhost). "+
				"Anyone who can reach %s could drive this plugin; set %s, %s and %s instead", listen, EnvAllowPlaintextLoopback, host, EnvTLSCert, EnvTLSKey, EnvTLSClientCA)
		}
		return insecure.NewCredentials(), "plaintext (loopback only)", nil
	}
	var missing []string
	for _, kv := range [][2]string{{EnvTLSCert, cert}, {EnvTLSKey, key}, {EnvTLSClientCA, ca}} {
		if kv[1] == "" {
			missing = append(missing, kv[0])
		}
	}
	if len(missing) > 0 {
		return nil, "", fmt.Errorf("attach mode with TLS needs %s, %s and %s; %s unset", EnvTLSCert, EnvTLSKey, EnvTLSClientCA, strings.Join(missing, " and "))
	}
	every := 10 * time.Second
	if text := os.Getenv(EnvTLSReloadMs); text != "" {
		ms, err := strconv.Atoi(text)
		if err != nil || ms < 1 {
			return nil, "", fmt.Errorf("%s=%q must be a whole number of milliseconds, at least 1", EnvTLSReloadMs, text)
		}
		every = time.Duration(ms) * time.Millisecond
	}
	files := &certFiles{cert: cert, key: key, ca: ca, every: every}
	if err := files.load(); err != nil {
		return nil, "", err
	}
	files.loadedAt = time.Now()
	files.onError = func(err error) {
		fmt.Fprintf(os.Stderr, "{\"level\":\"error\",\"msg\":%q}\n", fmt.Sprintf("plugwire plugin '%s': TLS files not reloaded, serving the last good ones: %v", plugin, err))
	}
	return credentials.NewTLS(files.tlsConfig()),
		fmt.Sprintf("mutual TLS (client certificates must chain to %s; files re-read every %d ms)", ca, every.Milliseconds()), nil
}

// sessionGate serves one host session per process: once a Start was served,
// a new Describe or Start (the host reconnecting after a lost connection) is
// refused and the process exits, so its process manager starts it again with
// fresh memory and the host restores its snapshot into a clean state.
type sessionGate struct {
	plugin  string
	life    *lifecycle
	mu      sync.Mutex
	started bool
	// token is the bearer token the host sent with Start: host calls carry it.
	token atomic.Value
}

// hostToken is the token of the host's session ("" before Start).
func (g *sessionGate) hostToken() string {
	t, _ := g.token.Load().(string)
	return t
}

func (g *sessionGate) check(ctx context.Context, fullMethod string) error {
	method := path.Base(fullMethod)
	if method != "Describe" && method != "Start" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.started {
		if method == "Start" {
			g.started = true
			md, _ := metadata.FromIncomingContext(ctx)
			if values := md.Get(AuthMetadataKey); len(values) == 1 && strings.HasPrefix(values[0], "Bearer ") {
				g.token.Store(strings.TrimPrefix(values[0], "Bearer "))
			}
		}
		return nil
	}
	g.life.log.Warn("a new host session began after this process served one; exiting so the process manager restarts it with fresh state", "method", method)
	go func() {
		g.life.runShutdownHook(exitGrace)
		g.life.exit(remoteNewSessionExitCode, stopGrace)
	}()
	return status.Errorf(codes.Unavailable,
		"plugin '%s' already served a host session in this process; it exits (status %d) so that its process manager restarts it with fresh memory, "+
			"and the host's next attempt restores its snapshot into a clean state (docs/protocol.md §18)", g.plugin, remoteNewSessionExitCode)
}

func (g *sessionGate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := g.check(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (g *sessionGate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := g.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// serveRemote is Serve in attach mode. It never returns.
func serveRemote(plugin Plugin, listen string) {
	if plugin == nil {
		fatal("plugwire plugin: plugwire.Serve was given a nil Plugin")
	}
	p := describe(plugin)
	if p.name == "" {
		fatal("plugwire plugin: its Name() is empty; a plugin needs a stable name")
	}
	if p.stateful != nil && p.id == "" {
		fatal("plugwire plugin '%s': it implements plugwire.Stateful but its ID() is empty", p.name)
	}
	host, port, err := parseListen(listen)
	if err != nil {
		fatal("plugwire plugin '%s': %s=%v", p.name, EnvListen, err)
	}
	creds, security, err := remoteCredentials(p.name, listen, host)
	if err != nil {
		fatal("plugwire plugin '%s': %v", p.name, err)
	}
	version := supportedVersions[len(supportedVersions)-1]
	instanceID := os.Getenv(EnvInstanceID)
	if instanceID == "" {
		instanceID = p.name
	}
	log := newLogger(os.Stderr)
	grpclog.SetLoggerV2(grpcLogger{log})
	gate := &sessionGate{plugin: p.name}
	hostClient, err := dialRemoteHost(os.Getenv(EnvHostAddress), gate.hostToken)
	if err != nil {
		fatal("plugwire plugin '%s': %v", p.name, err)
	}
	healthServer := health.NewServer()
	life := newLifecycle(p, log, hostClient, healthServer, "")
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-signals
		life.stop(sig.String(), stopGrace)
	}()

	gate.life = life
	server := grpc.NewServer(
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(MaxMessageBytes),
		grpc.MaxSendMsgSize(MaxMessageBytes),
		grpc.UnaryInterceptor(gate.unary),
		grpc.StreamInterceptor(gate.stream),
		// Let a host detect a dead link with keepalive pings without a GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	life.server = server
	service := &pluginService{
		plugin:  p,
		life:    life,
		version: version,
		launch:  &launch{name: p.name, instanceID: instanceID, configJSON: "{}", caps: map[Capability]bool{}, host: hostClient, log: log},
	}
	service.delivery = newDeliveryOf(p, service.currentLaunch, time.Now)
	life.launch = service.currentLaunch
	life.delivery = service.delivery
	pb.RegisterPluginServiceServer(server, service)
	healthServer.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthServer.SetServingStatus(pb.PluginService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, healthServer)

	listener, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		fatal("plugwire plugin '%s': cannot listen on %s: %v", p.name, listen, err)
	}
	go func() {
		if err := server.Serve(listener); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("gRPC server failed", "error", err.Error())
			life.exit(1, 0)
		}
	}()
	if healthListen := os.Getenv(EnvHealthListen); healthListen != "" {
		hhost, hport, err := parseListen(healthListen)
		if err != nil {
			fatal("plugwire plugin '%s': %s=%v", p.name, EnvHealthListen, err)
		}
		probes := grpc.NewServer()
		healthpb.RegisterHealthServer(probes, healthServer) // the same serving status, nothing else
		hl, err := net.Listen("tcp", net.JoinHostPort(hhost, strconv.Itoa(hport)))
		if err != nil {
			fatal("plugwire plugin '%s': cannot listen on %s: %v", p.name, healthListen, err)
		}
		go func() { _ = probes.Serve(hl) }()
		log.Info(fmt.Sprintf("plugwire plugin '%s' serving grpc.health.v1 for probes on %s (plaintext, health only)", p.name, hl.Addr().String()))
	}
	log.Info(fmt.Sprintf("plugwire plugin '%s' serving attach mode on tcp://%s with %s", p.name, listener.Addr().String(), security))
	select {} // the lifecycle exits the process
}

// dynamicBearer attaches the token of the host's session to every call.
type dynamicBearer func() string

func (b dynamicBearer) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(metadata.AppendToOutgoingContext(ctx, AuthMetadataKey, "Bearer "+b()), method, req, reply, cc, opts...)
}

func (b dynamicBearer) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(metadata.AppendToOutgoingContext(ctx, AuthMetadataKey, "Bearer "+b()), desc, cc, method, opts...)
}

// dialRemoteHost reaches the host's HostService in attach mode:
// PLUGWIRE_HOST_ADDRESS=tcp://HOST:PORT (host option remoteHostService), with
// this plugin's certificate as its client certificate and PLUGWIRE_TLS_CLIENT_CA
// trusted for the host's; unset, host calls fail as unavailable.
func dialRemoteHost(address string, token func() string) (*hostClient, error) {
	target := remoteNoHostService
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if address != "" {
		host, port, err := parseListen(address)
		if err != nil {
			return nil, fmt.Errorf("%s=%v (in attach mode the host's HostService is reached over TCP)", EnvHostAddress, err)
		}
		target = "dns:" + net.JoinHostPort(host, strconv.Itoa(port))
		cert, key, ca := os.Getenv(EnvTLSCert), os.Getenv(EnvTLSKey), os.Getenv(EnvTLSClientCA)
		if cert == "" {
			if !isLoopbackHost(host) {
				return nil, fmt.Errorf("refusing to call the host's HostService at %s in plaintext: not a loopback address; set the TLS variables", address)
			}
		} else {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("cannot load %s and %s for host calls: %w", EnvTLSCert, EnvTLSKey, err)
			}
			raw, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("cannot read %s: %w", EnvTLSClientCA, err)
			}
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(raw)
			serverName := os.Getenv("PLUGWIRE_HOST_SERVER_NAME")
			if serverName == "" {
				serverName = host
			}
			creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, RootCAs: pool, ServerName: serverName})
		}
	}
	auth := dynamicBearer(token)
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithUnaryInterceptor(auth.unary),
		grpc.WithStreamInterceptor(auth.stream),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot use host address %q: %w", address, err)
	}
	return &hostClient{conn: conn, client: pb.NewHostServiceClient(conn)}, nil
}
