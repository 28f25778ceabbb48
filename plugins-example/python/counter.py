#!/usr/bin/env python3
"""counter-py: an example stateful plugwire plugin in Python.

- counter-py.hit counts hits per peer (by the hex of the sender's node id).
- counter-py.ping answers the sender with "pong:" + body, as an effect that
  rides on the payload's ack.
- A forgotten peer (an item of the Deliver stream, in seq order among the
  payloads) wipes that peer's count.
- The counts are snapshotted as JSON (id example.counter-py, version 1), so
  they survive restarts and crashes of the plugin: after a crash the host
  restores the latest snapshot and replays the items after it, forgets
  included, so the counts end exactly as if no crash had happened.

The host runs it as
    plugins-example/python/.venv/bin/python plugins-example/python/counter.py
(or plugins-example/python/run.sh counter.py) with the control capability.
"""

import json

from plugwire_plugin import (
    HandlerContext,
    Payload,
    Plugin,
    RestoreFailed,
    Snapshot,
    Stateful,
    UnsupportedVersion,
    serve,
)

SNAPSHOT_VERSION = 1


class Counter(Plugin):
    name = "counter-py"
    payload_kinds = ("counter-py.hit", "counter-py.ping")
    stateful = Stateful(id="example.counter-py", versions=(SNAPSHOT_VERSION,))

    # plugwire_plugin never runs handle_payload, peer_forgotten, snapshot or
    # restore at the same time as another, so the counts need no lock.
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def handle_payload(self, payload: Payload, ctx: HandlerContext) -> None:
        if payload.kind == "counter-py.ping":
            ctx.send_direct(payload.src, b"pong:" + payload.body)
            return
        peer = payload.src.hex()
        self.counts[peer] = self.counts.get(peer, 0) + 1

    def peer_forgotten(self, node_id: bytes, ctx: HandlerContext) -> None:
        peer = node_id.hex()
        if self.counts.pop(peer, None) is not None:
            ctx.log.info("wiped a forgotten peer's count", peer=peer)

    def snapshot(self) -> Snapshot:
        data = json.dumps(self.counts, sort_keys=True, separators=(",", ":")).encode()
        return Snapshot(SNAPSHOT_VERSION, data)

    def restore(self, snapshot: Snapshot) -> None:
        if snapshot.version != SNAPSHOT_VERSION:
            raise UnsupportedVersion(snapshot.version, [SNAPSHOT_VERSION])
        try:
            counts = json.loads(snapshot.data)
        except ValueError as e:
            raise RestoreFailed(f"snapshot is not JSON: {e}") from e
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items()
        ):
            raise RestoreFailed("snapshot is not an object of peer -> non-negative count")
        self.counts = counts


if __name__ == "__main__":
    serve(Counter())
