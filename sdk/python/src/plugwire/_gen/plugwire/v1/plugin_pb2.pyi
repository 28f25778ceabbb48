from plugwire._gen.plugwire.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ("protocol_version",)
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    def __init__(self, protocol_version: _Optional[int] = ...) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("name", "payload_kinds", "protocol_version", "stateful", "sdk")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_KINDS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATEFUL_FIELD_NUMBER: _ClassVar[int]
    SDK_FIELD_NUMBER: _ClassVar[int]
    name: str
    payload_kinds: _containers.RepeatedScalarFieldContainer[str]
    protocol_version: int
    stateful: StatefulSurface
    sdk: SdkInfo
    def __init__(self, name: _Optional[str] = ..., payload_kinds: _Optional[_Iterable[str]] = ..., protocol_version: _Optional[int] = ..., stateful: _Optional[_Union[StatefulSurface, _Mapping]] = ..., sdk: _Optional[_Union[SdkInfo, _Mapping]] = ...) -> None: ...

class StatefulSurface(_message.Message):
    __slots__ = ("id", "snapshot_versions")
    ID_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    snapshot_versions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[str] = ..., snapshot_versions: _Optional[_Iterable[int]] = ...) -> None: ...

class SdkInfo(_message.Message):
    __slots__ = ("language", "version")
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    language: str
    version: str
    def __init__(self, language: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("data_dir", "instance_id", "config_json", "capabilities")
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    data_dir: str
    instance_id: str
    config_json: str
    capabilities: _containers.RepeatedScalarFieldContainer[_types_pb2.Capability]
    def __init__(self, data_dir: _Optional[str] = ..., instance_id: _Optional[str] = ..., config_json: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[_types_pb2.Capability, str]]] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[DeliveryItem]
    def __init__(self, items: _Optional[_Iterable[_Union[DeliveryItem, _Mapping]]] = ...) -> None: ...

class DeliveryItem(_message.Message):
    __slots__ = ("seq", "redelivered", "payload", "peer_forgotten")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    PEER_FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    seq: int
    redelivered: bool
    payload: Payload
    peer_forgotten: PeerForgotten
    def __init__(self, seq: _Optional[int] = ..., redelivered: _Optional[bool] = ..., payload: _Optional[_Union[Payload, _Mapping]] = ..., peer_forgotten: _Optional[_Union[PeerForgotten, _Mapping]] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("src", "kind", "body")
    SRC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    src: bytes
    kind: str
    body: bytes
    def __init__(self, src: _Optional[bytes] = ..., kind: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class PeerForgotten(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    def __init__(self, node_id: _Optional[bytes] = ...) -> None: ...

class DeliverResponse(_message.Message):
    __slots__ = ("acked_through", "outcomes")
    ACKED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    acked_through: int
    outcomes: _containers.RepeatedCompositeFieldContainer[ItemOutcome]
    def __init__(self, acked_through: _Optional[int] = ..., outcomes: _Optional[_Iterable[_Union[ItemOutcome, _Mapping]]] = ...) -> None: ...

class ItemOutcome(_message.Message):
    __slots__ = ("seq", "error", "effects")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    error: HandlerError
    effects: _containers.RepeatedCompositeFieldContainer[Effect]
    def __init__(self, seq: _Optional[int] = ..., error: _Optional[_Union[HandlerError, _Mapping]] = ..., effects: _Optional[_Iterable[_Union[Effect, _Mapping]]] = ...) -> None: ...

class HandlerError(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class Effect(_message.Message):
    __slots__ = ("send_direct",)
    SEND_DIRECT_FIELD_NUMBER: _ClassVar[int]
    send_direct: SendDirect
    def __init__(self, send_direct: _Optional[_Union[SendDirect, _Mapping]] = ...) -> None: ...

class SendDirect(_message.Message):
    __slots__ = ("peer", "frame")
    PEER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    peer: bytes
    frame: bytes
    def __init__(self, peer: _Optional[bytes] = ..., frame: _Optional[bytes] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SnapshotResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("id", "version", "applied_seq", "size_bytes")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    applied_seq: int
    size_bytes: int
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., applied_seq: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class RestoreRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class RestoreResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("deadline_ms",)
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    deadline_ms: int
    def __init__(self, deadline_ms: _Optional[int] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
