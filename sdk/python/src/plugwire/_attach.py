"""Attach mode of serve() (docs/protocol.md §18, docs/remote-plugins.md).

With PLUGWIRE_LISTEN set, the plugin is run by a process manager
(Kubernetes, systemd, a supervisor script), not by a host, and serves on TCP
with mutual TLS. No cookie, no handshake line, no token line: a caller is the
host when its client certificate chains to PLUGWIRE_TLS_CLIENT_CA.

This module reads that environment and makes the TLS material; the same
checks and error texts as the TypeScript SDK (sdk/src/listen.ts) and the Go
SDK (sdk/go/remote.go). serve() in _runtime.py runs the server.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

import grpc

# The environment of attach mode; no host sets it.
ENV_LISTEN = "PLUGWIRE_LISTEN"
ENV_TLS_CERT = "PLUGWIRE_TLS_CERT"
ENV_TLS_KEY = "PLUGWIRE_TLS_KEY"
ENV_TLS_CLIENT_CA = "PLUGWIRE_TLS_CLIENT_CA"
ENV_TLS_RELOAD_MS = "PLUGWIRE_TLS_RELOAD_MS"
ENV_HEALTH_LISTEN = "PLUGWIRE_HEALTH_LISTEN"
ENV_REMOTE_HOST_ADDRESS = "PLUGWIRE_HOST_ADDRESS"
ENV_HOST_SERVER_NAME = "PLUGWIRE_HOST_SERVER_NAME"
ENV_ALLOW_PLAINTEXT_LOOPBACK = "PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK"

DEFAULT_TLS_RELOAD_MS = 10_000
#: Host calls go here when PLUGWIRE_HOST_ADDRESS is unset: they fail as unavailable.
REMOTE_NO_HOST_SERVICE = "unix:///nonexistent/plugwire-attach-mode-has-no-host-service"
#: Exit status of a process that ends because a second host session began.
REMOTE_NEW_SESSION_EXIT_CODE = 3
#: How long serve() waits for its own TLS listener to answer a handshake.
TLS_READY_TIMEOUT_S = 10.0

_TCP_ADDRESS = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")


def _quote(value: str) -> str:
    """A string as JSON.stringify writes it (the TS SDK's messages)."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class TcpAddress:
    host: str
    port: int

    def grpc_address(self) -> str:
        """host:port as grpcio binds and dials it (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_tcp_address(value: str) -> Union[TcpAddress, str]:
    """Parses tcp://HOST:PORT (IPv6 in brackets: tcp://[::1]:7000); returns a
    problem text instead when it is not one."""
    m = _TCP_ADDRESS.fullmatch(value)
    if m is None:
        return f"{_quote(value)} is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)"
    port = int(m.group(2))
    if port < 1 or port > 65535:
        return f"port {port} of {_quote(value)} is not between 1 and 65535"
    host = m.group(1)[1:-1] if m.group(1).startswith("[") else m.group(1)
    return TcpAddress(host, port)


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the only addresses plaintext is ever allowed on."""
    if host in ("localhost", "::1"):
        return True
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv4Address) and host.startswith("127.")
    except ValueError:
        return False


@dataclass(frozen=True)
class RemoteHostService:
    """How an attached plugin reaches the host's HostService (PLUGWIRE_HOST_ADDRESS)."""

    target: str
    #: None: plaintext (loopback only).
    credentials: Optional[grpc.ChannelCredentials]
    options: Tuple[Tuple[str, str], ...] = ()


class TlsFiles:
    """The plugin's certificate, key and client CA, re-read every reload_ms
    (at a handshake, when that long has passed since the last read), so a
    renewed pair or a new CA serves the next connections without a restart.
    Files that fail to load keep the last good material, and say so on stderr."""

    def __init__(self, plugin: str, cert: str, key: str, client_ca: str, reload_ms: int,
                 on_error: Optional[Callable[[str], None]] = None, clock: Callable[[], float] = time.monotonic):
        self.plugin = plugin
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self.reload_ms = reload_ms
        self.on_error = on_error
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded_at = 0.0
        self._current: Optional[Tuple[bytes, bytes, bytes]] = None

    def read(self) -> Tuple[bytes, bytes, bytes]:
        """(cert, key, ca) PEM bytes, checked: the key matches the certificate
        and the CA file holds a certificate. Raises ValueError saying which
        file is wrong."""
        try:
            check = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            check.load_cert_chain(self.cert, self.key)
            with open(self.cert, "rb") as f:
                cert = f.read()
            with open(self.key, "rb") as f:
                key = f.read()
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load {ENV_TLS_CERT}={self.cert} and {ENV_TLS_KEY}={self.key}: {e}") from None
        try:
            with open(self.client_ca, "rb") as f:
                ca = f.read()
        except OSError as e:
            raise ValueError(f"cannot read {ENV_TLS_CLIENT_CA}={self.client_ca}: {e}") from None
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            raise ValueError(f"{ENV_TLS_CLIENT_CA}={self.client_ca} holds no PEM certificate") from None
        return cert, key, ca

    @staticmethod
    def _configuration(material: Tuple[bytes, bytes, bytes]):
        cert, key, ca = material
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def server_credentials(self) -> grpc.ServerCredentials:
        """Reads the files now (raises ValueError) and returns credentials that
        require a client certificate chaining to the client CA, with this
        object re-reading the files."""
        material = self.read()
        with self._lock:
            self._current = material
            self._loaded_at = self._clock()
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(material), self.fetch, require_client_authentication=True
        )

    def fetch(self):
        """grpcio's certificate_configuration_fetcher, called before every
        TLS handshake: a new configuration when the files changed since the
        last read (at most every reload_ms), else None (keep the current one)."""
        with self._lock:
            now = self._clock()
            if now - self._loaded_at < self.reload_ms / 1000:
                return None
            self._loaded_at = now
            try:
                material = self.read()
            except ValueError as e:
                if self.on_error is not None:
                    self.on_error(f"plugwire plugin '{self.plugin}': TLS files not reloaded, serving the last good ones: {e}")
                return None
            if material == self._current:
                return None
            self._current = material
        return self._configuration(material)


