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

It imports the plugwire package (sdk/python), which scripts/setup-polyglot.sh
installs into plugins-example/python/.venv. The host runs it as
    plugins-example/python/.venv/bin/python plugins-example/python/counter.py
(or plugins-example/python/run.sh counter.py) with the control capability.
"""

import json

import plugwire

SNAPSHOT_VERSION = 1


class Counter(plugwire.Plugin):
    name = "counter-py"
    payload_kinds = ("counter-py.hit", "counter-py.ping")
    stateful = plugwire.Stateful(id="example.counter-py", versions=(SNAPSHOT_VERSION,))

    # plugwire never runs handle_payload, on_peer_forgotten, snapshot or
    # restore at the same time as another, so the counts need no lock.
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def handle_payload(self, ctx: plugwire.HandlerContext, src: bytes, kind: str, body: bytes) -> None:
        if kind == "counter-py.ping":
            ctx.send_direct(src, b"pong:" + body)
            return
        peer = src.hex()
        self.counts[peer] = self.counts.get(peer, 0) + 1

    def on_peer_forgotten(self, ctx: plugwire.HandlerContext, peer: bytes) -> None:
        if self.counts.pop(peer.hex(), None) is not None:
            ctx.log.info("wiped a forgotten peer's count", peer=peer.hex())

    def snapshot(self) -> plugwire.Snapshot:
        data = json.dumps(self.counts, sort_keys=True, separators=(",", ":")).encode()
        return plugwire.Snapshot(SNAPSHOT_VERSION, data)

    def restore(self, version: int, data: bytes) -> None:
        # The host refuses versions not in stateful.versions before this runs.
        try:
            counts = json.loads(data)
        except ValueError as e:
            raise plugwire.RestoreFailed(f"snapshot is not JSON: {e}") from e
        if not isinstance(counts, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items()
        ):
            raise plugwire.RestoreFailed("snapshot is not an object of peer -> non-negative count")
        self.counts = counts


if __name__ == "__main__":
    plugwire.serve(Counter())
