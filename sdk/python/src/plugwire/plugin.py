"""What a plugin author writes against: the Plugin base class (or
define_plugin), its contexts with the host's ports, the stateful errors.

The names mirror the TypeScript SDK's definePlugin (sdk/src/plugin.ts) in
Python's idiom: handle_payload, on_peer_forgotten, start, shutdown, and for a
stateful plugin an id, the snapshot versions it reads, snapshot() and restore().
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import grpc

from ._gen.plugwire.v1 import host_pb2, host_pb2_grpc, plugin_pb2, types_pb2
from ._protocol import AUTH_METADATA_KEY, MESSAGE_LIMITS

__all__ = [
    "Capability",
    "Context",
    "HandlerContext",
    "HostCallError",
    "Logger",
    "PeerEvent",
    "PeerForgotten",
    "PeerSeen",
    "PeerWatch",
    "Plugin",
    "RestoreFailed",
    "Snapshot",
    "SnapshotFailed",
    "Stateful",
    "UnsupportedVersion",
    "define_plugin",
]

#: The capabilities a host may grant: "peers", "control", "identity".
Capability = str


class Snapshot(NamedTuple):
    """What snapshot() returns: the format version and the bytes. A plain
    ``(version, data)`` tuple works as well."""

    version: int
    data: bytes


@dataclass(frozen=True)
class Stateful:
    """The stateful surface of a plugin: the id the host keys its snapshots by
    and the format versions restore() reads (the first is the one snapshot()
    writes). With define_plugin, the snapshot and restore functions go here
    too; a Plugin subclass overrides the methods instead."""

    id: str
    versions: Sequence[int] = (1,)
    snapshot: Optional[Callable[[], Union[Snapshot, Tuple[int, bytes]]]] = None
    restore: Optional[Callable[[int, bytes], None]] = None


@dataclass(frozen=True)
class PeerSeen:
    node_id: bytes
    x25519_pub: bytes
    name: str
    source: str  # "direct", "routed" or "unspecified"


@dataclass(frozen=True)
class PeerForgotten:
    node_id: bytes


PeerEvent = Union[PeerSeen, PeerForgotten]


# --------------------------------------------------------------------------
# Errors: the seeds' stateful error kinds, and host call failures
# --------------------------------------------------------------------------


class SnapshotFailed(Exception):
    """The state could not be serialized. The host keeps its last snapshot."""


class RestoreFailed(Exception):
    """The snapshot bytes are corrupt or break an invariant."""


class UnsupportedVersion(Exception):
    """The snapshot is in a format version the plugin does not read. The host
    discards it and the plugin keeps its default state (a reset, not a crash)."""

    def __init__(self, version: int, expected: Sequence[int]):
        self.version = version
        self.expected = list(expected)
        super().__init__(f"cannot read snapshot version {version} (it reads {_versions(self.expected)})")


class HostCallError(Exception):
    """A HostService call failed; `code` is the grpc.StatusCode
    (PERMISSION_DENIED when the capability was not granted)."""

    def __init__(self, method: str, code: grpc.StatusCode, details: str):
        self.method = method
        self.code = code
        self.details = details
        super().__init__(f"host refused {method}: {code.name}: {details}")


def _versions(versions: Sequence[int]) -> str:
    return ", ".join(str(v) for v in versions) or "none"


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------


class Logger:
    """One JSON object per line on stderr: level, msg, time in ms, fields.
    The host collects a plugin's stderr into its own log."""

    def __init__(self, stream=None):
        self._stream = stream or sys.stderr
        self._lock = threading.Lock()

    def _emit(self, level: str, msg: str, fields: dict) -> None:
        record = {"level": level, "time": int(time.time() * 1000), "msg": msg, **fields}
        line = json.dumps(record, default=_json_default, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # the host is gone; nothing left to tell

    def debug(self, msg: str, **fields) -> None:
        self._emit("debug", msg, fields)

    def info(self, msg: str, **fields) -> None:
        self._emit("info", msg, fields)

    def warn(self, msg: str, **fields) -> None:
        self._emit("warn", msg, fields)

    def error(self, msg: str, **fields) -> None:
        self._emit("error", msg, fields)


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


# --------------------------------------------------------------------------
# The host's ports (HostService)
# --------------------------------------------------------------------------


class HostClient:
    """Client of the host's HostService. Every call carries the auth token.
    Plugins use it through their Context; it is public for tools and tests."""

    def __init__(
        self,
        address: str,
        token: Union[str, Callable[[], str]],
        *,
        credentials: Optional[grpc.ChannelCredentials] = None,
        options: Sequence[Tuple[str, object]] = (),
    ):
        """`token` may be a function: in attach mode the token is the one the
        host sends with Start, known only then (docs/protocol.md §18).
        `credentials` (TLS, attach mode) and `options` (its TLS name) go to the channel."""
        channel_options = [*MESSAGE_LIMITS, *options]
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=channel_options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=channel_options)
        self._stub = host_pb2_grpc.HostServiceStub(self._channel)
        self._token = token

    @property
    def _metadata(self) -> "tuple[tuple[str, str], ...]":
        token = self._token() if callable(self._token) else self._token
        return ((AUTH_METADATA_KEY, f"Bearer {token}"),)

    def _call(self, method: str, request):
        try:
            return getattr(self._stub, method)(request, metadata=self._metadata)
        except grpc.RpcError as e:
            raise HostCallError(method, e.code(), e.details() or "") from e

    def lookup_x25519(self, node_id: bytes) -> Optional[bytes]:
        r = self._call("LookupX25519", host_pb2.LookupX25519Request(node_id=bytes(node_id)))
        return r.x25519_pub if r.HasField("x25519_pub") else None

    def lookup_name(self, node_id: bytes) -> Optional[str]:
        r = self._call("LookupName", host_pb2.LookupNameRequest(node_id=bytes(node_id)))
        return r.name if r.HasField("name") else None

    def watch_peers(self) -> "PeerWatch":
        call = self._stub.WatchPeers(host_pb2.WatchPeersRequest(), metadata=self._metadata)
        return PeerWatch(call)

    def send_direct(self, peer: bytes, frame: bytes) -> None:
        self._call("SendDirect", host_pb2.SendDirectRequest(send=plugin_pb2.SendDirect(peer=bytes(peer), frame=bytes(frame))))

    def send_routed(self, dst: bytes, frame: bytes, origin: Optional[Tuple[int, int]] = None) -> bool:
        request = host_pb2.SendRoutedRequest(dst=bytes(dst), frame=bytes(frame))
        if origin is not None:
            request.origin.seq, request.origin.index = origin
        return self._call("SendRouted", request).routed

    def signing_seed(self) -> bytes:
        return self._call("GetSigningSeed", host_pb2.GetSigningSeedRequest()).seed

    def close(self) -> None:
        self._channel.close()


