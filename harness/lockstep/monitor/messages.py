"""Typed xDS messages from the gRPC messages on the wire, and the names each resource references.

`decode` turns one `GrpcMessage` into an `XdsRequest` or `XdsResponse` (SotW or Delta), using
only the bytes: the RPC's method path says SotW or Delta and, for a per-type service, the type;
the direction says request or response. Anything that does not parse as what the path promises
is a `DecodeProblem`, never an exception.

`references` says which names a resource makes the client depend on (RouteConfigurations,
Clusters, ClusterLoadAssignments, Secrets); it parses the resource only when asked, and
remembers the answer per (type_url, body).

This module reads the real xDS protobufs and nothing of the control plane under test.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from harness.lockstep.monitor.wire import DecodeProblem, GrpcMessage

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "SECRET",
    "TYPE_SHORT",
    "XDS_METHODS",
    "References",
    "StreamKey",
    "WireResource",
    "XdsMethod",
    "XdsRequest",
    "XdsResponse",
    "decode",
    "references",
]

_TYPE_PREFIX = "type.googleapis.com/"
LISTENER = _TYPE_PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _TYPE_PREFIX + "envoy.config.route.v3.RouteConfiguration"
CLUSTER = _TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

TYPE_SHORT: dict[str, str] = {
    LISTENER: "LDS",
    ROUTE: "RDS",
    CLUSTER: "CDS",
    ENDPOINT: "EDS",
    SECRET: "SDS",
}

_MESSAGE_CLASSES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    SECRET: secret_pb2.Secret,
}

_NAME_FIELDS = {ENDPOINT: "cluster_name"}
"""How a resource names itself, where the field is not `name`."""

_HCM = (
    _TYPE_PREFIX
    + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_DOWNSTREAM_TLS = _TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
_UPSTREAM_TLS = _TYPE_PREFIX + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@attrs.frozen
class XdsMethod:
    """What an xDS RPC carries: SotW or Delta, and its one type unless it is aggregated (ADS)."""

    delta: bool
    type_url: str | None


def _xds_methods() -> dict[str, XdsMethod]:
    methods = {
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources": (
            XdsMethod(delta=False, type_url=None)
        ),
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources": (
            XdsMethod(delta=True, type_url=None)
        ),
    }
    per_type = {
        "listener.v3.ListenerDiscoveryService/{}Listeners": LISTENER,
        "route.v3.RouteDiscoveryService/{}Routes": ROUTE,
        "cluster.v3.ClusterDiscoveryService/{}Clusters": CLUSTER,
        "endpoint.v3.EndpointDiscoveryService/{}Endpoints": ENDPOINT,
        "secret.v3.SecretDiscoveryService/{}Secrets": SECRET,
    }
    for pattern, type_url in per_type.items():
        for prefix, delta in (("Stream", False), ("Delta", True)):
            path = "/envoy.service." + pattern.format(prefix)
            methods[path] = XdsMethod(delta=delta, type_url=type_url)
    return methods


XDS_METHODS: dict[str, XdsMethod] = _xds_methods()
"""Method path -> what the stream carries, for ADS and the per-type xDS services (v3)."""


@attrs.frozen(order=True)
class StreamKey:
    """One gRPC stream on the wire: the relay's connection serial and the HTTP/2 stream id."""

    connection: int
    stream: int

    def __str__(self) -> str:
        return f"{self.connection}/{self.stream}"


@attrs.frozen
class WireResource:
    name: str
    version: str
    """Delta: Resource.version; SotW: the response's version_info."""
    body: bytes | None
    """The serialized resource (Any.value); None for a Delta Resource without `resource`."""
    type_url: str


@attrs.frozen
class XdsRequest:
    stream: StreamKey
    at: float
    delta: bool
    type_url: str
    node_id: str
    version_info: str
    """SotW only ("" for Delta)."""
    resource_names: tuple[str, ...]
    """SotW resource_names; Delta resource_names_subscribe."""
    unsubscribe: tuple[str, ...]
    """Delta only."""
    initial_resource_versions: tuple[tuple[str, str], ...]
    """Delta only, sorted by name."""
    response_nonce: str
    error_detail: str | None
    """The message of error_detail when present: a NACK."""
    node_metadata: tuple[tuple[str, str], ...] = ()
    """The node's metadata fields that are strings, sorted (usually only on a first request)."""

    @property
    def is_nack(self) -> bool:
        return self.error_detail is not None

    @property
    def type_short(self) -> str:
        return TYPE_SHORT.get(self.type_url, self.type_url)


