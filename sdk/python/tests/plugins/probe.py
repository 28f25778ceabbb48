#!/usr/bin/env python3
"""probe: the stateful test plugin of sdk/python's tests, made with define_plugin.

- probe.hit      counts the sender's hits and keeps every body in order
- probe.get      answers the state, the config and the pid as JSON (an effect)
- probe.ports    calls every host port and answers what they said (an effect)
- probe.fail     raises: the outcome is a handler error, its effect dropped

Snapshots are JSON, in the versions PROBE_SNAPSHOT_VERSIONS lists (default
"2"; the first is written), so a test can relaunch it unable to read what an
earlier launch wrote. The shutdown hook leaves `shutdown-ran` in its data dir.
"""

import json
import os

import plugwire

VERSIONS = tuple(int(v) for v in os.environ.get("PROBE_SNAPSHOT_VERSIONS", "2").split(","))
state = {"counts": {}, "bodies": [], "forgotten": []}
launch = {"config": None, "data_dir": None}


def start(ctx: plugwire.Context) -> None:
    launch["config"] = ctx.config
    launch["data_dir"] = ctx.data_dir
    ctx.log.info("probe started", capabilities=sorted(ctx.capabilities))


def handle_payload(ctx: plugwire.HandlerContext, src: bytes, kind: str, body: bytes) -> None:
    if kind == "probe.hit":
        state["counts"][src.hex()] = state["counts"].get(src.hex(), 0) + 1
        state["bodies"].append(body.decode())
    elif kind == "probe.get":
        answer = {**state, "config": launch["config"], "pid": os.getpid(), "data_dir_is_dir": os.path.isdir(launch["data_dir"] or "")}
        ctx.send_direct(src, json.dumps(answer, sort_keys=True).encode())
    elif kind == "probe.ports":
        x = ctx.lookup_x25519(src)
        answer = {
            "name": ctx.lookup_name(src),
            "x25519": x.hex() if x is not None else None,
            "unknown_name": ctx.lookup_name(bytes(32)),
            "seed_len": len(ctx.signing_seed()),
            "routed_known": ctx.send_routed(src, b"routed"),
            "routed_unknown": ctx.send_routed(bytes(32), b"routed"),
            "seq": ctx.seq,
        }
        ctx.send_direct(src, json.dumps(answer, sort_keys=True).encode())
    elif kind == "probe.fail":
        ctx.send_direct(src, b"dropped")
        raise ValueError("probe failed on purpose")


def on_peer_forgotten(ctx: plugwire.HandlerContext, peer: bytes) -> None:
    state["counts"].pop(peer.hex(), None)
    state["forgotten"].append(peer.hex())


def snapshot():
    return VERSIONS[0], json.dumps(state, sort_keys=True).encode()


def restore(version: int, data: bytes) -> None:
    try:
        restored = json.loads(data)
    except ValueError as e:
        raise plugwire.RestoreFailed(f"not JSON: {e}") from e
    if set(restored) != set(state):
        raise plugwire.RestoreFailed("not a probe state")
    state.clear()
    state.update(restored)


def shutdown(ctx: plugwire.Context) -> None:
    with open(os.path.join(ctx.data_dir, "shutdown-ran"), "w") as f:
        f.write(json.dumps(state, sort_keys=True))


plugin = plugwire.define_plugin(
    "probe",
    ["probe.hit", "probe.get", "probe.ports", "probe.fail"],
    handle_payload,
    on_peer_forgotten=on_peer_forgotten,
    start=start,
    shutdown=shutdown,
    stateful=plugwire.Stateful(id="test.probe", versions=VERSIONS, snapshot=snapshot, restore=restore),
)

if __name__ == "__main__":
    plugwire.serve(plugin)