class PeerWatch:
    """An iterator of PeerSeen / PeerForgotten events from WatchPeers; also a
    context manager. cancel() (or leaving the `with` block) ends it."""

    _SOURCES = {
        types_pb2.PEER_SOURCE_DIRECT: "direct",
        types_pb2.PEER_SOURCE_ROUTED: "routed",
    }

    def __init__(self, call):
        self._call = call
        self._cancelled = False

    def __iter__(self) -> Iterator[PeerEvent]:
        try:
            for response in self._call:
                which = response.event.WhichOneof("event")
                if which == "seen":
                    s = response.event.seen
                    yield PeerSeen(s.node_id, s.x25519_pub, s.name, self._SOURCES.get(s.source, "unspecified"))
                elif which == "forgotten":
                    yield PeerForgotten(response.event.forgotten.node_id)
        except grpc.RpcError as e:
            if self._cancelled and e.code() == grpc.StatusCode.CANCELLED:
                return
            raise HostCallError("WatchPeers", e.code(), e.details() or "") from e

    def cancel(self) -> None:
        self._cancelled = True
        self._call.cancel()

    def __enter__(self) -> "PeerWatch":
        return self

    def __exit__(self, *_exc) -> None:
        self.cancel()


# --------------------------------------------------------------------------
# Contexts
# --------------------------------------------------------------------------