@attrs.frozen
class XdsResponse:
    stream: StreamKey
    at: float
    delta: bool
    type_url: str
    version_info: str
    """SotW version_info; Delta system_version_info."""
    nonce: str
    resources: tuple[WireResource, ...]
    removed: tuple[str, ...]
    """Delta removed_resources (SotW: ())."""

    @property
    def type_short(self) -> str:
        return TYPE_SHORT.get(self.type_url, self.type_url)


@attrs.frozen
class References:
    """The names a resource makes the client depend on, by type."""

    routes: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()
    endpoints: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()


class _Undecodable(Exception):
    pass


def decode(message: GrpcMessage) -> XdsRequest | XdsResponse | DecodeProblem:
    """The xDS request or response a gRPC message carries, or why it carries none."""
    key = StreamKey(message.connection, message.stream)
    method = XDS_METHODS.get(message.method)
    try:
        if method is None:
            raise _Undecodable(f"not an xDS method: {message.method!r}")
        if message.direction == "to_server":
            return _request(key, message, method)
        return _response(key, message, method)
    except _Undecodable as problem:
        return DecodeProblem(
            connection=message.connection,
            at=message.at,
            detail=f"stream {key} ({message.direction}): {problem}",
        )


def _parse(message_class: type[Message], payload: bytes, what: str) -> Message:
    parsed = message_class()
    try:
        parsed.ParseFromString(payload)
    except DecodeError as error:
        raise _Undecodable(f"{what} does not parse: {error}") from error
    return parsed


def _request(key: StreamKey, message: GrpcMessage, method: XdsMethod) -> XdsRequest:
    if method.delta:
        delta = _parse(discovery_pb2.DeltaDiscoveryRequest, message.payload, "request")
        assert isinstance(delta, discovery_pb2.DeltaDiscoveryRequest)
        return XdsRequest(
            stream=key,
            at=message.at,
            delta=True,
            type_url=delta.type_url or method.type_url or "",
            node_id=delta.node.id,
            version_info="",
            resource_names=tuple(delta.resource_names_subscribe),
            unsubscribe=tuple(delta.resource_names_unsubscribe),
            initial_resource_versions=tuple(sorted(delta.initial_resource_versions.items())),
            response_nonce=delta.response_nonce,
            error_detail=delta.error_detail.message if delta.HasField("error_detail") else None,
            node_metadata=_string_metadata(delta.node) if delta.HasField("node") else (),
        )
    sotw = _parse(discovery_pb2.DiscoveryRequest, message.payload, "request")
    assert isinstance(sotw, discovery_pb2.DiscoveryRequest)
    return XdsRequest(
        stream=key,
        at=message.at,
        delta=False,
        type_url=sotw.type_url or method.type_url or "",
        node_id=sotw.node.id,
        version_info=sotw.version_info,
        resource_names=tuple(sotw.resource_names),
        unsubscribe=(),
        initial_resource_versions=(),
        response_nonce=sotw.response_nonce,
        error_detail=sotw.error_detail.message if sotw.HasField("error_detail") else None,
        node_metadata=_string_metadata(sotw.node) if sotw.HasField("node") else (),
    )


def _string_metadata(node: base_pb2.Node) -> tuple[tuple[str, str], ...]:
    fields = node.metadata.fields
    return tuple(
        sorted(
            (name, value.string_value)
            for name, value in fields.items()
            if value.WhichOneof("kind") == "string_value"
        )
    )


def _response(key: StreamKey, message: GrpcMessage, method: XdsMethod) -> XdsResponse:
    if method.delta:
        delta = _parse(discovery_pb2.DeltaDiscoveryResponse, message.payload, "response")
        assert isinstance(delta, discovery_pb2.DeltaDiscoveryResponse)
        type_url = delta.type_url or method.type_url or ""
        return XdsResponse(
            stream=key,
            at=message.at,
            delta=True,
            type_url=type_url,
            version_info=delta.system_version_info,
            nonce=delta.nonce,
            resources=tuple(_delta_resource(type_url, each) for each in delta.resources),
            removed=tuple(delta.removed_resources),
        )
    sotw = _parse(discovery_pb2.DiscoveryResponse, message.payload, "response")
    assert isinstance(sotw, discovery_pb2.DiscoveryResponse)
    type_url = sotw.type_url or method.type_url or ""
    return XdsResponse(
        stream=key,
        at=message.at,
        delta=False,
        type_url=type_url,
        version_info=sotw.version_info,
        nonce=sotw.nonce,
        resources=tuple(
            _sotw_resource(type_url, sotw.version_info, each) for each in sotw.resources
        ),
        removed=(),
    )


def _resource_message(type_url: str, packed: any_pb2.Any) -> Message:
    """Parse a packed resource of the response's type; anything else is undecodable."""
    if packed.type_url != type_url:
        raise _Undecodable(f"a {packed.type_url!r} resource in a {type_url!r} response")
    message_class = _MESSAGE_CLASSES.get(type_url)
    if message_class is None:
        raise _Undecodable(f"unsupported resource type {type_url!r}")
    return _parse(message_class, packed.value, f"a {TYPE_SHORT[type_url]} resource")


