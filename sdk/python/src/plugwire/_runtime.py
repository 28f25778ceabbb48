"""The protocol chores of a plugwire plugin: what serve() does.

As docs/protocol.md specifies: the magic cookie, version negotiation, the
token line on stdin, the unix socket and the handshake line, the auth token
on every call (health checks included), grpc.health.v1, the items of the
Deliver stream (payloads and forgotten peers) applied one at a time in seq
order with cumulative acks and per-item outcomes, chunked snapshots and
restores with typed errors, and exiting on Shutdown, SIGTERM or stdin EOF.

Handlers (handle_payload and on_peer_forgotten) run on a worker thread, one
item at a time. Snapshot and restore run between items, never during one.
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import re
import signal
import select
import stat
import sys
import threading
import time
import traceback
from concurrent import futures
from typing import Callable, Optional

import grpc

# The grpc.health.v1 modules are generated with --proto_path=proto/grpc
# (docs/protocol.md §16): generated into a grpc/ package, they would be
# hidden by grpcio's own `grpc` package.
from . import _attach
from ._gen.health.v1 import health_pb2, health_pb2_grpc
from ._gen.plugwire.v1 import plugin_pb2, plugin_pb2_grpc, types_pb2
from ._protocol import *  # noqa: F403
from ._protocol import MESSAGE_LIMITS as _MESSAGE_LIMITS
from .plugin import (
    Context,
    HandlerContext,
    HostClient,
    Logger,
    Plugin,
    RestoreFailed,
    SnapshotFailed,
    UnsupportedVersion,
    _versions,
    validate,
)


# While a batch of items is being applied, an ack goes out after this many
# items or this many seconds, whichever comes first; and always once the
# batch is drained.
_MAX_UNACKED = 512
_ACK_INTERVAL_S = 0.020
# How long the shutdown hook may run on stdin EOF or SIGTERM, and when the
# host's Shutdown deadline is 0, in seconds.
_EXIT_GRACE_S = 0.5
# How long in-flight calls may finish once the plugin decided to exit.
_STOP_GRACE_S = 0.2

_CAPABILITY_NAMES = {
    types_pb2.CAPABILITY_PEERS: "peers",
    types_pb2.CAPABILITY_CONTROL: "control",
    types_pb2.CAPABILITY_IDENTITY: "identity",
}


def _fatal(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
    os._exit(1)


def _require_env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        _fatal(f"plugwire plugin: the host did not set {name}; this plugin must be started by a plugwire host.")
    return value


class LaunchTokenError(Exception):
    """The token is not where PLUGWIRE_AUTH_TOKEN_SOURCE says; the message never holds the token."""


_TOKEN_VALUE = re.compile(rb"[\x21-\x7e]+")


def read_launch_token(environ=None, fd: int = 0, timeout_s: float = TOKEN_LINE_TIMEOUT_S) -> str:
    """This launch's auth token (docs/protocol.md §6): with
    PLUGWIRE_AUTH_TOKEN_SOURCE=stdin the first line of `fd`,
    "PLUGWIRE_TOKEN <token>", read byte by byte so nothing after it is taken;
    with "env" or unset, PLUGWIRE_AUTH_TOKEN (the legacy way, which any process
    of the same user can read in /proc/<pid>/environ). Raises LaunchTokenError."""
    environ = os.environ if environ is None else environ
    source = environ.get(ENV_AUTH_TOKEN_SOURCE, "")
    if source in ("", "env"):
        token = environ.get(ENV_AUTH_TOKEN, "")
        if not token:
            raise LaunchTokenError(
                f"the host did not set {ENV_AUTH_TOKEN} (and {ENV_AUTH_TOKEN_SOURCE} is not 'stdin'); "
                "this plugin must be started by a plugwire host"
            )
        return token
    if source != "stdin":
        raise LaunchTokenError(
            f"{ENV_AUTH_TOKEN_SOURCE}={json.dumps(source)} is neither 'stdin' nor 'env'; "
            "the host that started this plugin is broken or newer than this plugin"
        )
    how = f"the host writes '{TOKEN_LINE_PREFIX} <token>' there ({ENV_AUTH_TOKEN_SOURCE}=stdin)"
    deadline = time.monotonic() + timeout_s
    line = b""
    while True:
        remaining = deadline - time.monotonic()
        ready = select.select([fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
        if not ready:
            raise LaunchTokenError(
                f"no '{TOKEN_LINE_PREFIX} <token>' line arrived on stdin within {int(timeout_s * 1000)} ms "
                f"({ENV_AUTH_TOKEN_SOURCE}=stdin); the host writes it right after it starts the plugin, "
                "so whatever started this one is not a plugwire host (or is broken)"
            )
        try:
            byte = os.read(fd, 1)
        except OSError as e:
            raise LaunchTokenError(f"reading the token line on stdin failed: {e}") from None
        if not byte:
            raise LaunchTokenError(
                f"stdin closed before the host wrote the '{TOKEN_LINE_PREFIX} <token>' line "
                f"({ENV_AUTH_TOKEN_SOURCE}=stdin); this plugin must be started by a plugwire host"
            )
        if byte == b"\n":
            break
        line += byte
        if len(line) >= MAX_TOKEN_LINE_BYTES:
            raise LaunchTokenError(f"the first line on stdin is over {MAX_TOKEN_LINE_BYTES} bytes; {how}")
    prefix = TOKEN_LINE_PREFIX.encode() + b" "
    if not line.startswith(prefix):
        raise LaunchTokenError(f"the first line on stdin ({len(line)} bytes) does not start with '{prefix.decode()}'; {how}")
    token = line[len(prefix):]
    if not _TOKEN_VALUE.fullmatch(token):
        raise LaunchTokenError(f"the token on the first line of stdin is empty or holds a space or a control character; {how}")
    return token.decode("ascii")


_VERSION_ENTRY = re.compile(r"[ \t]*([0-9]+)[ \t]*")


def _handshake_line(version: int, socket_path: str) -> str:
    """The line printed once the socket listens (docs/protocol.md §5), with its LF."""
    return f"{HANDSHAKE_PREFIX} protocol={version} network=unix address={socket_path} transport=grpc\n"


def _parse_versions(offered: str) -> Optional[list[int]]:
    """PLUGWIRE_PROTOCOL_VERSIONS, strictly (docs/protocol.md §3): decimal
    numbers 0..4294967295 separated by commas, spaces or tabs around each.
    None for anything else (an empty entry, a sign, a letter...)."""
    versions = []
    for entry in offered.split(","):
        m = _VERSION_ENTRY.fullmatch(entry)
        if m is None or not m.group(1).isascii():
            return None
        version = int(m.group(1))
        if version > 0xFFFFFFFF:
            return None
        versions.append(version)
    return versions


def _pick_version(plugin: str, offered: str) -> int:
    host = _parse_versions(offered)
    if host is None:
        _fatal(
            f"plugwire plugin '{plugin}': {ENV_PROTOCOL_VERSIONS}={json.dumps(offered)} is malformed; it must be decimal "
            'versions separated by commas, such as "1" or "1,2". The host that started this plugin is broken.'
        )
    shared = set(host) & set(SUPPORTED_VERSIONS)
    if not shared:
        _fatal(
            f"plugwire plugin '{plugin}': the host accepts protocol versions {_versions(host)}, but this plugin "
            f"speaks version {_versions(SUPPORTED_VERSIONS)}. Upgrade the plugin or the host so they share a version."
        )
    return max(shared)


def _abort_typed(context: grpc.ServicerContext, plugin: str, error: BaseException, fallback: str) -> None:
    """Ends the call with a typed stateful error: status + plugwire-error-bin.
    fallback ("snapshot" or "restore") says what a plain exception becomes."""
    detail = types_pb2.ErrorDetail(plugin=plugin)
    if isinstance(error, UnsupportedVersion):
        code = grpc.StatusCode.FAILED_PRECONDITION
        message = f"plugin '{plugin}' {error}"
        detail.unsupported_version.version = error.version
        detail.unsupported_version.expected.extend(error.expected)
    elif isinstance(error, SnapshotFailed) or (fallback == "snapshot" and not isinstance(error, RestoreFailed)):
        code = grpc.StatusCode.INTERNAL
        message = f"plugin '{plugin}' failed to snapshot its state: {error}"
        detail.snapshot_failed.details = str(error)
    else:
        code = grpc.StatusCode.INVALID_ARGUMENT
        message = f"plugin '{plugin}' failed to restore its state: {error}"
        detail.restore_failed.details = str(error)
    context.set_trailing_metadata(((ERROR_DETAIL_TRAILER, detail.SerializeToString()),))
    context.abort(code, message)


def _snapshot_of(plugin: Plugin) -> "tuple[int, bytes]":
    """Calls plugin.snapshot() and checks what it returned: (version, bytes)."""
    result = plugin.snapshot()
    try:
        version, data = result
    except (TypeError, ValueError):
        raise SnapshotFailed(f"snapshot() returned {type(result).__name__}, not (version, bytes)") from None
    if type(version) is not int or not 0 <= version <= 0xFFFFFFFF:
        raise SnapshotFailed(f"snapshot() returned version {version!r}, not an integer 0..4294967295")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotFailed(f"snapshot() returned data of type {type(data).__name__}, not bytes")
    return version, bytes(data)


class _AckStream:
    """One Deliver stream, as the plugin acks on it: acks wait in `out` for
    the stream's response generator; None ends the stream."""

    def __init__(self):
        self.out: "queue.SimpleQueue[Optional[plugin_pb2.DeliverResponse]]" = queue.SimpleQueue()
        # Highest seq received on this stream: an ack on it never covers more.
        self.high = 0
        # acked_through of the last ack on it: acks on it never go down.
        self.acked = 0


