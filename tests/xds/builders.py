"""Small hand-built Envoy resources and client requests for the sans-IO xDS tests."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.rpc import status_pb2

from sut.xds import Resource, ResourceType, Snapshot

NODE = "node-1"


def packed(message: object) -> any_pb2.Any:
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped


def ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def listener(
    name: str, route_config_name: str | None, inline_status: int = 500
) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    if route_config_name is None:
        inline = manager.route_config
        inline.name = "inline"
        host = inline.virtual_hosts.add(name="error", domains=["*"])
        route = host.routes.add()
        route.match.prefix = "/"
        route.direct_response.status = inline_status
    else:
        manager.rds.route_config_name = route_config_name
        manager.rds.config_source.CopyFrom(ads_source())
    manager.http_filters.add(
        name="envoy.filters.http.router", typed_config=packed(router_pb2.Router())
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=0)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=packed(manager),
                    )
                ]
            )
        ],
    )


def route_configuration(
    name: str, *clusters: str, marker: str = ""
) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name=name)
    host = config.virtual_hosts.add(name=f"{name}/host", domains=["*"])
    for index, cluster_name in enumerate(clusters):
        route = host.routes.add(name=f"{name}/{index}")
        route.match.prefix = f"/{cluster_name}"
        route.route.cluster = cluster_name
    if marker:
        header = host.response_headers_to_add.add()
        header.header.key = "x-marker"
        header.header.value = marker
    return config


def cluster(name: str, connect_timeout_ms: int = 250) -> cluster_pb2.Cluster:
    built = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    built.eds_cluster_config.eds_config.CopyFrom(ads_source())
    built.eds_cluster_config.service_name = name
    built.connect_timeout.FromMilliseconds(connect_timeout_ms)
    return built


def load_assignment(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    locality = assignment.endpoints.add()
    for port in ports:
        locality.lb_endpoints.add().endpoint.address.socket_address.CopyFrom(
            address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        )
    return assignment


def world(
    routes: dict[str, tuple[str, ...]],
    *,
    listeners: dict[str, str | None] | None = None,
    endpoints: dict[str, tuple[int, ...]] | None = None,
    cluster_timeouts: dict[str, int] | None = None,
    marker: str = "",
) -> Snapshot:
    """A consistent snapshot: route configs naming clusters, one listener per route config."""
    listeners = listeners if listeners is not None else {f"L-{name}": name for name in routes}
    cluster_names = sorted({c for clusters in routes.values() for c in clusters})
    endpoints = endpoints or {}
    cluster_timeouts = cluster_timeouts or {}
    messages: list[object] = []
    messages += [listener(name, rds) for name, rds in listeners.items()]
    messages += [
        route_configuration(name, *clusters, marker=marker) for name, clusters in routes.items()
    ]
    messages += [cluster(name, cluster_timeouts.get(name, 250)) for name in cluster_names]
    messages += [load_assignment(name, *endpoints.get(name, (8000,))) for name in cluster_names]
    return Snapshot.from_messages(messages)  # type: ignore[arg-type]


def resource(message: object) -> Resource:
    return Resource.from_message(message)  # type: ignore[arg-type]


def node_of(node_id: str, metadata: dict[str, object] | None = None) -> base_pb2.Node:
    """A `Node`; `metadata` becomes its Struct (the harness puts an instance id there)."""
    node = base_pb2.Node(id=node_id)
    if metadata is not None:
        node.metadata.CopyFrom(struct_pb2.Struct())
        node.metadata.update(metadata)
    return node


def sotw_request(
    kind: ResourceType,
    names: Iterable[str] = (),
    *,
    nonce: str = "",
    version: str = "",
    error: str | None = None,
    node: str = NODE,
    metadata: dict[str, object] | None = None,
) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=kind.type_url,
        resource_names=list(names),
        response_nonce=nonce,
        version_info=version,
        node=node_of(node, metadata),
    )
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


def delta_request(
    kind: ResourceType,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    *,
    nonce: str = "",
    error: str | None = None,
    initial: dict[str, str] | None = None,
    node: str = NODE,
    metadata: dict[str, object] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=kind.type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=initial or {},
        node=node_of(node, metadata),
    )
    if error is not None:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


def names_of(response: object) -> list[str]:
    """Resource names carried by a SotW or Delta response."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sorted(r.name for r in response.resources)
    assert isinstance(response, discovery_pb2.DiscoveryResponse)
    kind = ResourceType.from_type_url(response.type_url)
    names = []
    for packed_resource in response.resources:
        message = kind.message_class()
        packed_resource.Unpack(message)
        names.append(getattr(message, "cluster_name" if kind is ResourceType.ENDPOINT else "name"))
    return sorted(names)


def type_of(response: object) -> ResourceType:
    return ResourceType.from_type_url(response.type_url)  # type: ignore[attr-defined]
