"""Stage 2: IR -> Envoy protos (xds-protos), named as Envoy Gateway names them.

Pure and deterministic: equal IR gives byte-equal serializations. Listeners load their
RouteConfigurations over RDS and clusters their endpoints over EDS, HTTPS certificates over SDS,
all on the ADS stream, or each on a stream of its own with the "per-type" transport. The
readiness listener is built here too, with an inline route configuration, so error handling
elsewhere can recognise and leave it alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from sut.translate.envoy_protos import (
    config_source,
    connection_manager_filter,
    packed,
    router_filter,
)
from sut.translate.ir import (
    IR,
    Cluster,
    FilterChain,
    IRListener,
    TLSCertificate,
)
from sut.translate.options import TranslateOptions
from sut.translate.xds_routes import INVALID_BACKEND_ROUTE_SUFFIX, route_configuration

__all__ = [
    "INVALID_BACKEND_ROUTE_SUFFIX",
    "XdsResources",
    "readiness_listener_name",
    "to_xds",
]

_LB_POLICIES = {
    "RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
    "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
    "Random": cluster_pb2.Cluster.RANDOM,
}


class ResourceLookups:
    """Find one resource by name in a translation's tuples (Envoy's or proxyless clients')."""

    listeners: tuple[listener_pb2.Listener, ...]
    route_configurations: tuple[route_pb2.RouteConfiguration, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]
    cluster_load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...]

    def listener(self, name: str) -> listener_pb2.Listener | None:
        return next((item for item in self.listeners if item.name == name), None)

    def route_configuration(self, name: str) -> route_pb2.RouteConfiguration | None:
        return next((item for item in self.route_configurations if item.name == name), None)

    def cluster(self, name: str) -> cluster_pb2.Cluster | None:
        return next((item for item in self.clusters if item.name == name), None)

    def cluster_load_assignment(self, name: str) -> endpoint_pb2.ClusterLoadAssignment | None:
        return next(
            (item for item in self.cluster_load_assignments if item.cluster_name == name), None
        )


@attrs.frozen
class XdsResources(ResourceLookups):
    """Every Envoy resource of one translation, each tuple sorted by name.

    The messages are protobufs and therefore mutable: treat them as read-only (copy before
    changing one, as the extension hooks do).
    """

    listeners: tuple[listener_pb2.Listener, ...]
    route_configurations: tuple[route_pb2.RouteConfiguration, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]
    cluster_load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    secrets: tuple[secret_pb2.Secret, ...]
    readiness_listener: str
    """Name of the readiness listener among `listeners`; error handling must leave it alone."""

    def messages(self) -> Iterator[Message]:
        """All resources in make-before-break (ADS) order: CDS, EDS, LDS, RDS, SDS."""
        yield from self.clusters
        yield from self.cluster_load_assignments
        yield from self.listeners
        yield from self.route_configurations
        yield from self.secrets

    def secret(self, name: str) -> secret_pb2.Secret | None:
        return next((item for item in self.secrets if item.name == name), None)


def readiness_listener_name(options: TranslateOptions) -> str:
    return f"envoy-gateway-proxy-ready-{options.bind_address}-{options.readiness_port}"


def to_xds(ir: IR, options: TranslateOptions | None = None) -> XdsResources:
    """Stage 2: Envoy protos for the IR plus the readiness listener."""
    options = options or TranslateOptions()
    listeners = [_listener(item, options) for item in ir.listeners]
    listeners.append(_readiness_listener(options))
    ordered = options.transport == "ads"
    routes = [
        route_configuration(config, validate_clusters=ordered) for config in ir.route_configs()
    ]
    return XdsResources(
        listeners=tuple(sorted(listeners, key=lambda item: item.name)),
        route_configurations=tuple(sorted(routes, key=lambda item: item.name)),
        clusters=tuple(_cluster(item, options) for item in ir.clusters),
        cluster_load_assignments=tuple(_load_assignment(item) for item in ir.clusters),
        secrets=tuple(_secret(item) for item in ir.secrets),
        readiness_listener=readiness_listener_name(options),
    )


# --------------------------------------------------------------------------- common pieces


def _socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(
            address=address, port_value=port, protocol=address_pb2.SocketAddress.TCP
        )
    )


# --------------------------------------------------------------------------- listeners


def _loopback_address(item: IRListener) -> str:
    """A stable 127.x.y.z per (Gateway, port): distinct listeners never share an address."""
    digest = hashlib.sha256(f"{item.gateway.namespace}/{item.gateway.name}:{item.port}".encode())
    first, second, third = digest.digest()[:3]
    return f"127.{first}.{second}.{third % 253 + 2}"


