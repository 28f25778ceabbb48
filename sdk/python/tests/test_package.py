"""The package as pip builds it, and the API's checks of a definition."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import plugwire

SDK = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_the_generated_code_its_stubs_and_py_typed(tmp_path):
    # From a copy, so the build leaves nothing in the work tree; without
    # isolation: the pinned setuptools of the venv builds it, offline.
    source = tmp_path / "src"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)],
        check=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("plugwire-0.1.0-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("types", "plugin", "host"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert f"plugwire/_gen/plugwire/v1/{module}{suffix}" in names
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
        assert f"plugwire/_gen/health/v1/health{suffix}" in names
    assert "plugwire/py.typed" in names
    assert not any(n.startswith(("health/", "tests/")) for n in names), "nothing outside the plugwire package"
    metadata = zipfile.ZipFile(wheel).read("plugwire-0.1.0.dist-info/METADATA").decode()
    assert "Requires-Dist: grpcio<2,>=1.85.1" in metadata
    assert "Requires-Dist: protobuf<8,>=7.36.2" in metadata


def test_the_version_is_the_one_describe_reports():
    assert plugwire.__version__ == plugwire.SDK_VERSION == "0.1.0"


def _noop(ctx, src, kind, body):
    pass


def test_define_plugin_refuses_what_the_host_would_refuse():
    with pytest.raises(ValueError, match="must be 1-64 characters"):
        plugwire.define_plugin("bad name", ["k"], _noop)
    with pytest.raises(ValueError, match="claims no payload kinds"):
        plugwire.define_plugin("p", [], _noop)
    with pytest.raises(ValueError, match="duplicates"):
        plugwire.define_plugin("p", ["k", "k"], _noop)
    with pytest.raises(ValueError, match="printable ASCII"):
        plugwire.define_plugin("p", ["a kind"], _noop)
    with pytest.raises(ValueError, match="sequence of strings"):
        plugwire.define_plugin("p", "k", _noop)
    with pytest.raises(ValueError, match="needs Stateful"):
        plugwire.define_plugin("p", ["k"], _noop, stateful=plugwire.Stateful(id="x"))
    with pytest.raises(ValueError, match="distinct integers"):
        plugwire.define_plugin(
            "p", ["k"], _noop, stateful=plugwire.Stateful(id="x", versions=(), snapshot=lambda: (1, b""), restore=lambda v, d: None)
        )


def test_a_subclass_is_checked_the_same_way():
    class Nameless(plugwire.Plugin):
        payload_kinds = ("k",)

    assert plugwire.describe_problems(Nameless()) == ["the name '' must be 1-64 characters of [A-Za-z0-9._-]"]


def test_define_plugin_routes_the_hooks():
    seen = []
    p = plugwire.define_plugin(
        "p",
        ["k"],
        lambda ctx, src, kind, body: seen.append((kind, body)),
        on_peer_forgotten=lambda ctx, peer: seen.append(("forgot", peer)),
        stateful=plugwire.Stateful(id="x", versions=(3,), snapshot=lambda: (3, b"s"), restore=lambda v, d: seen.append((v, d))),
    )
    p.handle_payload(None, b"a", "k", b"b")
    p.on_peer_forgotten(None, b"a")
    assert p.snapshot() == (3, b"s")
    p.restore(3, b"d")
    p.start(None)
    p.shutdown(None)
    assert seen == [("k", b"b"), ("forgot", b"a"), (3, b"d")]


def test_a_port_without_its_capability_raises_permission_error_before_any_call():
    import threading

    ctx = plugwire.Context("p", "p-1", host=None, log=plugwire.Logger(), stopping=threading.Event())
    ctx.capabilities = frozenset({"control"})
    for call in (lambda: ctx.lookup_name(b"x"), lambda: ctx.lookup_x25519(b"x"), lambda: ctx.watch_peers(), lambda: ctx.signing_seed()):
        with pytest.raises(PermissionError, match="was not granted"):
            call()
