"""The harness's world: a catalogue of listeners, hostnames, paths and Services, and how a model
world becomes the Kubernetes manifests a user would write.

`manifests` writes a world as the YAML a user would apply, and `load_world` reads it back through
the control plane's own loader; `to_resources` builds the same `Resources` directly, as each
operation needs, without a YAML round trip (a test holds the two equal over generated worlds).

The catalogue is small on purpose. It still makes routes overlap in hostnames (exact, wildcard,
none) and path prefixes, puts two HTTPS listeners on one port with SNI (the seed's shape), and
lets a listener disappear and come back under the same name.

With two Gateways (`StackSettings.gateways`), the second (`SECOND_GATEWAY`) has a fixed pair of
listeners (`SECOND_LISTENERS`): an HTTP one on the first Gateway's `http` port, to show that
Gateways on nodes of their own never clash on ports, and an HTTPS one. It comes and goes whole,
and a route may name it among its parentRefs.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterator
from importlib import resources as package_files
from typing import Any

import attrs
import yaml

from model import (
    Backend,
    Gateway,
    GatewayListener,
    HeaderMatch,
    Match,
    Request,
    Route,
    Rule,
    Service,
    World,
)
from sut import gatewayapi
from sut.gatewayapi import Resources, load_manifests

__all__ = [
    "CATALOGUE_ROUTES",
    "FAULTS",
    "GATEWAY",
    "GRPC_PORT",
    "HOOKS",
    "LISTENERS",
    "LOAD_BALANCERS",
    "MAX_ROUTES",
    "NAMESPACE",
    "PROBE_HOSTS",
    "PROBE_PATHS",
    "ROUTE_NAMES",
    "SECOND_GATEWAY",
    "SECOND_LISTENERS",
    "SERVICES",
    "initial_world",
    "load_world",
    "manifests",
    "probe_requests",
    "second_gateway",
    "to_resources",
]

NAMESPACE = "default"
GATEWAY = "gw"
GATEWAY_CLASS = "routeproof"
SERVICE_PORT = 8080
GRPC_PORT = 9090
"""With proxyless gRPC clients, each Service also offers this port, named `grpc` (the one the
proxyless translation dials); its endpoints are the pods' gRPC servers."""
TLS_SECRET = "example-tls"
EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

LISTENERS: dict[str, GatewayListener] = {
    listener.name: listener
    for listener in (
        GatewayListener("http", "HTTP", 8080),
        GatewayListener("http-wild", "HTTP", 8081, "*.example.com"),
        GatewayListener("https-a", "HTTPS", 8443, "a.example.com"),
        GatewayListener("https-b", "HTTPS", 8443, "b.example.com"),
    )
}
SECOND_GATEWAY = "gw-2"
SECOND_LISTENERS = (
    GatewayListener("http", "HTTP", 8080),
    GatewayListener("https", "HTTPS", 8443, "a.example.com"),
)
"""The second Gateway's listeners: its `http` binds the port number the first's does."""
SERVICES = ("svc-a", "svc-b", "svc-c")
MISSING_SERVICE = "svc-missing"
ROUTE_HOSTNAMES = ("a.example.com", "b.example.com", "*.example.com")
ROUTE_PATHS = ("/", "/app", "/app/v1", "/api")
HEADER = HeaderMatch("x-variant", "blue")
LOAD_BALANCERS = ("RoundRobin", "Random", "LeastRequest")
"""Envoy Gateway BackendTrafficPolicy load balancer types: a change rewrites every Cluster but
no endpoint, and never changes which Service answers."""

MAX_ROUTES = 4
ROUTE_NAMES = tuple(f"route-{index}" for index in range(MAX_ROUTES))
FAULTS = ("unavailable", "hang", "internal", "invalid-reject", "invalid-dangling")
"""Extension fault kinds (`sut.extension.Fault`) the harness injects."""
HOOKS = (None, "PostTranslateModify", "PostRouteModify")
"""Where a fault applies: every hook (None) or one of them."""

CATALOGUE_ROUTES: dict[str, Route] = {
    route.name: route
    for route in (
        Route("route-0", 0, (Rule((Match("PathPrefix", "/"),), (Backend("svc-a"),)),)),
        Route(
            "route-1",
            0,
            (Rule((Match("PathPrefix", "/app"),), (Backend("svc-b"),)),),
            hostnames=("b.example.com",),
        ),
        Route(
            "route-2",
            0,
            (Rule((Match("PathPrefix", "/app/v1"),), (Backend("svc-c"),)),),
            hostnames=("*.example.com",),
        ),
        Route(
            "route-3",
            0,
            (Rule((Match("Exact", "/app", (HEADER,)),), (Backend("svc-a"), Backend("svc-c"))),),
            hostnames=("a.example.com", "b.example.com"),
            section="https-a",
        ),
    )
}
"""A route under each name (`created` is set where one is made): route-0 and route-1 are the
initial world's; route-2 overlaps both by wildcard hostname and a longer prefix; route-3 adds a
header match and a second backend on one HTTPS listener only."""