class Context:
    """What a plugin is handed at start, shutdown and in every handler: its
    launch (name, instance_id, data_dir, config, capabilities), a logger,
    `stopping` (set once shutdown begins; background threads stop on it) and
    the host's ports. A port whose capability was not granted raises
    PermissionError before any call: lookups and watch_peers need "peers",
    sends need "control", signing_seed needs "identity"."""

    def __init__(self, name: str, instance_id: str, host: Optional[HostClient], log: Logger, stopping: threading.Event):
        self.name = name
        self.instance_id = instance_id
        self.data_dir = ""
        self.config: dict = {}
        self.capabilities: frozenset[str] = frozenset()
        self.host = host
        self.log = log
        self.stopping = stopping

    def require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise PermissionError(
                f"plugin '{self.name}' was not granted the '{capability}' capability; "
                "add it to the plugin's capabilities in the host config"
            )

    def _host(self) -> HostClient:
        if self.host is None:
            raise RuntimeError(f"plugin '{self.name}' has no host connection")
        return self.host

    # Peers (capability "peers").
    def lookup_x25519(self, peer: bytes) -> Optional[bytes]:
        """The peer's X25519 public key, or None when the host does not know it."""
        self.require("peers")
        return self._host().lookup_x25519(peer)

    def lookup_name(self, peer: bytes) -> Optional[str]:
        """The peer's latest friendly name, or None when unknown."""
        self.require("peers")
        return self._host().lookup_name(peer)

    def watch_peers(self) -> PeerWatch:
        """Every peer event published from now on. Iterate it (on a thread of
        your own: it blocks); cancel() or a `with` block ends it."""
        self.require("peers")
        return self._host().watch_peers()

    # Control (capability "control").
    def send_direct(self, peer: bytes, frame: bytes) -> None:
        """Best-effort send to a directly connected peer, now. Inside a
        handler, HandlerContext.send_direct rides on the item's ack instead."""
        self.require("control")
        self._host().send_direct(peer, frame)

    def send_routed(self, dst: bytes, frame: bytes) -> bool:
        """Sends through the routing table; True when a route existed."""
        self.require("control")
        return self._host().send_routed(dst, frame)

    # Identity (capability "identity").
    def signing_seed(self) -> bytes:
        """The raw 32-byte Ed25519 signing seed."""
        self.require("identity")
        return self._host().signing_seed()


class HandlerContext(Context):
    """The context of one handler run (handle_payload or on_peer_forgotten):
    `seq` is the item's seq, `redelivered` whether the host delivered it
    before (to an earlier launch that never acked it, or as a replay after a
    restore)."""

    def __init__(self, base: Context, seq: int, redelivered: bool = False):
        self.__dict__.update(base.__dict__)
        self.seq = seq
        self.redelivered = redelivered
        self._effects: list = []
        self._routed_index = 0

    def send_direct(self, peer: bytes, frame: bytes) -> None:
        """An effect: the host sends frame to the peer when it receives this
        item's ack, exactly once even if the item is redelivered or replayed.
        A handler that raises has its effects dropped."""
        self.require("control")
        self._effects.append(plugin_pb2.Effect(send_direct=plugin_pb2.SendDirect(peer=bytes(peer), frame=bytes(frame))))

    def send_routed(self, dst: bytes, frame: bytes) -> bool:
        """Sends through the routing table now and answers whether a route
        existed. The call names this item (seq, index), so the host does not
        send it twice when the item is replayed."""
        self.require("control")
        origin = (self.seq, self._routed_index)
        self._routed_index += 1
        return self._host().send_routed(dst, frame, origin=origin)


# --------------------------------------------------------------------------
# The plugin
# --------------------------------------------------------------------------


class Plugin:
    """Base class of a plugin. Set `name` and `payload_kinds`, override
    `handle_payload`; the other hooks are optional. A stateful plugin sets
    `stateful = Stateful(id=..., versions=(...))` and overrides `snapshot`
    and `restore`.

    Handlers run one item at a time in seq order on one worker thread;
    snapshot and restore run between items, never during one, so the
    plugin's state needs no lock of its own for them."""

    name: str = ""
    payload_kinds: Sequence[str] = ()
    stateful: Optional[Stateful] = None

    def start(self, ctx: Context) -> None:
        """Runs once the host has handed over the context, before any item."""

    def handle_payload(self, ctx: HandlerContext, src: bytes, kind: str, body: bytes) -> None:
        """Handles one payload. An exception is reported in the item's ack:
        the payload is not retried and its effects are dropped."""
        raise NotImplementedError(f"plugin '{self.name}' does not implement handle_payload")

    def on_peer_forgotten(self, ctx: HandlerContext, peer: bytes) -> None:
        """The daemon forgot this peer: drop any state kept about it. Runs in
        seq order among the payloads and is replayed after a restore like
        them, so state restored from an older snapshot forgets it again."""

    def snapshot(self) -> Union[Snapshot, Tuple[int, bytes]]:
        """Serializes the state as (version, bytes). Raise SnapshotFailed if impossible."""
        if self.stateful is not None and self.stateful.snapshot is not None:
            return self.stateful.snapshot()
        raise SnapshotFailed("snapshot() is not implemented")

    def restore(self, version: int, data: bytes) -> None:
        """Replaces the state. Versions not in stateful.versions are refused
        with UnsupportedVersion before this runs; raise UnsupportedVersion
        yourself (leaving the state untouched) for one you cannot read after
        all, RestoreFailed for bad bytes."""
        if self.stateful is not None and self.stateful.restore is not None:
            return self.stateful.restore(version, data)
        raise RestoreFailed("restore() is not implemented")

    def shutdown(self, ctx: Context) -> None:
        """Best-effort cleanup before the process exits; keep it short."""


