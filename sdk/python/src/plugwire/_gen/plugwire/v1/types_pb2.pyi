from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Capability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPABILITY_UNSPECIFIED: _ClassVar[Capability]
    CAPABILITY_PEERS: _ClassVar[Capability]
    CAPABILITY_CONTROL: _ClassVar[Capability]
    CAPABILITY_IDENTITY: _ClassVar[Capability]

class PeerSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PEER_SOURCE_UNSPECIFIED: _ClassVar[PeerSource]
    PEER_SOURCE_DIRECT: _ClassVar[PeerSource]
    PEER_SOURCE_ROUTED: _ClassVar[PeerSource]
CAPABILITY_UNSPECIFIED: Capability
CAPABILITY_PEERS: Capability
CAPABILITY_CONTROL: Capability
CAPABILITY_IDENTITY: Capability
PEER_SOURCE_UNSPECIFIED: PeerSource
PEER_SOURCE_DIRECT: PeerSource
PEER_SOURCE_ROUTED: PeerSource

class PeerSeen(_message.Message):
    __slots__ = ("node_id", "x25519_pub", "name", "source")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    X25519_PUB_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    x25519_pub: bytes
    name: str
    source: PeerSource
    def __init__(self, node_id: _Optional[bytes] = ..., x25519_pub: _Optional[bytes] = ..., name: _Optional[str] = ..., source: _Optional[_Union[PeerSource, str]] = ...) -> None: ...

class PeerForgottenEvent(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    def __init__(self, node_id: _Optional[bytes] = ...) -> None: ...

class PeerEvent(_message.Message):
    __slots__ = ("seen", "forgotten")
    SEEN_FIELD_NUMBER: _ClassVar[int]
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    seen: PeerSeen
    forgotten: PeerForgottenEvent
    def __init__(self, seen: _Optional[_Union[PeerSeen, _Mapping]] = ..., forgotten: _Optional[_Union[PeerForgottenEvent, _Mapping]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("plugin", "snapshot_failed", "restore_failed", "unsupported_version")
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FAILED_FIELD_NUMBER: _ClassVar[int]
    RESTORE_FAILED_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    plugin: str
    snapshot_failed: SnapshotFailed
    restore_failed: RestoreFailed
    unsupported_version: UnsupportedVersion
    def __init__(self, plugin: _Optional[str] = ..., snapshot_failed: _Optional[_Union[SnapshotFailed, _Mapping]] = ..., restore_failed: _Optional[_Union[RestoreFailed, _Mapping]] = ..., unsupported_version: _Optional[_Union[UnsupportedVersion, _Mapping]] = ...) -> None: ...

class SnapshotFailed(_message.Message):
    __slots__ = ("details",)
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    details: str
    def __init__(self, details: _Optional[str] = ...) -> None: ...

class RestoreFailed(_message.Message):
    __slots__ = ("details",)
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    details: str
    def __init__(self, details: _Optional[str] = ...) -> None: ...

class UnsupportedVersion(_message.Message):
    __slots__ = ("version", "expected")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    version: int
    expected: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, version: _Optional[int] = ..., expected: _Optional[_Iterable[int]] = ...) -> None: ...