@dataclass
class RemoteListen:
    address: TcpAddress
    host: Optional[RemoteHostService]
    #: PLUGWIRE_HEALTH_LISTEN: plaintext grpc.health.v1 only, for probes that cannot present a client certificate.
    health_address: Optional[TcpAddress]
    #: What the startup log line says about the transport.
    security: str
    #: None: plaintext (loopback only).
    tls: Optional[TlsFiles] = field(default=None)


def remote_listen_from_env(plugin: str, env: Optional[Mapping[str, str]] = None) -> Union[RemoteListen, str, None]:
    """Reads the attach-mode environment: None when PLUGWIRE_LISTEN is unset
    (the plugin was spawned by a host), a problem text for an environment
    that cannot work (serve() prints it and exits 1), else what to serve."""
    env = os.environ if env is None else env
    listen = env.get(ENV_LISTEN, "")
    if listen == "":
        return None
    who = f"plugwire plugin '{plugin}'"
    address = parse_tcp_address(listen)
    if isinstance(address, str):
        return f"{who}: {ENV_LISTEN}={address}"
    health_text = env.get(ENV_HEALTH_LISTEN, "")
    health_address = None
    if health_text:
        parsed = parse_tcp_address(health_text)
        if isinstance(parsed, str):
            return f"{who}: {ENV_HEALTH_LISTEN}={parsed}"
        health_address = parsed
    cert = env.get(ENV_TLS_CERT, "")
    key = env.get(ENV_TLS_KEY, "")
    client_ca = env.get(ENV_TLS_CLIENT_CA, "")
    if not (cert or key or client_ca):
        if env.get(ENV_ALLOW_PLAINTEXT_LOOPBACK) != "1":
            return (
                f"{who}: {ENV_LISTEN}={listen} needs TLS material: set {ENV_TLS_CERT}, {ENV_TLS_KEY} and {ENV_TLS_CLIENT_CA} "
                f"(the CA that signs the host's client certificate). Plaintext is only for loopback tests, with "
                f"{ENV_ALLOW_PLAINTEXT_LOOPBACK}=1 (docs/protocol.md §18)."
            )
        if not is_loopback_host(address.host):
            return (
                f"{who}: refusing to serve plaintext on {listen}: {ENV_ALLOW_PLAINTEXT_LOOPBACK} allows plaintext only on a "
                f"loopback address (127.0.0.1, ::1, localhost). Anyone who can reach {address.host} could drive this plugin; "
                f"set {ENV_TLS_CERT}, {ENV_TLS_KEY} and {ENV_TLS_CLIENT_CA} instead."
            )
        host = _remote_host_service(who, env, None)
        if isinstance(host, str):
            return host
        return RemoteListen(address, host, health_address, "plaintext (loopback only)")
    missing = [k for k, v in ((ENV_TLS_CERT, cert), (ENV_TLS_KEY, key), (ENV_TLS_CLIENT_CA, client_ca)) if not v]
    if missing:
        return (
            f"{who}: attach mode with TLS needs {ENV_TLS_CERT}, {ENV_TLS_KEY} and {ENV_TLS_CLIENT_CA}; "
            f"{' and '.join(missing)} {'are' if len(missing) > 1 else 'is'} unset"
        )
    reload_text = env.get(ENV_TLS_RELOAD_MS, "")
    if reload_text == "":
        reload_ms = DEFAULT_TLS_RELOAD_MS
    elif re.fullmatch(r"[0-9]+", reload_text) and int(reload_text) >= 1:
        reload_ms = int(reload_text)
    else:
        return f"{who}: {ENV_TLS_RELOAD_MS}={_quote(reload_text)} must be a whole number of milliseconds, at least 1"
    host = _remote_host_service(who, env, (cert, key, client_ca))
    if isinstance(host, str):
        return host
    return RemoteListen(
        address,
        host,
        health_address,
        f"mutual TLS (client certificates must chain to {client_ca}; files re-read every {reload_ms} ms)",
        TlsFiles(plugin, cert, key, client_ca, reload_ms),
    )