def _listener(item: IRListener, options: TranslateOptions) -> listener_pb2.Listener:
    port = 0 if options.bind_port_zero else item.port
    address = _loopback_address(item) if options.loopback_per_listener else options.bind_address
    listener = listener_pb2.Listener(name=item.name, address=_socket_address(address, port))
    prefix = f"{'https' if item.protocol == 'HTTPS' else 'http'}-{item.port}"
    if item.protocol == "HTTP":
        listener.default_filter_chain.CopyFrom(
            _filter_chain(item.filter_chains[0], prefix, options)
        )
    else:
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=packed(tls_inspector_pb2.TlsInspector()),
            )
        )
        for chain in item.filter_chains:
            listener.filter_chains.append(_filter_chain(chain, prefix, options))
    return listener


def _filter_chain(
    chain: FilterChain, stat_prefix: str, options: TranslateOptions
) -> listener_components_pb2.FilterChain:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(
            route_config_name=chain.route_config.name,
            config_source=_config_source(options, options.rds_cluster, timed=True),
        ),
        http_filters=[router_filter()],
    )
    result = listener_components_pb2.FilterChain(
        name=chain.name, filters=[connection_manager_filter(manager)]
    )
    if chain.server_names:
        result.filter_chain_match.server_names.extend(chain.server_names)
    if chain.certificates:
        context = tls_pb2.DownstreamTlsContext(
            common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificate_sds_secret_configs=[
                    secret_pb2.SdsSecretConfig(
                        name=name, sds_config=_config_source(options, options.sds_cluster)
                    )
                    for name in chain.certificates
                ]
            )
        )
        result.transport_socket.CopyFrom(
            base_pb2.TransportSocket(
                name="envoy.transport_sockets.tls", typed_config=packed(context)
            )
        )
    return result


def _readiness_listener(options: TranslateOptions) -> listener_pb2.Listener:
    """Answers GET /ready with 200 while Envoy is live (health_check filter, as Envoy Gateway)."""
    health = health_check_pb2.HealthCheck(
        headers=[
            route_components_pb2.HeaderMatcher(
                name=":path", string_match=string_pb2.StringMatcher(exact="/ready")
            )
        ]
    )
    health.pass_through_mode.CopyFrom(wrappers_pb2.BoolValue(value=False))
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="eg-ready-http",
        route_config=route_pb2.RouteConfiguration(
            name="ready_route",
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="ready_route",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            direct_response=route_components_pb2.DirectResponseAction(status=500),
                        )
                    ],
                )
            ],
        ),
        http_filters=[
            hcm_pb2.HttpFilter(name="envoy.filters.http.health_check", typed_config=packed(health)),
            router_filter(),
        ],
    )
    return listener_pb2.Listener(
        name=readiness_listener_name(options),
        address=_socket_address(options.bind_address, options.readiness_port),
        filter_chains=[
            listener_components_pb2.FilterChain(filters=[connection_manager_filter(manager)])
        ],
    )


# --------------------------------------------------------------------------- clusters, secrets


def _cluster(item: Cluster, options: TranslateOptions) -> cluster_pb2.Cluster:
    """EDS cluster; a BackendTrafficPolicy's settings replace the defaults (LEAST_REQUEST, the
    options' connect timeout), as in Envoy Gateway."""
    timeout = duration_pb2.Duration()
    connect_timeout = item.settings.connect_timeout
    timeout.FromTimedelta(options.connect_timeout if connect_timeout is None else connect_timeout)
    return cluster_pb2.Cluster(
        name=item.name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_config_source(options, options.eds_cluster, timed=True),
            service_name=item.name,
        ),
        connect_timeout=timeout,
        lb_policy=_LB_POLICIES[item.settings.load_balancer or "LeastRequest"],
    )


def _config_source(
    options: TranslateOptions, cluster: str, *, timed: bool = False
) -> config_source_pb2.ConfigSource:
    """RDS and EDS sources carry the options' initial fetch timeout; SDS sources Envoy's."""
    return config_source(
        options.transport,
        mode=options.per_type_mode,
        cluster=cluster,
        initial_fetch_timeout=options.initial_fetch_timeout if timed else None,
        retry=options.per_type_retry,
    )


def _load_assignment(item: Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    result = endpoint_pb2.ClusterLoadAssignment(cluster_name=item.name)
    if item.endpoints:
        result.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=_socket_address(endpoint.address, endpoint.port)
                        )
                    )
                    for endpoint in item.endpoints
                ]
            )
        )
    return result


def _secret(item: TLSCertificate) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=item.name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=item.certificate_chain),
            private_key=base_pb2.DataSource(inline_bytes=item.private_key),
        ),
    )