class _Delivery:
    """Applies the items of the Deliver stream (payloads and forgotten peers)
    one at a time in seq order and acks them cumulatively on the newest
    stream (docs/protocol.md §8). Its lock also keeps snapshot and restore
    between items.

    An ack goes out after an item when _MAX_UNACKED items were handled since
    the last ack, or _ACK_INTERVAL_S passed since it, and when a Deliver
    message is drained (which also covers items skipped as already applied).
    An ack on a stream covers at most the highest seq that stream carried.
    Redelivered items need nothing special: after a crash the host sends them
    one at a time, each once the one before it is acked."""

    def __init__(self, plugin: Plugin, context: Callable[[], Context], clock: Callable[[], float] = time.monotonic):
        self._plugin = plugin
        self._context = context
        self._clock = clock
        self.lock = threading.RLock()
        # Seq of the last item applied, or of the restored snapshot.
        self.applied_seq = 0
        self._stream: Optional[_AckStream] = None
        self._streams: set[_AckStream] = set()
        self._outcomes: list[plugin_pb2.ItemOutcome] = []
        self._unacked = 0
        self._last_ack = clock()
        self._stopped = False

    def open_stream(self) -> _AckStream:
        """A new Deliver stream: later acks go to it only, none before an item
        arrives on it. Outcomes not yet sent went with the old stream: the host
        redelivers those items, and this process skips them as duplicates."""
        stream = _AckStream()
        with self.lock:
            self._stream = stream
            self._streams.add(stream)
            self._outcomes = []
            self._last_ack = self._clock()
        return stream

    def close_stream(self, stream: _AckStream) -> None:
        with self.lock:
            self._streams.discard(stream)
            if self._stream is stream:
                self._stream = None

    def end_streams(self) -> None:
        """Ends this side of every Deliver stream (at exit, after the final ack)."""
        with self.lock:
            for stream in self._streams:
                stream.out.put(None)

    def process(self, request: plugin_pb2.DeliverRequest, stream: _AckStream) -> None:
        """Applies one DeliverRequest received on `stream`; its acks go to
        the current stream's queue."""
        if not request.items:
            return
        with self.lock:
            stream.high = max(stream.high, request.items[-1].seq)
        for item in request.items:
            with self.lock:
                if self._stopped:
                    break
                if item.seq <= self.applied_seq:
                    continue  # applied already (by this process, or in a restored snapshot)
                outcome = self._run(item)
                if outcome is not None:
                    self._outcomes.append(outcome)
                self.applied_seq = item.seq
                self._unacked += 1
                if self._unacked >= _MAX_UNACKED or self._clock() - self._last_ack >= _ACK_INTERVAL_S:
                    self.flush_locked()
        with self.lock:
            self.flush_locked()

    def flush_locked(self) -> None:
        """Sends the pending ack on the current stream, if it advances it.
        Called with the lock held: before a snapshot, at the cadence, at the end."""
        stream = self._stream
        if stream is None:
            return
        through = min(self.applied_seq, stream.high)
        if through <= stream.acked:
            return
        sent = [o for o in self._outcomes if o.seq <= through]
        self._outcomes = [o for o in self._outcomes if o.seq > through]
        stream.acked = through
        self._unacked = 0
        self._last_ack = self._clock()
        stream.out.put(plugin_pb2.DeliverResponse(acked_through=through, outcomes=sent))

    def restored(self, applied_seq: int) -> None:
        """After a Restore (lock held): the state includes every item up to
        applied_seq and nothing after it; duplicates are judged from it."""
        self.applied_seq = applied_seq
        self._outcomes = [o for o in self._outcomes if o.seq <= applied_seq]

    def stop(self, timeout_s: float) -> None:
        """Stops taking items (shutdown): waits up to timeout_s for the
        handler running now, then sends the final ack. Items not applied are
        left to the host, which redelivers them to the next launch."""
        self._stopped = True
        if self.lock.acquire(timeout=max(0.0, timeout_s)):
            try:
                self.flush_locked()
            finally:
                self.lock.release()

    def _run(self, item: plugin_pb2.DeliveryItem) -> Optional[plugin_pb2.ItemOutcome]:
        """Runs one item's handler; returns its outcome, or None for a success
        without effects. A failed handler is reported, not retried, and its
        effects are dropped."""
        base = self._context()
        ctx = HandlerContext(base, item.seq, item.redelivered)
        which = item.WhichOneof("item")
        try:
            if which == "payload":
                p = item.payload
                if p.kind not in self._plugin.payload_kinds:
                    raise ValueError(f"plugin '{self._plugin.name}' does not claim payload kind '{p.kind}'")
                self._plugin.handle_payload(ctx, bytes(p.src), p.kind, bytes(p.body))
            elif which == "peer_forgotten":
                self._plugin.on_peer_forgotten(ctx, bytes(item.peer_forgotten.node_id))
            else:
                raise ValueError(
                    f"plugin '{self._plugin.name}' does not understand delivery item seq {item.seq} "
                    "(neither a payload nor a forgotten peer; is the host newer than this plugin?)"
                )
        except Exception as e:
            message = str(e) or type(e).__name__
            if which == "payload":
                base.log.error("payload handler failed", seq=item.seq, kind=item.payload.kind, error=message)
            elif which == "peer_forgotten":
                base.log.error("on_peer_forgotten handler failed", seq=item.seq, peer=item.peer_forgotten.node_id, error=message)
            else:
                base.log.error("unknown delivery item", seq=item.seq, error=message)
            return plugin_pb2.ItemOutcome(seq=item.seq, error=plugin_pb2.HandlerError(message=message))
        if not ctx._effects:
            return None
        return plugin_pb2.ItemOutcome(seq=item.seq, effects=ctx._effects)