def _remote_host_service(who: str, env: Mapping[str, str], tls: Optional[Tuple[str, str, str]]) -> Union[RemoteHostService, str, None]:
    """PLUGWIRE_HOST_ADDRESS in attach mode: the host's HostService over TCP.
    With TLS, the plugin presents its own certificate (it needs the clientAuth
    usage too) and trusts PLUGWIRE_TLS_CLIENT_CA for the host's server
    certificate; the calls carry the bearer token the host sent with Start."""
    value = env.get(ENV_REMOTE_HOST_ADDRESS, "")
    if not value:
        return None
    address = parse_tcp_address(value)
    if isinstance(address, str):
        return f"{who}: {ENV_REMOTE_HOST_ADDRESS}={address} (in attach mode the host's HostService is reached over TCP)"
    if tls is None:
        if not is_loopback_host(address.host):
            return f"{who}: refusing to call the host's HostService at {value} in plaintext: not a loopback address; set the TLS variables"
        return RemoteHostService(address.grpc_address(), None)
    cert, key, ca = tls
    try:
        pem = {}
        for name, path in (("ca", ca), ("cert", cert), ("key", key)):
            with open(path, "rb") as f:
                pem[name] = f.read()
    except OSError as e:
        return f"{who}: cannot read the TLS files for the host's HostService: {e}"
    server_name = env.get(ENV_HOST_SERVER_NAME, "") or address.host
    return RemoteHostService(
        address.grpc_address(),
        grpc.ssl_channel_credentials(root_certificates=pem["ca"], private_key=pem["key"], certificate_chain=pem["cert"]),
        (("grpc.ssl_target_name_override", server_name), ("grpc.default_authority", server_name)),
    )


def _dial_host(address: TcpAddress) -> str:
    """The address to reach a listener bound on `address` from this machine."""
    if address.host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if address.host == "::":
        return "::1"
    return address.host


def _server_speaks_tls(host: str, port: int, context: ssl.SSLContext, timeout_s: float) -> Optional[str]:
    """One probe: None when the server answered a ClientHello with its TLS
    handshake (under TLS 1.3, the whole first flight, certificate included),
    else what went wrong. The probe never sends a client certificate, nor
    anything after the ClientHello: it closes the connection first, so the
    server has nothing to refuse (and logs no failed handshake)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False)
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        answered = False
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                # Send only the ClientHello: the client's second flight would carry its (empty) certificate.
                hello = outgoing.read()
                if hello and not answered:
                    raw.sendall(hello)
                elif answered:
                    return None  # TLS 1.2: the server's first flight came; the client would now answer it
                chunk = raw.recv(65536)
                if not chunk:
                    return "the server closed the connection during the TLS handshake"
                if not answered and chunk[0] != 0x16:
                    return f"the server answered a ClientHello with something other than a TLS handshake record (0x{chunk[0]:02x})"
                answered = True
                incoming.write(chunk)
                continue
            return None if tls.getpeercert(binary_form=True) else "the handshake carried no server certificate"


def wait_tls_ready(address: TcpAddress, port: int, timeout_s: float = TLS_READY_TIMEOUT_S) -> None:
    """Returns once the TLS listener on `port` answers a handshake with its
    certificate: only then does the plugin say that it serves. Raises
    RuntimeError after timeout_s of refused, reset or non-TLS answers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only whether it speaks TLS; the host checks the certificate
    context.set_alpn_protocols(["h2"])
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    delay = 0.001
    while time.monotonic() < deadline:
        try:
            problem = _server_speaks_tls(_dial_host(address), port, context, max(0.1, deadline - time.monotonic()))
        except (OSError, ssl.SSLError) as e:
            problem = str(e) or type(e).__name__
        if problem is None:
            return
        last = problem
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    raise RuntimeError(
        f"the TLS listener on port {port} did not complete a handshake within {int(timeout_s * 1000)} ms ({last}); "
        "check that the certificate, key and CA files are readable PEM files and that the key matches the certificate"
    )


__all__: Sequence[str] = (
    "DEFAULT_TLS_RELOAD_MS",
    "ENV_LISTEN",
    "REMOTE_NEW_SESSION_EXIT_CODE",
    "RemoteHostService",
    "RemoteListen",
    "TcpAddress",
    "TlsFiles",
    "is_loopback_host",
    "parse_tcp_address",
    "remote_listen_from_env",
    "wait_tls_ready",
)