PROBE_HOSTS = ("a.example.com", "b.example.com", "c.example.com", "other.org")
PROBE_PATHS = ("/", "/app", "/app/v1", "/app/v1/x", "/api", "/apix")


def initial_world(pods: dict[str, tuple[str, ...]]) -> World:
    """Where every example starts: three listeners, two routes, three Services."""
    return World(
        listeners=(LISTENERS["http"], LISTENERS["https-a"], LISTENERS["https-b"]),
        routes=(
            CATALOGUE_ROUTES["route-0"],
            attrs.evolve(CATALOGUE_ROUTES["route-1"], created=1),
        ),
        services=tuple(Service(name, pods.get(name, ())) for name in SERVICES),
    )


def second_gateway() -> Gateway:
    return Gateway(SECOND_GATEWAY, SECOND_LISTENERS)


def probe_requests(world: World) -> Iterator[Request]:
    """The requests checked after every step: each port any catalogue listener can have."""
    del world  # every catalogue port is probed, present or not: absence must show too
    for port, scheme in sorted({(item.port, item.protocol.lower()) for item in LISTENERS.values()}):
        for host in PROBE_HOSTS:
            for path in PROBE_PATHS:
                yield Request(port, scheme, host, path)
            yield Request(port, scheme, host, "/app", (("x-variant", "blue"),))


# ------------------------------------------------------------------ manifests


@functools.cache
def _tls_files() -> tuple[str, str]:
    folder = package_files.files("harness.lockstep") / "tls"
    return (folder / "example.crt").read_text(), (folder / "example.key").read_text()


def _metadata(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, **extra}


def _gateways(world: World) -> list[dict[str, Any]]:
    """The first Gateway, then every other one in the store."""
    return [_gateway(world.gateway, world.listeners)] + [
        _gateway(other.name, other.listeners) for other in world.others
    ]


def _gateway(name: str, gateway_listeners: tuple[GatewayListener, ...]) -> dict[str, Any]:
    listeners = []
    for item in gateway_listeners:
        listener: dict[str, Any] = {"name": item.name, "protocol": item.protocol, "port": item.port}
        if item.hostname is not None:
            listener["hostname"] = item.hostname
        if item.protocol == "HTTPS":
            listener["tls"] = {"mode": "Terminate", "certificateRefs": [{"name": TLS_SECRET}]}
        listeners.append(listener)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": _metadata(name),
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners},
    }


def _match(match: Match) -> dict[str, Any]:
    document: dict[str, Any] = {"path": {"type": match.path_kind, "value": match.path}}
    if match.headers:
        document["headers"] = [{"name": h.name, "value": h.value} for h in match.headers]
    return document


def _http_route(route: Route) -> dict[str, Any]:
    parents: list[dict[str, Any]] = []
    for gateway in route.gateways:
        parent: dict[str, Any] = {"name": gateway}
        if route.section is not None:
            parent["sectionName"] = route.section
        parents.append(parent)
    spec: dict[str, Any] = {
        "parentRefs": parents,
        "rules": [
            {
                "matches": [_match(match) for match in rule.matches],
                "backendRefs": [
                    {"name": b.service, "port": SERVICE_PORT, "weight": b.weight}
                    for b in rule.backends
                ],
            }
            for rule in route.rules
        ],
    }
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    created = (EPOCH + datetime.timedelta(seconds=route.created)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(route.name, creationTimestamp=created),
        "spec": spec,
    }


def _backend_traffic_policy(load_balancer: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": _metadata("gateway-tuning"),
        "spec": {
            "targetRefs": [
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY}
            ],
            "loadBalancer": {"type": load_balancer},
        },
    }


def _service_ports(grpc: bool) -> list[dict[str, Any]]:
    if not grpc:
        return [{"port": SERVICE_PORT}]
    return [{"name": "http", "port": SERVICE_PORT}, {"name": "grpc", "port": GRPC_PORT}]


def manifests(world: World, load_balancer: str | None = None, *, grpc: bool = False) -> str:
    """The world as the multi-document YAML a user would apply; `load_balancer` adds a
    Gateway-wide BackendTrafficPolicy (cluster tuning the model need not know about); `grpc`
    gives every Service a `grpc` port beside its HTTP one (for proxyless clients)."""
    certificate, key = _tls_files()
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": GATEWAY_CLASS},
            "spec": {"controllerName": "routeproof.dev/gateway-controller"},
        },
        *_gateways(world),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": _metadata(TLS_SECRET),
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": certificate, "tls.key": key},
        },
    ]
    for service in world.services:
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": _metadata(service.name),
                "spec": {"ports": _service_ports(grpc)},
            }
        )
    documents += [_http_route(route) for route in world.routes]
    if load_balancer is not None:
        documents.append(_backend_traffic_policy(load_balancer))
    return yaml.safe_dump_all(documents, sort_keys=False)