class _PluginServicer(plugin_pb2_grpc.PluginServiceServicer):
    def __init__(self, plugin: Plugin, runtime: "_Runtime", version: int = PROTOCOL_VERSION):
        self._plugin = plugin
        self._runtime = runtime
        self._version = version
        self._delivery = _Delivery(plugin, lambda: runtime.context)
        runtime.delivery = self._delivery

    def Describe(self, request, context):
        if request.protocol_version != self._version:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"plugin '{self._plugin.name}' refused Describe: it handshook protocol {self._version}, but Describe asked for "
                f"protocol {request.protocol_version}; the host must send the version of the handshake line",
            )
        response = plugin_pb2.DescribeResponse(
            name=self._plugin.name,
            payload_kinds=list(self._plugin.payload_kinds),
            protocol_version=self._version,
            sdk=plugin_pb2.SdkInfo(language="python", version=SDK_VERSION),
        )
        if self._plugin.stateful is not None:
            response.stateful.id = self._plugin.stateful.id
            response.stateful.snapshot_versions.extend(self._plugin.stateful.versions)
        return response

    def Start(self, request, context):
        try:
            config = json.loads(request.config_json or "{}")
        except ValueError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"plugin '{self._plugin.name}' got config that is not JSON: {e}")
        if not isinstance(config, dict):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"plugin '{self._plugin.name}' got config that is not a JSON object")
        ctx = self._runtime.context
        ctx.data_dir = request.data_dir
        ctx.instance_id = request.instance_id or ctx.instance_id
        ctx.config = config
        ctx.capabilities = frozenset(_CAPABILITY_NAMES[c] for c in request.capabilities if c in _CAPABILITY_NAMES)
        self._hook(context, "Start", lambda: self._plugin.start(ctx))
        return plugin_pb2.StartResponse()

    def Deliver(self, request_iterator, context):
        # A thread reads and applies the items; this generator sends the acks
        # it queues (and those a Snapshot flushes), and ends the stream when
        # the host ends it or the plugin exits.
        stream = self._delivery.open_stream()
        log = self._runtime.context.log

        def read():
            try:
                for request in request_iterator:
                    self._delivery.process(request, stream)
            except grpc.RpcError:
                pass  # the host cancelled the stream, or went away
            except Exception as e:  # a bug of this helper: end the stream, and the host restarts the plugin
                log.error("Deliver failed", error=str(e), traceback=traceback.format_exc())
            finally:
                stream.out.put(None)

        threading.Thread(target=read, name="plugwire-deliver", daemon=True).start()
        try:
            while True:
                response = stream.out.get()
                if response is None:
                    return
                yield response
        finally:
            self._delivery.close_stream(stream)

    def Snapshot(self, request, context):
        plugin = self._plugin
        if plugin.stateful is None:
            _abort_typed(context, plugin.name, SnapshotFailed("this plugin is not stateful (it declares no stateful hooks)"), "snapshot")
        with self._delivery.lock:
            # Ack first: the host stores the snapshot only once it has the acks it covers.
            self._delivery.flush_locked()
            try:
                version, data = _snapshot_of(plugin)
                applied_seq = self._delivery.applied_seq
            except Exception as e:
                _abort_typed(context, plugin.name, e, "snapshot")
        yield plugin_pb2.SnapshotResponse(
            header=plugin_pb2.SnapshotHeader(
                id=plugin.stateful.id, version=version, applied_seq=applied_seq, size_bytes=len(data)
            )
        )
        for offset in range(0, len(data), SNAPSHOT_CHUNK_BYTES):
            yield plugin_pb2.SnapshotResponse(chunk=data[offset : offset + SNAPSHOT_CHUNK_BYTES])

    def Restore(self, request_iterator, context):
        plugin = self._plugin
        header = None
        chunks: list[bytes] = []
        received = 0
        for message in request_iterator:
            part = message.WhichOneof("part")
            if part == "header":
                if header is not None:
                    _abort_typed(context, plugin.name, RestoreFailed("the restore stream carried a second header"), "restore")
                header = message.header
            elif part == "chunk":
                if header is None:
                    _abort_typed(context, plugin.name, RestoreFailed("the restore stream carried a chunk before its header"), "restore")
                chunks.append(message.chunk)
                received += len(message.chunk)
                if received > header.size_bytes:
                    _abort_typed(context, plugin.name, RestoreFailed(
                        f"snapshot is longer than its header says: over {header.size_bytes} bytes"), "restore")
            else:
                _abort_typed(context, plugin.name, RestoreFailed(
                    "the restore stream carried a message with neither header nor chunk"), "restore")
        stateful = plugin.stateful
        if stateful is None:
            _abort_typed(context, plugin.name, RestoreFailed("this plugin is not stateful (it declares no stateful hooks)"), "restore")
        if header is None:
            _abort_typed(context, plugin.name, RestoreFailed("the restore stream carried no header"), "restore")
        if header.id != stateful.id:
            _abort_typed(context, plugin.name, RestoreFailed(f"snapshot id '{header.id}' is not this plugin's id '{stateful.id}'"), "restore")
        if received != header.size_bytes:
            _abort_typed(context, plugin.name, RestoreFailed(
                f"snapshot was truncated: header says {header.size_bytes} bytes, got {received}"), "restore")
        if header.version not in stateful.versions:
            _abort_typed(context, plugin.name, UnsupportedVersion(header.version, stateful.versions), "restore")
        with self._delivery.lock:
            try:
                plugin.restore(header.version, b"".join(chunks))
            except Exception as e:
                _abort_typed(context, plugin.name, e, "restore")
            self._delivery.restored(header.applied_seq)
        return plugin_pb2.RestoreResponse()

    def Shutdown(self, request, context):
        self._runtime.run_shutdown_hook(request.deadline_ms / 1000 if request.deadline_ms else _EXIT_GRACE_S)
        # Reply first; exit() then ends the Deliver streams and lets the reply go out.
        threading.Thread(target=self._runtime.exit, args=(0, _STOP_GRACE_S), daemon=True).start()
        return plugin_pb2.ShutdownResponse()

    def _hook(self, context, method: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as e:
            self._runtime.context.log.error(f"{method} failed", error=str(e), traceback=traceback.format_exc())
            context.abort(grpc.StatusCode.INTERNAL, f"plugin '{self._plugin.name}' failed {method}: {e}")


class _HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1: SERVING until shutdown begins, NOT_SERVING after."""

    SERVICES = ("", "plugwire.v1.PluginService")

    def __init__(self, stopping: threading.Event):
        self._stopping = stopping

    def _status(self):
        if self._stopping.is_set():
            return health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse.SERVING

    def Check(self, request, context):
        if request.service not in self.SERVICES:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self._status())

    def Watch(self, request, context):
        if request.service not in self.SERVICES:
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)
            return
        yield health_pb2.HealthCheckResponse(status=self._status())
        while context.is_active() and not self._stopping.wait(0.5):
            pass
        if context.is_active():
            yield health_pb2.HealthCheckResponse(status=self._status())


class _TokenCheck(grpc.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call without
    `authorization: Bearer <token>`, health checks included."""

    def __init__(self, plugin: str, token: str):
        self._plugin = plugin
        self._want = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        values = [v for k, v in handler_call_details.invocation_metadata or () if k == AUTH_METADATA_KEY]
        if len(values) == 1 and isinstance(values[0], str) and hmac.compare_digest(values[0].encode(), self._want):
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        message = (
            f"plugin '{self._plugin}' refused {method}: the call carried no valid plugwire auth token "
            "(send 'authorization: Bearer <PLUGWIRE_AUTH_TOKEN>')"
        )

        return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, message)


