"""Small, explicit Envoy resources for checks that run below the translator (smoke, xDS tests)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from google.protobuf.message import Message

__all__ = [
    "ads_config_source",
    "eds_cluster",
    "http_listener",
    "load_assignment",
    "route_configuration",
]


def _packed(message: Message) -> any_pb2.Any:
    wrapped = any_pb2.Any()
    wrapped.Pack(message)
    return wrapped


def ads_config_source(initial_fetch_timeout: float | None = None) -> config_source_pb2.ConfigSource:
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )
    if initial_fetch_timeout is not None:
        source.initial_fetch_timeout.FromNanoseconds(int(initial_fetch_timeout * 1e9))
    return source


def http_listener(
    name: str,
    route_config_name: str | None,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    inline_status: int = 500,
    initial_fetch_timeout: float | None = None,
) -> listener_pb2.Listener:
    """An HTTP listener whose HCM uses RDS over ADS, or (name None) an inline direct response."""
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name.replace("/", "_"))
    if route_config_name is None:
        inline = manager.route_config
        inline.name = f"{name}/inline"
        host = inline.virtual_hosts.add(name="inline", domains=["*"])
        route = host.routes.add()
        route.match.prefix = "/"
        route.direct_response.status = inline_status
    else:
        manager.rds.route_config_name = route_config_name
        manager.rds.config_source.CopyFrom(ads_config_source(initial_fetch_timeout))
    manager.http_filters.add(
        name="envoy.filters.http.router", typed_config=_packed(router_pb2.Router())
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_packed(manager),
                    )
                ]
            )
        ],
    )


def route_configuration(
    name: str,
    virtual_hosts: Sequence[tuple[str, Iterable[tuple[str, str]]]],
    *,
    response_headers: Iterable[tuple[str, str]] = (),
) -> route_pb2.RouteConfiguration:
    """`virtual_hosts`: (domain, [(path prefix, cluster)]) in order; clusters must exist."""
    config = route_pb2.RouteConfiguration(name=name, ignore_port_in_host_matching=True)
    config.validate_clusters.value = True
    for domain, routes in virtual_hosts:
        host = config.virtual_hosts.add(name=f"{name}/{domain}", domains=[domain])
        for prefix, cluster_name in routes:
            route = host.routes.add(name=f"{name}/{domain}{prefix}")
            route.match.prefix = prefix
            route.route.cluster = cluster_name
        for header_name, value in response_headers:
            header = host.response_headers_to_add.add()
            header.header.key = header_name
            header.header.value = value
    return config


def eds_cluster(
    name: str, *, connect_timeout: float = 0.25, initial_fetch_timeout: float | None = None
) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.eds_cluster_config.eds_config.CopyFrom(ads_config_source(initial_fetch_timeout))
    cluster.eds_cluster_config.service_name = name
    cluster.connect_timeout.FromNanoseconds(int(connect_timeout * 1e9))
    return cluster


def load_assignment(
    cluster_name: str, endpoints: Iterable[tuple[str, int]]
) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    locality = assignment.endpoints.add()
    for host, port in endpoints:
        locality.lb_endpoints.add().endpoint.address.socket_address.CopyFrom(
            address_pb2.SocketAddress(address=host, port_value=port)
        )
    return assignment
