from plugwire._gen.plugwire.v1 import plugin_pb2 as _plugin_pb2
from plugwire._gen.plugwire.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CallsRequest(_message.Message):
    __slots__ = ("id", "lookup_x25519", "lookup_name", "send_direct", "send_routed", "get_signing_seed")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_X25519_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SEND_DIRECT_FIELD_NUMBER: _ClassVar[int]
    SEND_ROUTED_FIELD_NUMBER: _ClassVar[int]
    GET_SIGNING_SEED_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup_x25519: LookupX25519Request
    lookup_name: LookupNameRequest
    send_direct: SendDirectRequest
    send_routed: SendRoutedRequest
    get_signing_seed: GetSigningSeedRequest
    def __init__(self, id: _Optional[int] = ..., lookup_x25519: _Optional[_Union[LookupX25519Request, _Mapping]] = ..., lookup_name: _Optional[_Union[LookupNameRequest, _Mapping]] = ..., send_direct: _Optional[_Union[SendDirectRequest, _Mapping]] = ..., send_routed: _Optional[_Union[SendRoutedRequest, _Mapping]] = ..., get_signing_seed: _Optional[_Union[GetSigningSeedRequest, _Mapping]] = ...) -> None: ...

class CallsResponse(_message.Message):
    __slots__ = ("id", "lookup_x25519", "lookup_name", "send_direct", "send_routed", "get_signing_seed", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_X25519_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_NAME_FIELD_NUMBER: _ClassVar[int]
    SEND_DIRECT_FIELD_NUMBER: _ClassVar[int]
    SEND_ROUTED_FIELD_NUMBER: _ClassVar[int]
    GET_SIGNING_SEED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    lookup_x25519: LookupX25519Response
    lookup_name: LookupNameResponse
    send_direct: SendDirectResponse
    send_routed: SendRoutedResponse
    get_signing_seed: GetSigningSeedResponse
    error: CallError
    def __init__(self, id: _Optional[int] = ..., lookup_x25519: _Optional[_Union[LookupX25519Response, _Mapping]] = ..., lookup_name: _Optional[_Union[LookupNameResponse, _Mapping]] = ..., send_direct: _Optional[_Union[SendDirectResponse, _Mapping]] = ..., send_routed: _Optional[_Union[SendRoutedResponse, _Mapping]] = ..., get_signing_seed: _Optional[_Union[GetSigningSeedResponse, _Mapping]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class LookupX25519Request(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    def __init__(self, node_id: _Optional[bytes] = ...) -> None: ...

class LookupX25519Response(_message.Message):
    __slots__ = ("x25519_pub",)
    X25519_PUB_FIELD_NUMBER: _ClassVar[int]
    x25519_pub: bytes
    def __init__(self, x25519_pub: _Optional[bytes] = ...) -> None: ...

class LookupNameRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: bytes
    def __init__(self, node_id: _Optional[bytes] = ...) -> None: ...

class LookupNameResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchPeersResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _types_pb2.PeerEvent
    def __init__(self, event: _Optional[_Union[_types_pb2.PeerEvent, _Mapping]] = ...) -> None: ...

class SendDirectRequest(_message.Message):
    __slots__ = ("send",)
    SEND_FIELD_NUMBER: _ClassVar[int]
    send: _plugin_pb2.SendDirect
    def __init__(self, send: _Optional[_Union[_plugin_pb2.SendDirect, _Mapping]] = ...) -> None: ...

class SendDirectResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SendRoutedRequest(_message.Message):
    __slots__ = ("dst", "frame", "origin")
    DST_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    dst: bytes
    frame: bytes
    origin: EffectOrigin
    def __init__(self, dst: _Optional[bytes] = ..., frame: _Optional[bytes] = ..., origin: _Optional[_Union[EffectOrigin, _Mapping]] = ...) -> None: ...

class EffectOrigin(_message.Message):
    __slots__ = ("seq", "index")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    seq: int
    index: int
    def __init__(self, seq: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class SendRoutedResponse(_message.Message):
    __slots__ = ("routed",)
    ROUTED_FIELD_NUMBER: _ClassVar[int]
    routed: bool
    def __init__(self, routed: _Optional[bool] = ...) -> None: ...

class GetSigningSeedRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSigningSeedResponse(_message.Message):
    __slots__ = ("seed",)
    SEED_FIELD_NUMBER: _ClassVar[int]
    seed: bytes
    def __init__(self, seed: _Optional[bytes] = ...) -> None: ...
