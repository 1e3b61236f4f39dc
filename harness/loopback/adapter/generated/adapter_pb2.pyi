from google.protobuf import any_pb2 as _any_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Transport(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSPORT_UNSPECIFIED: _ClassVar[Transport]
    SOTW_AGGREGATED: _ClassVar[Transport]
    DELTA_AGGREGATED: _ClassVar[Transport]
    SOTW_PER_TYPE: _ClassVar[Transport]
    DELTA_PER_TYPE: _ClassVar[Transport]

class ClientKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CLIENT_KIND_UNSPECIFIED: _ClassVar[ClientKind]
    ENVOY: _ClassVar[ClientKind]
    PROXYLESS_GRPC: _ClassVar[ClientKind]
TRANSPORT_UNSPECIFIED: Transport
SOTW_AGGREGATED: Transport
DELTA_AGGREGATED: Transport
SOTW_PER_TYPE: Transport
DELTA_PER_TYPE: Transport
CLIENT_KIND_UNSPECIFIED: ClientKind
ENVOY: ClientKind
PROXYLESS_GRPC: ClientKind

class CapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CapabilitiesResponse(_message.Message):
    __slots__ = ("transports", "clients", "ads_addresses", "server")
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    ADS_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    transports: _containers.RepeatedScalarFieldContainer[Transport]
    clients: _containers.RepeatedScalarFieldContainer[ClientKind]
    ads_addresses: _containers.RepeatedScalarFieldContainer[str]
    server: str
    def __init__(self, transports: _Optional[_Iterable[_Union[Transport, str]]] = ..., clients: _Optional[_Iterable[_Union[ClientKind, str]]] = ..., ads_addresses: _Optional[_Iterable[str]] = ..., server: _Optional[str] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("node_id", "resources")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, node_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class RestartRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RestartResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReadyResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
