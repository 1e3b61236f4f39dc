"""Stage 2 for proxyless gRPC clients: IR (+ Services and endpoints) -> their xDS resources.

A proxyless client (gRPC's built-in xDS client) dials `xds:///<host>` and fetches the Listener
named `<host>`, so every concrete hostname the HTTP listeners serve becomes an API listener whose
RouteConfiguration (over RDS, on ADS) is the virtual host Envoy would pick for that Host: the one
with exactly that domain. Rules of this stage, each a gRPC-aware choice (gRFC A28 and gRPC's RDS
parser):

1. Only HTTP Gateway listeners are published (proxyless clients dial pods in plaintext). A
   hostname served on several ports, or by several Gateways, takes the virtual host of the first
   in (Gateway, port) order.
2. Wildcard (`*.example.com`) and catch-all (`*`) virtual hosts get no listener: a client can
   only ask for a name it knows, and a name covered only by a wildcard is not known here. A
   client dialling such a name waits for a Listener that never comes ("does not exist").
3. Routes keep Envoy's order and names, so a gRPC call matches the route Envoy would. gRPC
   paths are always `/service/method` and calls always POST without a query, so: PathPrefix
   `/a` becomes `prefix: "/a/"`, PathPrefix `/a/b` the exact path, a longer prefix cannot
   match and is dropped (gRPC NACKs `path_separated_prefix`); a route matching a method other
   than POST, or query parameters, is dropped; `:method` POST is dropped from the match.
4. Redirects and direct responses (the invalid-backend 500 share too) stay: gRPC fails RPCs
   matching a non-forwarding route with UNAVAILABLE, as Envoy's answer fails a gRPC call. A path
   rewrite cannot be followed (gRPC ignores rewrites and would call the method the route meant to
   change), so that route answers 500 instead; a hostname rewrite and header mutations are
   dropped (gRPC ignores them; the authority stays the target).
5. Clusters are EDS with ROUND_ROBIN: gRPC NACKs Envoy's LEAST_REQUEST and RANDOM, so a
   BackendTrafficPolicy asking for them (and the default, LEAST_REQUEST) publishes ROUND_ROBIN.
6. Endpoints are those of the Service's gRPC port, whatever port the backendRef names: the port
   named `grpc` or, failing that, the lowest one named `grpc-*` (the Istio naming convention).
   A Service without one gives its clusters no endpoints. Every ClusterLoadAssignment has one
   locality with a zone and a weight, or gRPC NACKs it or ignores its endpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message

from sut.gatewayapi import Endpoint, ObjectKey, Resources, ServicePort
from sut.translate.envoy_protos import ads_config_source, packed, router_filter
from sut.translate.ir import (
    IR,
    Cluster,
    DirectResponse,
    Forward,
    HeaderMutation,
    Route,
    RouteConfig,
    StringMatch,
    VirtualHost,
)
from sut.translate.xds import ResourceLookups
from sut.translate.xds_routes import route_configuration

__all__ = ["LOCALITY_ZONE", "ProxylessResources", "grpc_port", "to_proxyless"]

LOCALITY_ZONE = "routeproof"
"""The zone of the one locality of every ClusterLoadAssignment (gRPC needs one)."""

_PATH_REWRITE_STATUS = 500


@attrs.frozen
class ProxylessResources(ResourceLookups):
    """What proxyless gRPC clients get, each tuple sorted by name; read-only protobufs."""

    listeners: tuple[listener_pb2.Listener, ...] = ()
    route_configurations: tuple[route_pb2.RouteConfiguration, ...] = ()
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    cluster_load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...] = ()

    def messages(self) -> Iterator[Message]:
        """All resources in make-before-break (ADS) order: CDS, EDS, LDS, RDS."""
        yield from self.clusters
        yield from self.cluster_load_assignments
        yield from self.listeners
        yield from self.route_configurations


def to_proxyless(
    ir: IR, resources: Resources, gateway: ObjectKey | None = None
) -> ProxylessResources:
    """The resources for proxyless clients of `gateway` (None: of every Gateway in the IR)."""
    hosts: dict[str, VirtualHost] = {}
    listeners = sorted(
        (item for item in ir.listeners if item.protocol == "HTTP"),
        key=lambda item: (item.gateway, item.port),
    )
    for item in listeners:
        if gateway is not None and item.gateway != gateway:
            continue
        for chain in item.filter_chains:  # an HTTP listener has one
            for host in chain.route_config.virtual_hosts:
                if "*" not in host.domain:
                    hosts.setdefault(host.domain, host)
    routes = {name: _grpc_virtual_host(host) for name, host in hosts.items()}
    used = sorted(
        {
            backend.cluster
            for host in routes.values()
            for route in host.routes
            if isinstance(route.action, Forward)
            for backend in route.action.backends
        }
    )
    clusters = {item.name: item for item in ir.clusters}
    return ProxylessResources(
        listeners=tuple(_api_listener(name, hosts[name].name) for name in sorted(hosts)),
        route_configurations=tuple(
            sorted(
                (_route_configuration(name, host) for name, host in routes.items()),
                key=lambda item: item.name,
            )
        ),
        clusters=tuple(_cluster(name) for name in used),
        cluster_load_assignments=tuple(
            _load_assignment(name, _grpc_endpoints(clusters[name], resources)) for name in used
        ),
    )


def grpc_port(ports: tuple[ServicePort, ...]) -> ServicePort | None:
    """The Service port proxyless clients dial: named `grpc`, else the lowest named `grpc-*`."""
    tcp = sorted((port for port in ports if port.protocol == "TCP"), key=lambda p: p.port)
    named = [port for port in tcp if port.name == "grpc"]
    named += [port for port in tcp if (port.name or "").startswith("grpc-")]
    return named[0] if named else None


# --------------------------------------------------------------------------- routes


def _grpc_virtual_host(host: VirtualHost) -> VirtualHost:
    """`host` with only what a gRPC call can match and follow (rules 3 and 4)."""
    routes = tuple(
        grpc_route for route in host.routes if (grpc_route := _grpc_route(route)) is not None
    )
    return attrs.evolve(host, routes=routes)


def _grpc_route(route: Route) -> Route | None:
    match = route.match
    if match.query_params or match.method not in (None, "POST"):
        return None  # a gRPC call has no query and is always a POST
    path = match.path
    if path.kind == "PathPrefix":
        segments = [part for part in path.value.split("/") if part]
        if len(segments) > 2:
            return None
        if len(segments) == 2:
            path = StringMatch("Exact", "/" + "/".join(segments))
    action = route.action
    if isinstance(action, Forward):
        if action.rewrite_path is not None:
            action = DirectResponse(_PATH_REWRITE_STATUS)
        else:
            action = attrs.evolve(
                action,
                rewrite_hostname=None,
                backends=tuple(
                    attrs.evolve(
                        b, request_headers=HeaderMutation(), response_headers=HeaderMutation()
                    )
                    for b in action.backends
                ),
            )
    return attrs.evolve(
        route,
        match=attrs.evolve(match, path=path, method=None),
        action=action,
        request_headers=HeaderMutation(),
        response_headers=HeaderMutation(),
    )


def _route_configuration(hostname: str, host: VirtualHost) -> route_pb2.RouteConfiguration:
    """Stage 2's routes for one virtual host named after `hostname`, prefixes spelt for gRPC."""
    domain_host = attrs.evolve(host, domain=hostname)
    # validate_clusters is an Envoy check gRPC does not make.
    config = route_configuration(
        RouteConfig(name=host.name, virtual_hosts=(domain_host,)), validate_clusters=False
    )
    for virtual_host in config.virtual_hosts:
        for route in virtual_host.routes:
            if route.match.HasField("path_separated_prefix"):
                route.match.prefix = route.match.path_separated_prefix + "/"
    return config


def _api_listener(hostname: str, route_config: str) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=hostname,
        rds=hcm_pb2.Rds(route_config_name=route_config, config_source=ads_config_source()),
        http_filters=[router_filter()],
    )
    return listener_pb2.Listener(
        name=hostname, api_listener=api_listener_pb2.ApiListener(api_listener=packed(manager))
    )


# --------------------------------------------------------------------------- clusters


def _cluster(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=name
        ),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )


def _grpc_endpoints(cluster: Cluster, resources: Resources) -> tuple[Endpoint, ...]:
    service = resources.service(cluster.service.namespace, cluster.service.name)
    port = grpc_port(service.ports) if service is not None else None
    if port is None:
        return ()
    return resources.service_endpoints(cluster.service.namespace, cluster.service.name, port.port)


def _load_assignment(
    name: str, endpoints: tuple[Endpoint, ...]
) -> endpoint_pb2.ClusterLoadAssignment:
    result = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    if endpoints:
        result.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(zone=LOCALITY_ZONE),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=address_pb2.Address(
                                socket_address=address_pb2.SocketAddress(
                                    address=endpoint.address, port_value=endpoint.port
                                )
                            )
                        )
                    )
                    for endpoint in endpoints
                ],
            )
        )
    return result
