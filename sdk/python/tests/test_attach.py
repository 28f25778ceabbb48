"""Attach mode (docs/protocol.md §18): the environment, and real plugin processes
served on loopback TCP, with mutual TLS (certificates made by the openssl CLI)
and in plaintext (PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK=1).

    plugins-example/python/.venv/bin/python -m pytest sdk/python/tests/test_attach.py

The error texts are the TypeScript SDK's (sdk/src/listen.ts), word for word.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from plugwire import _attach
from plugwire._attach import TcpAddress, is_loopback_host, parse_tcp_address, remote_listen_from_env
from plugwire._gen.health.v1 import health_pb2, health_pb2_grpc
from plugwire._gen.plugwire.v1 import plugin_pb2, plugin_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
COUNTER = REPO / "plugins-example" / "python" / "counter.py"
WHO = "plugwire plugin 'p'"


def env(**values: str) -> dict:
    return {f"PLUGWIRE_{k}": v for k, v in values.items()}


TLS = env(TLS_CERT="/c.pem", TLS_KEY="/k.pem", TLS_CLIENT_CA="/ca.pem")


# --------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------


def test_without_plugwire_listen_the_plugin_is_spawned_by_a_host():
    assert remote_listen_from_env("p", {}) is None
    assert remote_listen_from_env("p", env(LISTEN="")) is None


@pytest.mark.parametrize(
    "value, host, port",
    [("tcp://0.0.0.0:7443", "0.0.0.0", 7443), ("tcp://[::1]:1", "::1", 1), ("tcp://plugin.svc.local:65535", "plugin.svc.local", 65535)],
)
def test_addresses_parse(value, host, port):
    assert parse_tcp_address(value) == TcpAddress(host, port)


@pytest.mark.parametrize(
    "value, problem",
    [
        ("0.0.0.0:7443", '"0.0.0.0:7443" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)'),
        ("unix:///tmp/x.sock", '"unix:///tmp/x.sock" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)'),
        ("tcp://::1:7443", '"tcp://::1:7443" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)'),
        ("tcp://h:7443\n", '"tcp://h:7443\\n" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)'),
        ("tcp://h:0", 'port 0 of "tcp://h:0" is not between 1 and 65535'),
        ("tcp://h:65536", 'port 65536 of "tcp://h:65536" is not between 1 and 65535'),
    ],
)
def test_a_malformed_listen_address_is_refused(value, problem):
    assert remote_listen_from_env("p", {**TLS, **env(LISTEN=value)}) == f"{WHO}: PLUGWIRE_LISTEN={problem}"


def test_a_malformed_health_address_is_refused():
    got = remote_listen_from_env("p", {**TLS, **env(LISTEN="tcp://0.0.0.0:7443", HEALTH_LISTEN="7444")})
    assert got == f'{WHO}: PLUGWIRE_HEALTH_LISTEN="7444" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or tcp://[::1]:7443)'


def test_no_tls_material_is_refused_unless_plaintext_on_loopback_is_asked_for():
    got = remote_listen_from_env("p", env(LISTEN="tcp://127.0.0.1:7443"))
    assert got == (
        f"{WHO}: PLUGWIRE_LISTEN=tcp://127.0.0.1:7443 needs TLS material: set PLUGWIRE_TLS_CERT, PLUGWIRE_TLS_KEY and "
        "PLUGWIRE_TLS_CLIENT_CA (the CA that signs the host's client certificate). Plaintext is only for loopback tests, "
        "with PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK=1 (docs/protocol.md §18)."
    )
    # Only "1" asks for it.
    assert isinstance(remote_listen_from_env("p", env(LISTEN="tcp://127.0.0.1:7443", ALLOW_PLAINTEXT_LOOPBACK="true")), str)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.2", "[::]", "plugin.example"])
def test_plaintext_on_a_non_loopback_address_is_refused(host):
    listen = f"tcp://{host}:7443"
    got = remote_listen_from_env("p", env(LISTEN=listen, ALLOW_PLAINTEXT_LOOPBACK="1"))
    assert got == (
        f"{WHO}: refusing to serve plaintext on {listen}: PLUGWIRE_ALLOW_PLAINTEXT_LOOPBACK allows plaintext only on a "
        f"loopback address (127.0.0.1, ::1, localhost). Anyone who can reach {host.strip('[]')} could drive this plugin; "
        "set PLUGWIRE_TLS_CERT, PLUGWIRE_TLS_KEY and PLUGWIRE_TLS_CLIENT_CA instead."
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "[::1]", "localhost"])
def test_plaintext_on_loopback_is_allowed(host):
    got = remote_listen_from_env("p", env(LISTEN=f"tcp://{host}:7443", ALLOW_PLAINTEXT_LOOPBACK="1"))
    assert isinstance(got, _attach.RemoteListen), got
    assert got.tls is None and got.host is None and got.security == "plaintext (loopback only)"


def test_loopback_is_127_slash_8_the_ipv6_loopback_and_localhost_only():
    assert [is_loopback_host(h) for h in ("127.0.0.1", "127.255.0.1", "::1", "localhost")] == [True] * 4
    assert [is_loopback_host(h) for h in ("0.0.0.0", "128.0.0.1", "::", "127.1", "localhost.evil", "::ffff:127.0.0.1")] == [False] * 6


@pytest.mark.parametrize(
    "present, missing",
    [
        ({"TLS_CERT": "/c"}, "PLUGWIRE_TLS_KEY and PLUGWIRE_TLS_CLIENT_CA are"),
        ({"TLS_CERT": "/c", "TLS_KEY": "/k"}, "PLUGWIRE_TLS_CLIENT_CA is"),
        ({"TLS_CLIENT_CA": "/ca"}, "PLUGWIRE_TLS_CERT and PLUGWIRE_TLS_KEY are"),
    ],
)
def test_a_partial_tls_set_is_refused(present, missing):
    got = remote_listen_from_env("p", {**env(LISTEN="tcp://0.0.0.0:7443", ALLOW_PLAINTEXT_LOOPBACK="1"), **env(**present)})
    assert got == f"{WHO}: attach mode with TLS needs PLUGWIRE_TLS_CERT, PLUGWIRE_TLS_KEY and PLUGWIRE_TLS_CLIENT_CA; {missing} unset"


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "ten", " 5", "0x10"])
def test_a_bad_reload_interval_is_refused(value):
    got = remote_listen_from_env("p", {**TLS, **env(LISTEN="tcp://0.0.0.0:7443", TLS_RELOAD_MS=value)})
    assert got == f'{WHO}: PLUGWIRE_TLS_RELOAD_MS="{value}" must be a whole number of milliseconds, at least 1'


def test_tls_defaults_to_a_10_s_reload_and_says_so():
    got = remote_listen_from_env("p", {**TLS, **env(LISTEN="tcp://0.0.0.0:7443")})
    assert isinstance(got, _attach.RemoteListen)
    assert got.tls.reload_ms == 10_000
    assert got.security == "mutual TLS (client certificates must chain to /ca.pem; files re-read every 10000 ms)"
    got = remote_listen_from_env("p", {**TLS, **env(LISTEN="tcp://0.0.0.0:7443", TLS_RELOAD_MS="250")})
    assert got.tls.reload_ms == 250


def test_the_host_service_address_must_be_tcp_and_plaintext_only_on_loopback():
    base = env(LISTEN="tcp://127.0.0.1:7443", ALLOW_PLAINTEXT_LOOPBACK="1")
    got = remote_listen_from_env("p", {**base, **env(HOST_ADDRESS="unix:///run/host.sock")})
    assert got == (
        f'{WHO}: PLUGWIRE_HOST_ADDRESS="unix:///run/host.sock" is not tcp://HOST:PORT (for example tcp://0.0.0.0:7443 or '
        "tcp://[::1]:7443) (in attach mode the host's HostService is reached over TCP)"
    )
    got = remote_listen_from_env("p", {**base, **env(HOST_ADDRESS="tcp://10.0.0.1:7445")})
    assert got == f"{WHO}: refusing to call the host's HostService at tcp://10.0.0.1:7445 in plaintext: not a loopback address; set the TLS variables"
    got = remote_listen_from_env("p", {**base, **env(HOST_ADDRESS="tcp://127.0.0.1:7445")})
    assert got.host.target == "127.0.0.1:7445" and got.host.credentials is None


def test_unreadable_tls_files_for_the_host_service_are_refused(tmp_path):
    got = remote_listen_from_env("p", {**env(LISTEN="tcp://0.0.0.0:7443", HOST_ADDRESS="tcp://10.0.0.1:7445"), **TLS})
    assert isinstance(got, str)
    assert got.startswith(f"{WHO}: cannot read the TLS files for the host's HostService: ")
    assert "/ca.pem" in got


# --------------------------------------------------------------------------
# Real processes
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Plugin:
    """The counter example in attach mode; its stderr lines are collected."""

    def __init__(self, extra_env: dict, script: Path = COUNTER):
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PLUGWIRE_")}
        self.proc = subprocess.Popen(
            [sys.executable, str(script)], env={**clean, **extra_env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_line(self, text: str, timeout_s: float = 20.0) -> str:
        """The first stderr line holding `text`; fails after timeout_s or once stderr closed without one."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"no stderr line with {text!r} (exit {self.proc.poll()}); stderr:\n" + "\n".join(self.lines))
                self._cond.wait(left)

    def exit_code(self, timeout_s: float = 20.0) -> int:
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def plugins():
    started: list[Plugin] = []

    def start(extra_env: dict, **kw) -> Plugin:
        p = Plugin(extra_env, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


@pytest.mark.parametrize(
    "extra, message",
    [
        (env(LISTEN="tcp://0.0.0.0"), "plugwire plugin 'counter-py': PLUGWIRE_LISTEN=\"tcp://0.0.0.0\" is not tcp://HOST:PORT"),
        (env(LISTEN="tcp://0.0.0.0:7443"), "plugwire plugin 'counter-py': PLUGWIRE_LISTEN=tcp://0.0.0.0:7443 needs TLS material"),
        (env(LISTEN="tcp://0.0.0.0:7443", ALLOW_PLAINTEXT_LOOPBACK="1"), "plugwire plugin 'counter-py': refusing to serve plaintext on tcp://0.0.0.0:7443"),
        (env(LISTEN="tcp://0.0.0.0:7443", TLS_CERT="/c"), "plugwire plugin 'counter-py': attach mode with TLS needs"),
        (env(LISTEN="tcp://127.0.0.1:7443", TLS_CERT="/nonexistent/c", TLS_KEY="/nonexistent/k", TLS_CLIENT_CA="/nonexistent/ca"),
         "plugwire plugin 'counter-py': cannot load PLUGWIRE_TLS_CERT=/nonexistent/c and PLUGWIRE_TLS_KEY=/nonexistent/k"),
    ],
)
def test_a_bad_environment_exits_1_with_one_line_and_no_cookie_complaint(plugins, extra, message):
    p = plugins(extra)
    assert p.exit_code() == 1
    p.wait_line(message)
    assert len(p.lines) == 1, p.lines


def _stubs(channel):
    return plugin_pb2_grpc.PluginServiceStub(channel), health_pb2_grpc.HealthStub(channel)


def test_plaintext_loopback_serves_one_host_session_then_exits_3_on_a_new_one(plugins):
    port = free_port()
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{port}", ALLOW_PLAINTEXT_LOOPBACK="1"))
    line = p.wait_line("serving attach mode")
    assert f"plugwire plugin 'counter-py' serving attach mode on tcp://127.0.0.1:{port} with plaintext (loopback only)" in line
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        plugin, health = _stubs(channel)
        # No token is required: not on health, not on Describe (a host still sends one; it is ignored).
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        described = plugin.Describe(plugin_pb2.DescribeRequest(protocol_version=1), timeout=10)
        assert described.name == "counter-py" and described.sdk.language == "python"
        plugin.Start(plugin_pb2.StartRequest(instance_id="counter-py"), metadata=(("authorization", "Bearer t0ken"),), timeout=10)
        # The session is served: a second Describe is the host reconnecting, and this process exits 3 for a fresh one.
        with pytest.raises(grpc.RpcError) as refused:
            plugin.Describe(plugin_pb2.DescribeRequest(protocol_version=1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "already served a host session in this process; it exits (status 3)" in refused.value.details()
    assert p.exit_code() == 3
    p.wait_line("a new host session began (Describe) after this process served one")


def test_sigterm_exits_0_and_stdin_eof_means_nothing(plugins):
    port = free_port()
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{port}", ALLOW_PLAINTEXT_LOOPBACK="1"))
    p.wait_line("serving attach mode")  # stdin is /dev/null: EOF from the start
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        assert _stubs(channel)[1].Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
    assert p.proc.poll() is None
    p.proc.send_signal(signal.SIGTERM)
    assert p.exit_code() == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_an_ipv6_address_in_brackets_is_served(plugins):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    p = plugins(env(LISTEN=f"tcp://[::1]:{port}", ALLOW_PLAINTEXT_LOOPBACK="1"))
    assert f"serving attach mode on tcp://[::1]:{port} with plaintext (loopback only)" in p.wait_line("serving attach mode")
    with grpc.insecure_channel(f"[::1]:{port}") as channel:
        assert _stubs(channel)[1].Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_a_port_in_use_is_refused(plugins):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = plugins(env(LISTEN=f"tcp://127.0.0.1:{port}", ALLOW_PLAINTEXT_LOOPBACK="1"))
        assert p.exit_code() == 1
        p.wait_line(f"plugwire plugin 'counter-py': cannot listen on tcp://127.0.0.1:{port}")


# --------------------------------------------------------------------------
# Mutual TLS, with certificates made by the openssl CLI
# --------------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl CLI is not installed")


class Pki:
    def __init__(self, dir: Path):
        self.dir = dir
        self.serial = 1

    def _run(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

    def ca(self, name: str) -> tuple[Path, Path]:
        key, pem = self.dir / f"{name}.key", self.dir / f"{name}.pem"
        self._run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        self._run("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", "30", "-subj", f"/CN={name}",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(pem))
        return pem, key

    def issue(self, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
        key, csr, pem, ext = (self.dir / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
        self._run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
        self._run("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self._run("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial", str(self.serial),
                  "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(pem))
        self.serial += 1
        return pem, key


def _tls_channel(port: int, ca: Path, cert: Path, key: Path) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(), cert.read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=(("grpc.ssl_target_name_override", "localhost"),))


def _check(port: int, ca: Path, cert: Path, key: Path) -> "grpc.StatusCode | None":
    """A health check over mutual TLS: None when served, else the failure's code."""
    with _tls_channel(port, ca, cert, key) as channel:
        try:
            _stubs(channel)[1].Check(health_pb2.HealthCheckRequest(), timeout=10)
            return None
        except grpc.RpcError as e:
            return e.code()


@needs_openssl
def test_mutual_tls_serves_the_host_refuses_strangers_and_reloads_rotated_files(plugins, tmp_path):
    pki = Pki(tmp_path)
    ca = pki.ca("ca")
    server, host = pki.issue("plugin", ca), pki.issue("host", ca)
    other = pki.ca("other")
    stranger = pki.issue("stranger", other)
    files = {n: tmp_path / f"live-{n}" for n in ("cert", "key", "ca")}
    shutil.copy(server[0], files["cert"])
    shutil.copy(server[1], files["key"])
    shutil.copy(ca[0], files["ca"])
    port = free_port()
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{port}", TLS_CERT=str(files["cert"]), TLS_KEY=str(files["key"]),
                    TLS_CLIENT_CA=str(files["ca"]), TLS_RELOAD_MS="100"))
    line = p.wait_line("serving attach mode")
    assert f"with mutual TLS (client certificates must chain to {files['ca']}; files re-read every 100 ms)" in line
    # The moment it says so, the host's certificate is served (no retry here: that is the point).
    assert _check(port, ca[0], host[0], host[1]) is None
    # A client certificate of another CA, and no client certificate at all, are refused.
    assert _check(port, ca[0], stranger[0], stranger[1]) == grpc.StatusCode.UNAVAILABLE
    with grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca[0].read_bytes()),
                             options=(("grpc.ssl_target_name_override", "localhost"),)) as channel:
        with pytest.raises(grpc.RpcError):
            _stubs(channel)[1].Check(health_pb2.HealthCheckRequest(), timeout=10)
    # A plaintext client is not served either.
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError):
            _stubs(channel)[1].Check(health_pb2.HealthCheckRequest(), timeout=10)

    # Rotation to the other CA: key first, so the plugin may see a pair that does not match, which it must not serve.
    server2, host2 = pki.issue("plugin-2", other), pki.issue("host-2", other)
    shutil.copy(server2[1], files["key"])
    shutil.copy(server2[0], files["cert"])
    shutil.copy(other[0], files["ca"])
    served = "never tried"
    for _ in range(100):  # bounded: the files are re-read every 100 ms, at a handshake
        served = _check(port, other[0], host2[0], host2[1])
        if served is None:
            break
    assert served is None, f"the rotated certificate and client CA were not served: {served}"
    assert _check(port, ca[0], host[0], host[1]) == grpc.StatusCode.UNAVAILABLE, "the old client CA must be refused after the rotation"
    assert p.proc.poll() is None, "no restart"
    # A broken file keeps the last good material, and says so.
    files["key"].write_text("not a key\n")
    for _ in range(100):
        if any("TLS files not reloaded, serving the last good ones" in l for l in p.lines):
            break
        _check(port, other[0], host2[0], host2[1])
    p.wait_line("TLS files not reloaded, serving the last good ones", timeout_s=1)
    assert _check(port, other[0], host2[0], host2[1]) is None


@needs_openssl
def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(plugins, tmp_path):
    pki = Pki(tmp_path)
    ca = pki.ca("ca")
    a, b = pki.issue("a", ca), pki.issue("b", ca)
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{free_port()}", TLS_CERT=str(a[0]), TLS_KEY=str(b[1]), TLS_CLIENT_CA=str(ca[0])))
    assert p.exit_code() == 1
    p.wait_line(f"plugwire plugin 'counter-py': cannot load PLUGWIRE_TLS_CERT={a[0]} and PLUGWIRE_TLS_KEY={b[1]}")
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{free_port()}", TLS_CERT=str(a[0]), TLS_KEY=str(a[1]), TLS_CLIENT_CA=str(a[1])))
    assert p.exit_code() == 1
    p.wait_line(f"plugwire plugin 'counter-py': PLUGWIRE_TLS_CLIENT_CA={a[1]} holds no PEM certificate")


@needs_openssl
def test_the_health_listener_serves_health_alone_in_plaintext(plugins, tmp_path):
    pki = Pki(tmp_path)
    ca = pki.ca("ca")
    server, host = pki.issue("plugin", ca), pki.issue("host", ca)
    port, health_port = free_port(), free_port()
    p = plugins(env(LISTEN=f"tcp://127.0.0.1:{port}", HEALTH_LISTEN=f"tcp://127.0.0.1:{health_port}",
                    TLS_CERT=str(server[0]), TLS_KEY=str(server[1]), TLS_CLIENT_CA=str(ca[0])))
    p.wait_line("serving attach mode")
    p.wait_line(f"plugwire plugin 'counter-py' serving grpc.health.v1 for probes on port {health_port} (plaintext, health only)")
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
        plugin, health = _stubs(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as refused:
            plugin.Describe(plugin_pb2.DescribeRequest(protocol_version=1), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED, "the probe port serves health and nothing else"
    assert _check(port, ca[0], host[0], host[1]) is None
    # SIGTERM stops both listeners; the process exits 0.
    p.proc.send_signal(signal.SIGTERM)
    assert p.exit_code() == 0
