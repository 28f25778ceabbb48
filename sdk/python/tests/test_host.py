"""The plugwire package against a real host: payloads, effects, handler
errors, the host ports, snapshots and a kill -9 with an exact restore, a host
restart, an unreadable snapshot version as a reset, the shutdown hook, and
the conformance kit. (The kit on the example counter-py runs in npm test:
check/test/examples.test.ts.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from conftest import A, A_X25519, B, CLI, PLUGINS, needs_host, node, pid_alive, probe, running_host

pytestmark = needs_host


def frame_of(result: dict) -> dict:
    (effect,) = [e for e in result["effects"] if e["type"] == "sendDirect"]
    return json.loads(bytes.fromhex(effect["frame"]))


def test_start_hands_over_the_config_and_a_data_dir(probe_host):
    got = frame_of(probe_host.send("probe.get", A))
    assert got["config"] == {"greeting": "hi", "n": 3}
    assert got["data_dir_is_dir"] is True


def test_payloads_apply_in_order_and_effects_ride_on_the_ack(probe_host):
    before = frame_of(probe_host.send("probe.get", A))
    for body in ("o1", "o2", "o3"):
        assert probe_host.send("probe.hit", B, body)["outcome"] == "acked"
    after = probe_host.send("probe.get", A)
    assert after["outcome"] == "acked"
    assert after["effects"][0]["performed"] is True
    state = frame_of(after)
    assert state["bodies"] == before["bodies"] + ["o1", "o2", "o3"]
    assert state["counts"][B] == before["counts"].get(B, 0) + 3


def test_a_failing_handler_is_reported_and_its_effects_dropped(probe_host):
    r = probe_host.cli("send", "--kind", "probe.fail", "--src", A, "--body", "x", "--json", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert "probe failed on purpose" in json.dumps(result)
    assert result.get("effects", []) == []
    # The plugin lives on: the next payload is handled.
    assert probe_host.send("probe.get", A)["outcome"] == "acked"


def test_the_host_ports_answer_through_the_context(probe_host):
    result = probe_host.send("probe.ports", A)
    got = frame_of(result)
    routed = [e for e in result["effects"] if e["type"] == "sendRouted"]
    assert [(e["dst"], e["routed"]) for e in routed] == [(A, True), ("00" * 32, False)]
    assert got["name"] == "alice"
    assert got["x25519"] == A_X25519
    assert got["unknown_name"] is None
    assert got["seed_len"] == 32
    assert got["routed_known"] is True
    assert got["routed_unknown"] is False
    assert got["seq"] > 0


def test_kill_9_restores_the_state_exactly(probe_host):
    host = probe_host
    host.send("probe.hit", A, "before-snapshot")
    host.cli("snapshot", "probe")
    # Items after the snapshot: replayed onto it after the crash.
    host.send("probe.hit", A, "after-snapshot-1")
    host.send("probe.hit", B, "after-snapshot-2")
    before = frame_of(host.send("probe.get", A))
    old_pid = before["pid"]
    assert host.status("probe")["pid"] == old_pid

    mark = host.mark()
    os.kill(old_pid, signal.SIGKILL)
    restored = host.wait_log(lambda l: l.get("msg") == "snapshot restored" and l.get("plugin") == "probe", after=mark)
    assert restored["version"] == 2
    host.wait_log(lambda l: l.get("plugin") == "probe" and l.get("state") == "ready", after=mark)
    assert not pid_alive(old_pid)

    after = frame_of(host.send("probe.get", A))
    assert after["pid"] != old_pid
    for key in ("counts", "bodies", "forgotten"):
        assert after[key] == before[key], key
    assert after["bodies"][-2:] == ["after-snapshot-1", "after-snapshot-2"]


def test_the_conformance_kit_passes_the_probe_plugin():
    r = subprocess.run(
        [node(), str(CLI), "check", "--json", "--", sys.executable, str(PLUGINS / "probe.py")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    report = json.loads(r.stdout)
    assert report, "an empty report"
    assert "probe" in r.stdout


def test_state_survives_a_host_restart_and_an_unreadable_version_resets_it(tmp_path):
    # A launch that writes version 2.
    with running_host(tmp_path, [probe("2")]) as host:
        host.send("probe.hit", A, "h1")
        host.send("probe.hit", B, "h2")
        host.cli("snapshot", "probe")
        written = frame_of(host.send("probe.get", A))
    # The shutdown hook ran, with the state as it was at the end.
    data_dirs = list((tmp_path / "data").rglob("shutdown-ran"))
    assert len(data_dirs) == 1, data_dirs
    assert json.loads(data_dirs[0].read_text())["bodies"] == ["h1", "h2"]

    # The next host restores it exactly.
    with running_host(tmp_path, [probe("2")]) as host:
        host.wait_log(lambda l: l.get("msg") == "snapshot restored" and l.get("plugin") == "probe")
        restored = frame_of(host.send("probe.get", A))
        assert (restored["counts"], restored["bodies"]) == (written["counts"], written["bodies"])
        host.cli("snapshot", "probe")

    # A plugin that no longer reads version 2: UnsupportedVersion, and the
    # host carries on from the plugin's default state instead of failing it.
    with running_host(tmp_path, [probe("3")]) as host:
        discarded = host.wait_log(lambda l: l.get("plugin") == "probe" and str(l.get("msg", "")).startswith("snapshot discarded"))
        assert "cannot read snapshot version 2 (it reads 3)" in discarded["err"]
        fresh = frame_of(host.send("probe.get", A))
        assert (fresh["counts"], fresh["bodies"]) == ({}, [])
        assert host.status("probe")["state"] == "ready"
