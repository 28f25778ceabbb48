#!/usr/bin/env python3
"""{{name}}: a plugwire plugin.

- {{name}}.ping answers the sender with "pong:" + body, as an effect that
  rides on the payload's ack (the host performs it exactly once).
{{#stateful}}
- {{name}}.hit counts hits per peer; a forgotten peer's count is wiped.
- The counts are snapshotted as JSON (id {{name}}.counts, version 1), so they
  survive restarts and crashes: the host restores the latest snapshot and
  replays the payloads after it.
{{/stateful}}

A host runs it as `.venv/bin/python plugin.py` (see plugwire.yaml).
"""
{{#stateful}}

import json
{{/stateful}}

import plugwire
{{#stateful}}

SNAPSHOT_VERSION = 1
{{/stateful}}


class {{pascal}}(plugwire.Plugin):
    name = "{{name}}"
    payload_kinds = ({{#stateful}}"{{name}}.hit", {{/stateful}}"{{name}}.ping",)
{{#stateful}}
    stateful = plugwire.Stateful(id="{{name}}.counts", versions=(SNAPSHOT_VERSION,))

    # plugwire never runs handle_payload, on_peer_forgotten, snapshot or
    # restore at the same time as another, so the counts need no lock.
    def __init__(self) -> None:
        self.counts: dict = {}
{{/stateful}}

    def start(self, ctx: plugwire.Context) -> None:
        ctx.log.info("{{name}} started")

    def handle_payload(self, ctx: plugwire.HandlerContext, src: bytes, kind: str, body: bytes) -> None:
{{#stateful}}
        if kind == "{{name}}.hit":
            peer = src.hex()
            self.counts[peer] = self.counts.get(peer, 0) + 1
            return
{{/stateful}}
        ctx.send_direct(src, b"pong:" + body)

    def on_peer_forgotten(self, ctx: plugwire.HandlerContext, peer: bytes) -> None:
{{#stateful}}
        if self.counts.pop(peer.hex(), None) is not None:
            ctx.log.info("wiped a forgotten peer's count", peer=peer.hex())
{{/stateful}}
{{^stateful}}
        # Drop whatever this plugin keeps about the peer.
        ctx.log.info("peer forgotten", peer=peer.hex())
{{/stateful}}
{{#stateful}}

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
        # Replace the state only once the bytes checked out.
        self.counts = counts
{{/stateful}}

    def shutdown(self, ctx: plugwire.Context) -> None:
        ctx.log.info("{{name}} stopping")


if __name__ == "__main__":
    plugwire.serve({{pascal}}())