def _sotw_resource(type_url: str, version: str, packed: any_pb2.Any) -> WireResource:
    parsed = _resource_message(type_url, packed)
    name = str(getattr(parsed, _NAME_FIELDS.get(type_url, "name")))
    return WireResource(name=name, version=version, body=packed.value, type_url=type_url)


def _delta_resource(type_url: str, resource: discovery_pb2.Resource) -> WireResource:
    body: bytes | None = None
    if resource.HasField("resource"):
        _resource_message(type_url, resource.resource)
        body = resource.resource.value
    return WireResource(name=resource.name, version=resource.version, body=body, type_url=type_url)


# -- references ------------------------------------------------------------------------------


def references(resource: WireResource) -> References:
    """The names `resource` makes the client depend on (parsed on first use, then remembered).

    Listener: each HttpConnectionManager's `rds.route_config_name` (routes) and the clusters
    of an inline route_config, in every filter chain and the default one; the SDS names of its
    TLS transport sockets (secrets). RouteConfiguration: every route's cluster and weighted
    clusters (clusters). Cluster: its ClusterLoadAssignment when it is an EDS cluster
    (`eds_cluster_config.service_name`, else its own name) and its TLS SDS names (secrets).
    """
    if resource.body is None:
        return References()
    return _references(resource.type_url, resource.body)


@functools.lru_cache(maxsize=8192)
def _references(type_url: str, body: bytes) -> References:
    if type_url == LISTENER:
        listener = listener_pb2.Listener.FromString(body)
        return _listener_references(listener)
    if type_url == ROUTE:
        route_config = route_pb2.RouteConfiguration.FromString(body)
        return References(clusters=frozenset(_route_clusters(route_config)))
    if type_url == CLUSTER:
        cluster = cluster_pb2.Cluster.FromString(body)
        return _cluster_references(cluster)
    return References()


def _listener_references(listener: listener_pb2.Listener) -> References:
    routes: set[str] = set()
    clusters: set[str] = set()
    secrets: set[str] = set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        secrets.update(_chain_secrets(chain))
        for network_filter in chain.filters:
            if network_filter.typed_config.type_url != _HCM:
                continue
            manager = hcm_pb2.HttpConnectionManager.FromString(network_filter.typed_config.value)
            if manager.HasField("rds"):
                routes.add(manager.rds.route_config_name)
            elif manager.HasField("route_config"):
                clusters.update(_route_clusters(manager.route_config))
    return References(
        routes=frozenset(routes), clusters=frozenset(clusters), secrets=frozenset(secrets)
    )


def _chain_secrets(chain: listener_components_pb2.FilterChain) -> Iterable[str]:
    if not chain.HasField("transport_socket"):
        return ()
    packed = chain.transport_socket.typed_config
    if packed.type_url != _DOWNSTREAM_TLS:
        return ()
    tls = tls_pb2.DownstreamTlsContext.FromString(packed.value)
    names = list(_common_tls_secrets(tls.common_tls_context))
    if tls.HasField("session_ticket_keys_sds_secret_config"):
        names.append(tls.session_ticket_keys_sds_secret_config.name)
    return names


def _common_tls_secrets(common: tls_pb2.CommonTlsContext) -> Iterable[str]:
    yield from (config.name for config in common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        yield common.validation_context_sds_secret_config.name
    combined = common.combined_validation_context
    if common.HasField("combined_validation_context") and combined.HasField(
        "validation_context_sds_secret_config"
    ):
        yield combined.validation_context_sds_secret_config.name


def _route_clusters(route_config: route_pb2.RouteConfiguration) -> Iterable[str]:
    for virtual_host in route_config.virtual_hosts:
        for route in virtual_host.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.HasField("cluster"):
                yield action.cluster
            elif action.HasField("weighted_clusters"):
                yield from (weighted.name for weighted in action.weighted_clusters.clusters)


def _cluster_references(cluster: cluster_pb2.Cluster) -> References:
    endpoints: frozenset[str] = frozenset()
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        endpoints = frozenset([cluster.eds_cluster_config.service_name or cluster.name])
    secrets: set[str] = set()
    sockets = [match.transport_socket for match in cluster.transport_socket_matches]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    for socket in sockets:
        if socket.typed_config.type_url == _UPSTREAM_TLS:
            tls = tls_pb2.UpstreamTlsContext.FromString(socket.typed_config.value)
            secrets.update(_common_tls_secrets(tls.common_tls_context))
    return References(endpoints=endpoints, secrets=frozenset(secrets))
