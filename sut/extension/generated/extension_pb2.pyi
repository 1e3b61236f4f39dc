from envoy.config.cluster.v3 import cluster_pb2 as _cluster_pb2
from envoy.config.listener.v3 import listener_pb2 as _listener_pb2
from envoy.config.route.v3 import route_pb2 as _route_pb2
from envoy.config.route.v3 import route_components_pb2 as _route_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2 as _secret_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExtensionResource(_message.Message):
    __slots__ = ("unstructured_bytes",)
    UNSTRUCTURED_BYTES_FIELD_NUMBER: _ClassVar[int]
    unstructured_bytes: bytes
    def __init__(self, unstructured_bytes: _Optional[bytes] = ...) -> None: ...

class PostRouteExtensionContext(_message.Message):
    __slots__ = ("extension_resources", "hostnames")
    EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    HOSTNAMES_FIELD_NUMBER: _ClassVar[int]
    extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    hostnames: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ..., hostnames: _Optional[_Iterable[str]] = ...) -> None: ...

class PostVirtualHostExtensionContext(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PostHTTPListenerExtensionContext(_message.Message):
    __slots__ = ("extension_resources",)
    EXTENSION_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    extension_resources: _containers.RepeatedCompositeFieldContainer[ExtensionResource]
    def __init__(self, extension_resources: _Optional[_Iterable[_Union[ExtensionResource, _Mapping]]] = ...) -> None: ...

class PostTranslateExtensionContext(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PostRouteModifyRequest(_message.Message):
    __slots__ = ("route", "post_route_context")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    POST_ROUTE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    route: _route_components_pb2.Route
    post_route_context: PostRouteExtensionContext
    def __init__(self, route: _Optional[_Union[_route_components_pb2.Route, _Mapping]] = ..., post_route_context: _Optional[_Union[PostRouteExtensionContext, _Mapping]] = ...) -> None: ...

class PostRouteModifyResponse(_message.Message):
    __slots__ = ("route",)
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    route: _route_components_pb2.Route
    def __init__(self, route: _Optional[_Union[_route_components_pb2.Route, _Mapping]] = ...) -> None: ...

class PostVirtualHostModifyRequest(_message.Message):
    __slots__ = ("virtual_host", "post_virtual_host_context")
    VIRTUAL_HOST_FIELD_NUMBER: _ClassVar[int]
    POST_VIRTUAL_HOST_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    virtual_host: _route_components_pb2.VirtualHost
    post_virtual_host_context: PostVirtualHostExtensionContext
    def __init__(self, virtual_host: _Optional[_Union[_route_components_pb2.VirtualHost, _Mapping]] = ..., post_virtual_host_context: _Optional[_Union[PostVirtualHostExtensionContext, _Mapping]] = ...) -> None: ...

class PostVirtualHostModifyResponse(_message.Message):
    __slots__ = ("virtual_host",)
    VIRTUAL_HOST_FIELD_NUMBER: _ClassVar[int]
    virtual_host: _route_components_pb2.VirtualHost
    def __init__(self, virtual_host: _Optional[_Union[_route_components_pb2.VirtualHost, _Mapping]] = ...) -> None: ...

class PostHTTPListenerModifyRequest(_message.Message):
    __slots__ = ("listener", "post_listener_context")
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    POST_LISTENER_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    post_listener_context: PostHTTPListenerExtensionContext
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ..., post_listener_context: _Optional[_Union[PostHTTPListenerExtensionContext, _Mapping]] = ...) -> None: ...

class PostHTTPListenerModifyResponse(_message.Message):
    __slots__ = ("listener",)
    LISTENER_FIELD_NUMBER: _ClassVar[int]
    listener: _listener_pb2.Listener
    def __init__(self, listener: _Optional[_Union[_listener_pb2.Listener, _Mapping]] = ...) -> None: ...

class PostTranslateModifyRequest(_message.Message):
    __slots__ = ("post_translate_context", "clusters", "secrets", "listeners", "routes")
    POST_TRANSLATE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    post_translate_context: PostTranslateExtensionContext
    clusters: _containers.RepeatedCompositeFieldContainer[_cluster_pb2.Cluster]
    secrets: _containers.RepeatedCompositeFieldContainer[_secret_pb2.Secret]
    listeners: _containers.RepeatedCompositeFieldContainer[_listener_pb2.Listener]
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.RouteConfiguration]
    def __init__(self, post_translate_context: _Optional[_Union[PostTranslateExtensionContext, _Mapping]] = ..., clusters: _Optional[_Iterable[_Union[_cluster_pb2.Cluster, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_secret_pb2.Secret, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[_listener_pb2.Listener, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[_route_pb2.RouteConfiguration, _Mapping]]] = ...) -> None: ...

class PostTranslateModifyResponse(_message.Message):
    __slots__ = ("clusters", "secrets", "listeners", "routes")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[_cluster_pb2.Cluster]
    secrets: _containers.RepeatedCompositeFieldContainer[_secret_pb2.Secret]
    listeners: _containers.RepeatedCompositeFieldContainer[_listener_pb2.Listener]
    routes: _containers.RepeatedCompositeFieldContainer[_route_pb2.RouteConfiguration]
    def __init__(self, clusters: _Optional[_Iterable[_Union[_cluster_pb2.Cluster, _Mapping]]] = ..., secrets: _Optional[_Iterable[_Union[_secret_pb2.Secret, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[_listener_pb2.Listener, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[_route_pb2.RouteConfiguration, _Mapping]]] = ...) -> None: ...
