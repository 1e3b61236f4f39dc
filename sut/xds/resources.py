"""xDS resource types, ADS order, and resources as immutable values.

A `Resource` holds the deterministic serialization of one Envoy message plus the names of the
resources it references. Its version is a hash of its content, so two resources are equal exactly
when they would configure Envoy the same way, and publishing equal content is a no-op.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Iterator

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

__all__ = [
    "ADS_ORDER",
    "References",
    "Resource",
    "ResourceType",
]

_PREFIX = "type.googleapis.com/"


class ResourceType(enum.Enum):
    """The five xDS types this control plane serves, in make-before-break (ADS) order."""

    CLUSTER = "envoy.config.cluster.v3.Cluster"
    ENDPOINT = "envoy.config.endpoint.v3.ClusterLoadAssignment"
    LISTENER = "envoy.config.listener.v3.Listener"
    ROUTE = "envoy.config.route.v3.RouteConfiguration"
    SECRET = "envoy.extensions.transport_sockets.tls.v3.Secret"

    @property
    def type_url(self) -> str:
        return _PREFIX + self.value

    @property
    def short_name(self) -> str:
        """The name engineers use in logs: CDS, EDS, LDS, RDS, SDS."""
        return _SHORT_NAMES[self]

    @property
    def is_wildcard_type(self) -> bool:
        """LDS and CDS are state-of-the-world sets: absence from a response means deletion."""
        return self in (ResourceType.LISTENER, ResourceType.CLUSTER)

    @property
    def message_class(self) -> type[Message]:
        return _MESSAGE_CLASSES[self]

    @classmethod
    def from_type_url(cls, type_url: str) -> ResourceType:
        for member in cls:
            if member.type_url == type_url:
                return member
        raise ValueError(f"unsupported xDS type_url {type_url!r}")

    @classmethod
    def from_short_name(cls, short_name: str) -> ResourceType:
        for member in cls:
            if member.short_name == short_name.upper():
                return member
        raise ValueError(f"unknown xDS type {short_name!r}")


_SHORT_NAMES = {
    ResourceType.CLUSTER: "CDS",
    ResourceType.ENDPOINT: "EDS",
    ResourceType.LISTENER: "LDS",
    ResourceType.ROUTE: "RDS",
    ResourceType.SECRET: "SDS",
}

_MESSAGE_CLASSES: dict[ResourceType, type[Message]] = {
    ResourceType.CLUSTER: cluster_pb2.Cluster,
    ResourceType.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    ResourceType.LISTENER: listener_pb2.Listener,
    ResourceType.ROUTE: route_pb2.RouteConfiguration,
    ResourceType.SECRET: secret_pb2.Secret,
}

ADS_ORDER: tuple[ResourceType, ...] = (
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.SECRET,
)


@attrs.frozen
class References:
    """Names of the resources one resource needs, per type, so dependencies are stated once."""

    routes: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()
    endpoints: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()

    def of_type(self, resource_type: ResourceType) -> frozenset[str]:
        # Identity tests, not a dict keyed by the enum: this runs per held resource, per rule.
        if resource_type is ResourceType.ENDPOINT:
            return self.endpoints
        if resource_type is ResourceType.ROUTE:
            return self.routes
        if resource_type is ResourceType.CLUSTER:
            return self.clusters
        if resource_type is ResourceType.SECRET:
            return self.secrets
        return frozenset()


def _content_version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


@attrs.frozen
class Resource:
    """One named xDS resource: serialized content, content-hash version, and what it references."""

    type: ResourceType
    name: str
    body: bytes = attrs.field(repr=False)
    version: str = attrs.field(eq=False)
    references: References = attrs.field(eq=False, repr=False)

    @classmethod
    def from_message(cls, message: Message) -> Resource:
        resource_type = _type_of(message)
        name = _name_of(resource_type, message)
        if not name:
            raise ValueError(f"{resource_type.short_name} resource without a name")
        body = message.SerializeToString(deterministic=True)
        return cls(
            type=resource_type,
            name=name,
            body=body,
            version=_content_version(body),
            references=_references_of(resource_type, message),
        )

    def message(self) -> Message:
        """A fresh, mutable copy of the protobuf message."""
        decoded = self.type.message_class()
        decoded.ParseFromString(self.body)
        return decoded

    def to_any(self) -> any_pb2.Any:
        return any_pb2.Any(type_url=self.type.type_url, value=self.body)

    def relabelled(self, version: str) -> Resource:
        """The same content and references under another version label.

        Only a versioning scheme other than content hashes needs this; it is equal to `self`,
        since equality is content.
        """
        if not version:
            raise ValueError(f"{self.type.short_name} {self.name!r}: a version must not be empty")
        return attrs.evolve(self, version=version)


def _type_of(message: Message) -> ResourceType:
    for resource_type, message_class in _MESSAGE_CLASSES.items():
        if isinstance(message, message_class):
            return resource_type
    raise TypeError(f"not an xDS resource message: {type(message).__name__}")


def _name_of(resource_type: ResourceType, message: Message) -> str:
    field = "cluster_name" if resource_type is ResourceType.ENDPOINT else "name"
    return str(getattr(message, field))


def _references_of(resource_type: ResourceType, message: Message) -> References:
    if resource_type is ResourceType.LISTENER:
        return _listener_references(message)
    if resource_type is ResourceType.ROUTE:
        return References(clusters=frozenset(_route_clusters(message)))
    if resource_type is ResourceType.CLUSTER:
        return _cluster_references(message)
    return References()


def _cluster_references(cluster: cluster_pb2.Cluster) -> References:
    if cluster.type != cluster_pb2.Cluster.EDS:
        return References()
    service_name = cluster.eds_cluster_config.service_name or cluster.name
    return References(endpoints=frozenset({service_name}))


def _listener_references(listener: listener_pb2.Listener) -> References:
    routes: set[str] = set()
    clusters: set[str] = set()
    secrets: set[str] = set()
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        secrets.update(_transport_socket_secrets(chain))
        for network_filter in chain.filters:
            hcm = _unpack_hcm(network_filter.typed_config)
            if hcm is None:
                continue
            if hcm.HasField("rds"):
                routes.add(hcm.rds.route_config_name)
            elif hcm.HasField("route_config"):
                clusters.update(_route_clusters(hcm.route_config))
    return References(
        routes=frozenset(routes), clusters=frozenset(clusters), secrets=frozenset(secrets)
    )


def _unpack_hcm(
    typed_config: any_pb2.Any,
) -> http_connection_manager_pb2.HttpConnectionManager | None:
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    if not typed_config.Is(hcm.DESCRIPTOR):
        return None
    try:
        typed_config.Unpack(hcm)
    except DecodeError:
        return None
    return hcm


def _transport_socket_secrets(chain: listener_pb2.FilterChain) -> Iterator[str]:
    if not chain.HasField("transport_socket"):
        return
    context = tls_pb2.DownstreamTlsContext()
    config = chain.transport_socket.typed_config
    if not config.Is(context.DESCRIPTOR):
        return
    try:
        config.Unpack(context)
    except DecodeError:
        return
    common = context.common_tls_context
    for sds in common.tls_certificate_sds_secret_configs:
        if sds.HasField("sds_config"):
            yield sds.name
    if common.HasField("validation_context_sds_secret_config"):
        sds = common.validation_context_sds_secret_config
        if sds.HasField("sds_config"):
            yield sds.name


def _route_clusters(route_configuration: route_pb2.RouteConfiguration) -> Iterable[str]:
    for virtual_host in route_configuration.virtual_hosts:
        for route in virtual_host.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.HasField("cluster"):
                yield action.cluster
            elif action.HasField("weighted_clusters"):
                for weighted in action.weighted_clusters.clusters:
                    yield weighted.name
            for mirror in action.request_mirror_policies:
                yield mirror.cluster
