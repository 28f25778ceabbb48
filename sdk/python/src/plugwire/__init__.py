"""plugwire: write plugwire plugins in Python.

    import plugwire

    class Echo(plugwire.Plugin):
        name = "echo"
        payload_kinds = ("echo.say",)

        def handle_payload(self, ctx, src, kind, body):
            ctx.send_direct(src, body)  # an effect: sent when the payload is acked

    if __name__ == "__main__":
        plugwire.serve(Echo())

See README.md in sdk/python and docs/writing-plugins-python.md.
"""

import os as _os

# grpcio's C core writes plain-text info lines to stderr (for example
# "fork_posix.cc ... skipping fork() handlers"), which the host would log as
# errors (docs/protocol.md §5, §16). Only errors, unless the plugin says
# otherwise; this works when plugwire is imported before grpc.
_os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from ._protocol import PROTOCOL_VERSION, SDK_VERSION  # noqa: E402
from ._runtime import LaunchTokenError, read_launch_token, serve
from ._version import __version__
from .plugin import (
    Capability,
    Context,
    HandlerContext,
    HostCallError,
    Logger,
    PeerEvent,
    PeerForgotten,
    PeerSeen,
    PeerWatch,
    Plugin,
    RestoreFailed,
    Snapshot,
    SnapshotFailed,
    Stateful,
    UnsupportedVersion,
    define_plugin,
    describe_problems,
    validate,
)

__all__ = [
    "PROTOCOL_VERSION",
    "SDK_VERSION",
    "Capability",
    "Context",
    "HandlerContext",
    "HostCallError",
    "LaunchTokenError",
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
    "__version__",
    "define_plugin",
    "describe_problems",
    "read_launch_token",
    "serve",
    "validate",
]