def _refusal(handler, code: grpc.StatusCode, message: str):
    """A handler that refuses the call with `code`, of the same shape as
    `handler`'s method, so streams fail cleanly."""

    def refuse(_request, context):
        context.abort(code, message)

    kwargs = dict(request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **kwargs)
    return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)


def _bearer_token(metadata) -> Optional[str]:
    """The token of exactly one `authorization: Bearer <token>`, else None."""
    values = [v for k, v in metadata or () if k == AUTH_METADATA_KEY]
    if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
        return None
    return values[0][len("Bearer "):]


class _SessionGate(grpc.ServerInterceptor):
    """Attach mode (docs/protocol.md §18): TLS already checked the caller's
    certificate, and no token is required. A process serves one host
    session: once a Start was served, a new Describe or Start (the host
    reconnecting after a lost connection) is refused with UNAVAILABLE and the
    process exits with status 3, so its process manager restarts it with
    fresh memory and the host restores its snapshot and replays into a clean
    state. The bearer token of the first Start is the one host calls carry."""

    _METHODS = ("/plugwire.v1.PluginService/Describe", "/plugwire.v1.PluginService/Start")

    def __init__(self, plugin: str, on_new_session: Callable[[str], None]):
        self._plugin = plugin
        self._on_new_session = on_new_session
        self._lock = threading.Lock()
        self._started = False
        self.token = ""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method not in self._METHODS:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        with self._lock:
            if not self._started:
                if method == "Start":
                    self._started = True
                    self.token = _bearer_token(handler_call_details.invocation_metadata) or ""
                return handler
        self._on_new_session(method)
        return _refusal(
            handler,
            grpc.StatusCode.UNAVAILABLE,
            f"plugin '{self._plugin}' already served a host session in this process; it exits (status "
            f"{_attach.REMOTE_NEW_SESSION_EXIT_CODE}) so that its process manager restarts it with fresh memory, "
            "and the host's next attempt restores its snapshot into a clean state (docs/protocol.md §18)",
        )