def load_world(world: World, load_balancer: str | None = None, *, grpc: bool = False) -> Resources:
    """The world written as manifests and read by the control plane's real manifest loader."""
    return load_manifests(manifests(world, load_balancer, grpc=grpc))


# ------------------------------------------------------------ direct to Resources


def _meta(name: str, created: datetime.datetime | None = None) -> gatewayapi.ObjectMeta:
    return gatewayapi.ObjectMeta(name=name, namespace=NAMESPACE, creation_timestamp=created)


def _gateway_resources(world: World) -> tuple[gatewayapi.Gateway, ...]:
    others = (_gateway_resource(other.name, other.listeners) for other in world.others)
    return (_gateway_resource(world.gateway, world.listeners), *others)


def _gateway_resource(name: str, listeners: tuple[GatewayListener, ...]) -> gatewayapi.Gateway:
    certificate = gatewayapi.ListenerTLS(
        certificate_refs=(gatewayapi.SecretObjectReference(TLS_SECRET),)
    )
    return gatewayapi.Gateway(
        metadata=_meta(name),
        gateway_class_name=GATEWAY_CLASS,
        listeners=tuple(
            gatewayapi.Listener(
                name=item.name,
                port=item.port,
                protocol=item.protocol,
                hostname=item.hostname,
                tls=certificate if item.protocol == "HTTPS" else None,
            )
            for item in listeners
        ),
    )


def _route_match(match: Match) -> gatewayapi.RouteMatch:
    return gatewayapi.RouteMatch(
        path=gatewayapi.PathMatch(type=match.path_kind, value=match.path),
        headers=tuple(gatewayapi.HeaderMatch(h.name, h.value) for h in match.headers),
    )


def _http_route_resource(route: Route) -> gatewayapi.HTTPRoute:
    return gatewayapi.HTTPRoute(
        metadata=_meta(route.name, EPOCH + datetime.timedelta(seconds=route.created)),
        parent_refs=tuple(
            gatewayapi.ParentReference(gateway, section_name=route.section)
            for gateway in route.gateways
        ),
        hostnames=route.hostnames,
        rules=tuple(
            gatewayapi.HTTPRouteRule(
                matches=tuple(_route_match(match) for match in rule.matches)
                or (gatewayapi.RouteMatch(),),
                backend_refs=tuple(
                    gatewayapi.BackendRef(b.service, port=SERVICE_PORT, weight=b.weight)
                    for b in rule.backends
                ),
            )
            for rule in route.rules
        ),
    )


def _service_port_resources(grpc: bool) -> tuple[gatewayapi.ServicePort, ...]:
    if not grpc:
        return (gatewayapi.ServicePort(SERVICE_PORT),)
    return (
        gatewayapi.ServicePort(SERVICE_PORT, name="http"),
        gatewayapi.ServicePort(GRPC_PORT, name="grpc"),
    )


def to_resources(
    world: World, load_balancer: str | None = None, *, grpc: bool = False
) -> Resources:
    """The world as the control plane's store, built directly: what `load_world` reads from
    `manifests`, without the YAML round trip each operation would otherwise pay."""
    certificate, key = _tls_files()
    policies: tuple[gatewayapi.BackendTrafficPolicy, ...] = ()
    if load_balancer is not None:
        policies = (
            gatewayapi.BackendTrafficPolicy(
                metadata=_meta("gateway-tuning"),
                target_refs=(gatewayapi.PolicyTargetReference(kind="Gateway", name=GATEWAY),),
                load_balancer=load_balancer,
            ),
        )
    return Resources(
        gateway_classes=(
            gatewayapi.GatewayClass(
                gatewayapi.ObjectMeta(name=GATEWAY_CLASS), "routeproof.dev/gateway-controller"
            ),
        ),
        gateways=_gateway_resources(world),
        http_routes=tuple(_http_route_resource(route) for route in world.routes),
        services=tuple(
            gatewayapi.Service(_meta(service.name), ports=_service_port_resources(grpc))
            for service in world.services
        ),
        secrets=(
            gatewayapi.Secret(
                _meta(TLS_SECRET),
                type="kubernetes.io/tls",
                data=(("tls.crt", certificate.encode()), ("tls.key", key.encode())),
            ),
        ),
        backend_traffic_policies=policies,
    )