class _DefinedPlugin(Plugin):
    def __init__(self, name, payload_kinds, handle_payload, on_peer_forgotten, start, shutdown, stateful):
        self.name = name
        self.payload_kinds = tuple(payload_kinds)
        self.stateful = stateful
        self._handle = handle_payload
        self._forgotten = on_peer_forgotten
        self._start = start
        self._shutdown = shutdown

    def start(self, ctx):
        if self._start is not None:
            self._start(ctx)

    def handle_payload(self, ctx, src, kind, body):
        self._handle(ctx, src, kind, body)

    def on_peer_forgotten(self, ctx, peer):
        if self._forgotten is not None:
            self._forgotten(ctx, peer)

    def shutdown(self, ctx):
        if self._shutdown is not None:
            self._shutdown(ctx)


def define_plugin(
    name: str,
    payload_kinds: Sequence[str],
    handle_payload: Callable[[HandlerContext, bytes, str, bytes], None],
    *,
    on_peer_forgotten: Optional[Callable[[HandlerContext, bytes], None]] = None,
    start: Optional[Callable[[Context], None]] = None,
    shutdown: Optional[Callable[[Context], None]] = None,
    stateful: Optional[Stateful] = None,
) -> Plugin:
    """A plugin from functions, like the TypeScript SDK's definePlugin. A
    stateful plugin passes Stateful(id, versions, snapshot=fn, restore=fn).
    Raises ValueError for a definition the host would refuse."""
    if isinstance(payload_kinds, (str, bytes)):
        raise ValueError(f"plugin '{name}': payload_kinds must be a sequence of strings, not one string")
    if stateful is not None and (stateful.snapshot is None or stateful.restore is None):
        raise ValueError(f"plugin '{name}': a stateful plugin made by define_plugin needs Stateful(snapshot=..., restore=...)")
    plugin = _DefinedPlugin(name, payload_kinds, handle_payload, on_peer_forgotten, start, shutdown, stateful)
    validate(plugin)
    return plugin


_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(r"[\x21-\x7e]{1,128}")


def describe_problems(plugin: Plugin) -> list:
    """What the host would refuse in this plugin's Describe (docs/protocol.md §13)."""
    problems = []
    name = plugin.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        problems.append(f"the name {name!r} must be 1-64 characters of [A-Za-z0-9._-]")
    kinds = plugin.payload_kinds
    if isinstance(kinds, str) or not all(isinstance(k, str) for k in kinds):
        problems.append("payload_kinds must be a sequence of strings")
    else:
        if not kinds:
            problems.append("it claims no payload kinds")
        if len(kinds) > 1024:
            problems.append(f"it claims {len(kinds)} payload kinds, over 1024")
        bad = [k for k in kinds if not _TOKEN.fullmatch(k)]
        if bad:
            problems.append(f"payload kind {bad[0]!r} is not 1-128 printable ASCII characters without spaces")
        if len(set(kinds)) != len(kinds):
            problems.append("payload_kinds has duplicates")
    s = plugin.stateful
    if s is not None:
        if not isinstance(s.id, str) or not _TOKEN.fullmatch(s.id):
            problems.append(f"the stateful id {s.id!r} is not 1-128 printable ASCII characters without spaces")
        versions = list(s.versions)
        if not 1 <= len(versions) <= 64 or len(set(versions)) != len(versions) or not all(
            type(v) is int and 0 <= v <= 0xFFFFFFFF for v in versions
        ):
            problems.append("stateful versions must be 1 to 64 distinct integers 0..4294967295")
    return problems


def validate(plugin: Plugin) -> None:
    """Raises ValueError naming every problem describe_problems finds."""
    problems = describe_problems(plugin)
    if problems:
        raise ValueError(f"plugin '{plugin.name}' would be refused by the host: {'; '.join(problems)} (docs/protocol.md §13)")