class _Runtime:
    """Owns shutdown: the hook runs at most once, health turns NOT_SERVING,
    `stopping` is set, and the process exits."""

    def __init__(self, plugin: Plugin, context: Context, socket_path: str):
        self.plugin = plugin
        self.context = context
        self.socket_path = socket_path
        self.server: Optional[grpc.Server] = None
        self.delivery: Optional[_Delivery] = None
        self._hook_lock = threading.Lock()
        self._hook_ran = False
        self._exit_lock = threading.Lock()

    def run_shutdown_hook(self, deadline_s: float) -> None:
        """The start of every shutdown (Shutdown, SIGTERM, SIGINT, stdin EOF),
        once: Health turns NOT_SERVING, no new item starts, the handler
        running now finishes and the final ack is sent, then the plugin's
        hook runs; all within deadline_s."""
        with self._hook_lock:
            if self._hook_ran:
                return
            self._hook_ran = True
        deadline = time.monotonic() + deadline_s
        self.context.stopping.set()
        if self.delivery is not None:
            self.delivery.stop(deadline_s)
        deadline_s = max(0.0, deadline - time.monotonic())
        errors: list[BaseException] = []

        def hook():
            try:
                self.plugin.shutdown(self.context)
            except Exception as e:
                errors.append(e)

        worker = threading.Thread(target=hook, daemon=True)
        worker.start()
        worker.join(deadline_s)
        if worker.is_alive():
            self.context.log.warn("shutdown hook did not finish in time", deadline_ms=int(deadline_s * 1000))
        elif errors:
            self.context.log.error("shutdown hook failed", error=str(errors[0]))

    def stop(self, reason: str, grace_s: float) -> None:
        """The graceful path for stdin EOF and signals."""
        self.context.log.debug("stopping", reason=reason)
        self.run_shutdown_hook(_EXIT_GRACE_S)
        self.exit(0, grace_s)

    def exit(self, code: int, grace_s: float) -> None:
        """Lets in-flight calls finish for at most grace_s, then exits."""
        if not self._exit_lock.acquire(blocking=False):
            threading.Event().wait()  # another thread is already exiting the process
        if self.delivery is not None:
            self.delivery.end_streams()  # our side of Deliver ends; the final ack went out before
        if self.server is not None and grace_s > 0:
            self.server.stop(grace=grace_s).wait(grace_s + 0.05)
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def serve(plugin: Plugin) -> None:
    """Runs the plugin until the host stops it, then exits the process."""
    program = os.path.basename(sys.argv[0] or plugin.name)
    # Attach mode (PLUGWIRE_LISTEN): run by a process manager, served on TCP with mutual TLS (docs/protocol.md §18).
    remote = _attach.remote_listen_from_env(getattr(plugin, "name", program))
    if isinstance(remote, str):
        _fatal(remote)
    if remote is not None:
        try:
            validate(plugin)
        except ValueError as e:
            _fatal(f"plugwire plugin {program}: {e}")
        _serve_attach(plugin, remote)
        return
    if os.environ.get(ENV_MAGIC_COOKIE) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(
            f"This is a plugwire plugin ({program}); it is started by a plugwire host, not run directly.\n"
            "Add it to a host config and run `plugwire run --config FILE`, or test it with `plugwire check -- COMMAND`.\n"
        )
        sys.exit(1)
    try:
        validate(plugin)
    except ValueError as e:
        _fatal(f"plugwire plugin {program}: {e}")
    version = _pick_version(plugin.name, _require_env(ENV_PROTOCOL_VERSIONS))
    socket_dir = _require_env(ENV_SOCKET_DIR)
    instance_id = _require_env(ENV_INSTANCE_ID)
    host_address = _require_env(ENV_HOST_ADDRESS)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", instance_id):
        _fatal(f"plugwire plugin '{plugin.name}': {ENV_INSTANCE_ID}={instance_id!r} may only use [A-Za-z0-9._-]")
    socket_path = os.path.join(socket_dir, f"{instance_id}.sock")
    if not socket_dir.startswith("/") or re.search(r"[\x00-\x20\x7f]", socket_path):
        _fatal(
            f"plugwire plugin '{plugin.name}': {ENV_SOCKET_DIR}={json.dumps(socket_dir)} must be an absolute path without "
            "whitespace or control characters, since the socket path goes in the handshake line. "
            "The host that started this plugin is broken."
        )
    size = len(socket_path.encode())
    if size > MAX_SOCKET_PATH_BYTES:
        _fatal(
            f"plugwire plugin '{plugin.name}': socket path {socket_path} is {size} bytes, "
            f"over the {MAX_SOCKET_PATH_BYTES}-byte unix socket limit. Give the host a shorter runDirParent (docs/protocol.md §4)."
        )

    # The token: by default the first line on stdin, which no other process
    # can read (docs/protocol.md §6); read before anything listens, and before
    # the stdin watcher below starts.
    try:
        token = read_launch_token()
    except LaunchTokenError as e:
        _fatal(f"plugwire plugin '{plugin.name}': {e}")
    os.environ.pop(ENV_AUTH_TOKEN, None)  # the legacy variable is not passed on to child processes

    log = Logger()
    stopping = threading.Event()
    host = HostClient(host_address, token)
    runtime = _Runtime(plugin, Context(plugin.name, instance_id, host, log, stopping), socket_path)

    # Watch for the host's death from the very start, before the handshake.
    def watch_stdin():
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        runtime.stop("stdin closed", grace_s=0)  # no host left to answer

    threading.Thread(target=watch_stdin, name="plugwire-stdin", daemon=True).start()
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="plugwire"),
        interceptors=[_TokenCheck(plugin.name, token)],
        options=_MESSAGE_LIMITS,
    )
    runtime.server = server
    plugin_pb2_grpc.add_PluginServiceServicer_to_server(_PluginServicer(plugin, runtime, version), server)
    health_pb2_grpc.add_HealthServicer_to_server(_HealthServicer(stopping), server)

    try:
        if stat.S_ISSOCK(os.lstat(socket_path).st_mode):
            os.unlink(socket_path)  # a stale socket of an earlier process
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{socket_path}")
        server.start()
    except RuntimeError as e:
        _fatal(f"plugwire plugin '{plugin.name}': cannot listen on {socket_path}: {e}")
    finally:
        os.umask(old_umask)
    os.chmod(socket_path, 0o600)

    sys.stdout.write(_handshake_line(version, socket_path))
    sys.stdout.flush()

    # Signals are delivered to the main thread, so it waits here for them.
    while not stop_requested.wait(1.0):
        pass
    runtime.stop("signal", grace_s=_STOP_GRACE_S)


