"""The shared test vectors, sdk/testdata/vectors.json (made by
scripts/generate-testdata.mjs from the TS contract; every SDK's tests read
it): the Python generated code decodes and encodes each message exactly, and
the token line and protocol-version parsers agree with the host's."""

import json
import os
import pathlib

import pytest
from google.protobuf import json_format

import plugwire
from plugwire import _protocol, _runtime
from plugwire._gen.plugwire.v1 import plugin_pb2

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "testdata" / "vectors.json").read_text())


def test_every_section_has_vectors():
    assert VECTORS["messages"] and VECTORS["tokenLines"] and VECTORS["versionLists"]
    assert VECTORS["deliverStreams"] and VECTORS["handshakeLines"]


@pytest.mark.parametrize("vector", VECTORS["messages"], ids=lambda v: f"{v['type']}: {v['name']}")
def test_message(vector):
    cls = getattr(plugin_pb2, vector["type"].removeprefix("plugwire.v1."))
    wire = bytes.fromhex(vector["hex"])
    decoded = cls.FromString(wire)
    from_json = json_format.ParseDict(vector["json"], cls())
    assert decoded == from_json, "decoding the hex gives the vector's JSON"
    assert json_format.MessageToDict(decoded) == vector["json"]
    assert from_json.SerializeToString(deterministic=True) == wire, "encoding gives the host's bytes"


@pytest.mark.parametrize("vector", VECTORS["tokenLines"], ids=lambda v: repr(v["line"]))
def test_token_line(vector):
    r, w = os.pipe()
    try:
        os.write(w, vector["line"].encode() + b"\n")
        environ = {_protocol.ENV_AUTH_TOKEN_SOURCE: "stdin"}
        if vector["token"] is None:
            with pytest.raises(plugwire.LaunchTokenError):
                _runtime.read_launch_token(environ, fd=r, timeout_s=5)
        else:
            assert _runtime.read_launch_token(environ, fd=r, timeout_s=5) == vector["token"]
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("vector", VECTORS["handshakeLines"], ids=lambda v: v["socketPath"])
def test_handshake_line(vector):
    assert _runtime._handshake_line(vector["protocolVersion"], vector["socketPath"]) == vector["line"]


@pytest.mark.parametrize("vector", VECTORS["versionLists"], ids=lambda v: repr(v["value"]))
def test_version_list(vector):
    assert _runtime._parse_versions(vector["value"]) == vector["versions"]


def test_constants_and_limits():
    assert VECTORS["protocolVersion"] == _protocol.PROTOCOL_VERSION
    assert VECTORS["tokenLinePrefix"] == _protocol.TOKEN_LINE_PREFIX
    assert VECTORS["handshakePrefix"] == _protocol.HANDSHAKE_PREFIX
    limits = VECTORS["limits"]
    assert limits["maxMessageBytes"] == _protocol.MAX_MESSAGE_BYTES
    assert limits["snapshotChunkBytes"] == _protocol.SNAPSHOT_CHUNK_BYTES
    assert limits["maxTokenLineBytes"] == _protocol.MAX_TOKEN_LINE_BYTES


class _VecRecorder(plugwire.Plugin):
    """The recorder plugin of the deliverStreams vectors."""

    name = "recorder"
    payload_kinds = ("vec.hit", "vec.ping", "vec.fail")

    def __init__(self):
        self.calls = []

    def handle_payload(self, ctx, src, kind, body):
        self.calls.append({"seq": ctx.seq, "item": "payload", "redelivered": ctx.redelivered})
        if kind == "vec.ping":
            ctx.send_direct(src, b"pong")
        elif kind == "vec.fail":
            ctx.send_direct(src, b"dropped")
            raise RuntimeError("vec.fail fails")

    def on_peer_forgotten(self, ctx, peer):
        self.calls.append({"seq": ctx.seq, "item": "forget", "redelivered": ctx.redelivered})
        ctx.send_direct(peer, b"bye")


class _Sink:
    def write(self, _line):
        pass

    def flush(self):
        pass


@pytest.mark.parametrize("vector", VECTORS["deliverStreams"], ids=lambda v: v["name"])
def test_deliver_stream(vector):
    import threading

    plugin = _VecRecorder()
    ctx = plugwire.Context("recorder", "i1", host=None, log=plugwire.Logger(_Sink()), stopping=threading.Event())
    ctx.capabilities = frozenset({"control"})
    delivery = _runtime._Delivery(plugin, lambda: ctx, clock=lambda: 0.0)
    stream = delivery.open_stream()
    for batch in vector["batches"]:
        delivery.process(plugin_pb2.DeliverRequest.FromString(bytes.fromhex(batch)), stream)
    acks = []
    while not stream.out.empty():
        acks.append(stream.out.get_nowait())
    assert plugin.calls == vector["calls"]
    throughs = [a.acked_through for a in acks]
    assert throughs == sorted(throughs), "acks never go down"
    assert throughs and throughs[-1] == vector["ackedThrough"]
    outcomes = [
        {
            "seq": o.seq,
            "error": o.HasField("error"),
            "effects": [{"peer": e.send_direct.peer.hex(), "frame": e.send_direct.frame.decode()} for e in o.effects],
        }
        for a in acks
        for o in a.outcomes
    ]
    assert outcomes == vector["outcomes"]
