"""A real plugwire host for the tests: `plugwire run --config <tmp yaml>`
(host/dist/src/cli/main.js, built by `npm run build`), driven by the
`plugwire` CLI (send, snapshot, status) as an operator would."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "host" / "dist" / "src" / "cli" / "main.js"
PLUGINS = Path(__file__).resolve().parent / "plugins"

A = "a1" * 32  # a peer the host's directory knows (see the config below)
B = "b2" * 32  # a peer it does not
A_X25519 = "c3" * 32


def node() -> Optional[str]:
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, "node")
        if os.access(p, os.X_OK):
            return p
    return None


_MISSING = node() is None or not CLI.exists()
_WHY = f"needs node and a built host ({CLI}: run `npm run build`)"
if _MISSING and os.environ.get("CI"):
    raise RuntimeError(f"sdk/python's host tests {_WHY}; in CI they must not be skipped")
needs_host = pytest.mark.skipif(_MISSING, reason=_WHY)


class Host:
    """One `plugwire run` process; its JSON log lines are collected as they come."""

    def __init__(self, workdir: Path, plugins: list[dict]):
        self.workdir = workdir
        self.config = workdir / "plugwire.yaml"
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(
            json.dumps(
                {
                    "dataDir": str(workdir / "data"),
                    "snapshotIntervalMs": 0,
                    "peers": [{"nodeId": A, "name": "alice", "x25519": A_X25519}],
                    "plugins": plugins,
                }
            )
        )
        self.lines: list[dict] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [node(), str(CLI), "run", "--config", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"msg": raw.decode(errors="replace").rstrip()}
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append({"msg": "<host stdout closed>"})
            self._cond.notify_all()

    def wait_log(self, match: Callable[[dict], bool], after: int = 0, timeout_s: float = 30.0) -> dict:
        """The first log line from index `after` on that matches; fails after timeout_s."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(json.dumps(l) for l in self.lines[-20:])
                    raise AssertionError(f"no matching host log line within {timeout_s} s; last lines:\n{tail}")
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(
            [node(), str(CLI), *args, "-c", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"plugwire {' '.join(args)} exited {r.returncode}: {r.stdout}{r.stderr}")
        return r

    def send(self, kind: str, src: str, body: str = "", check: bool = True) -> dict:
        r = self.cli("send", "--kind", kind, "--src", src, "--body", body, "--json", check=check)
        return json.loads(r.stdout)

    def status(self, name: str) -> dict:
        for p in json.loads(self.cli("status", "--json").stdout):
            if p["name"] == name:
                return p
        raise AssertionError(f"no plugin {name} in status")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
                raise AssertionError("the host did not stop within 30 s of SIGTERM")
        return self.proc.returncode


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive; the host reaps its children.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def probe(snapshot_versions: str = "2") -> dict:
    """The probe plugin's entry in a host config, with every capability and a config."""
    return {
        "name": "probe",
        "command": sys.executable,
        "args": [str(PLUGINS / "probe.py")],
        "capabilities": ["peers", "control", "identity"],
        "config": {"greeting": "hi", "n": 3},
        "env": {"PROBE_SNAPSHOT_VERSIONS": snapshot_versions},
    }


@contextlib.contextmanager
def running_host(workdir: Path, plugins: list[dict]):
    """A started host (its log said "plugwire host ready"); on exit it is
    stopped with SIGTERM, must exit 0, and must leave no plugin process behind."""
    host = Host(workdir, plugins)
    ok = False
    try:
        host.wait_log(lambda l: l.get("msg") == "plugwire host ready")
        yield host
        ok = True
    finally:
        pids = [p for p in (_last_pid(host, plugins[0]["name"]),) if p] if host.proc.poll() is None else []
        code = host.stop()
        if ok:
            assert code == 0, f"the host exited {code} on SIGTERM"
            for pid in pids:
                assert not pid_alive(pid), f"plugin process {pid} outlived its host"


@pytest.fixture(scope="module")
def probe_host(tmp_path_factory):
    """A host running the probe plugin, shared by a module's tests."""
    with running_host(tmp_path_factory.mktemp("host"), [probe()]) as host:
        yield host


def _last_pid(host: Host, name: str) -> Optional[int]:
    try:
        return host.status(name).get("pid")
    except Exception:
        return None