def _serve_attach(plugin: Plugin, remote: "_attach.RemoteListen") -> None:
    """serve() in attach mode (docs/protocol.md §18): no cookie, no socket
    dir, no token line, no handshake line, and stdin means nothing. It serves
    PluginService and health on TCP (mutual TLS, or plaintext on loopback),
    logs "serving attach mode on tcp://..." once the listener completes a TLS
    handshake, and exits on SIGTERM/SIGINT, on Shutdown, or with status 3 when
    a second host session begins."""
    version = max(SUPPORTED_VERSIONS)  # the host's Describe says the version it expects
    instance_id = os.environ.get(ENV_INSTANCE_ID, "") or plugin.name
    if not re.fullmatch(r"[A-Za-z0-9._-]+", instance_id):
        _fatal(f"plugwire plugin '{plugin.name}': {ENV_INSTANCE_ID}={instance_id!r} may only use [A-Za-z0-9._-]")
    log = Logger()
    credentials = None
    if remote.tls is not None:
        remote.tls.on_error = log.error
        try:
            credentials = remote.tls.server_credentials()
        except ValueError as e:
            _fatal(f"plugwire plugin '{plugin.name}': {e}")

    stopping = threading.Event()
    runtime: Optional[_Runtime] = None

    def new_session(method: str) -> None:
        log.warn(f"a new host session began ({method}) after this process served one; exiting so the process manager restarts it with fresh state")

        def leave():
            runtime.run_shutdown_hook(_EXIT_GRACE_S)
            runtime.exit(_attach.REMOTE_NEW_SESSION_EXIT_CODE, _STOP_GRACE_S)

        threading.Thread(target=leave, name="plugwire-new-session", daemon=True).start()

    gate = _SessionGate(plugin.name, new_session)
    if remote.host is None:
        host = HostClient(_attach.REMOTE_NO_HOST_SERVICE, lambda: gate.token)
    else:
        host = HostClient(remote.host.target, lambda: gate.token, credentials=remote.host.credentials, options=remote.host.options)
    runtime = _Runtime(plugin, Context(plugin.name, instance_id, host, log, stopping), "")

    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    signal.signal(signal.SIGINT, lambda *_: stop_requested.set())

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="plugwire"),
        interceptors=[gate],
        # No SO_REUSEPORT: a second process on the same port must fail to bind, not share the host's connections.
        options=[*_MESSAGE_LIMITS, ("grpc.so_reuseport", 0)],
    )
    runtime.server = server
    plugin_pb2_grpc.add_PluginServiceServicer_to_server(_PluginServicer(plugin, runtime, version), server)
    health_pb2_grpc.add_HealthServicer_to_server(_HealthServicer(stopping), server)
    listen = f"tcp://{remote.address.grpc_address()}"
    try:
        if credentials is None:
            port = server.add_insecure_port(remote.address.grpc_address())
        else:
            port = server.add_secure_port(remote.address.grpc_address(), credentials)
        if not port:
            raise RuntimeError("the address is in use or not this machine's")
        server.start()
    except RuntimeError as e:
        _fatal(f"plugwire plugin '{plugin.name}': cannot listen on {listen}: {e}")
    if credentials is not None:
        # Say that it serves only once a TLS handshake completes on the port.
        try:
            _attach.wait_tls_ready(remote.address, port)
        except RuntimeError as e:
            _fatal(f"plugwire plugin '{plugin.name}': {e}")

    if remote.health_address is not None:
        # Probes (the kubelet's) get the serving status in plaintext, and nothing else.
        probes = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="plugwire-probes"), options=[("grpc.so_reuseport", 0)]
        )
        health_pb2_grpc.add_HealthServicer_to_server(_HealthServicer(stopping), probes)
        try:
            health_port = probes.add_insecure_port(remote.health_address.grpc_address())
            if not health_port:
                raise RuntimeError("the address is in use or not this machine's")
            probes.start()
        except RuntimeError as e:
            _fatal(f"plugwire plugin '{plugin.name}': cannot listen on tcp://{remote.health_address.grpc_address()}: {e}")
        log.info(
            f"plugwire plugin '{plugin.name}' serving grpc.health.v1 for probes on port {health_port} (plaintext, health only)",
            healthPort=health_port,
        )
    shown = f"[{remote.address.host}]" if ":" in remote.address.host else remote.address.host
    log.info(f"plugwire plugin '{plugin.name}' serving attach mode on tcp://{shown}:{port} with {remote.security}", port=port)

    # Signals are delivered to the main thread, so it waits here for them.
    while not stop_requested.wait(1.0):
        pass
    runtime.stop("signal", grace_s=_STOP_GRACE_S)
