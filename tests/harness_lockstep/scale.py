"""A world with many routes, for measuring the harness at scale (`test_convergence_scale`,
`benchmarks/convergence_10k.py`).

One HTTP Gateway listener; HTTPRoutes of one rule each, every rule with `matches_per_rule`
path matches, over 100 hostnames and a few Services. Envoy Gateway makes a cluster (and a
ClusterLoadAssignment) per rule and a route per match, so `route_count` Envoy routes come with
`route_count / matches_per_rule` clusters: Envoy takes up to ~1 ms to build each cluster here,
which bounds how many a test can afford.
"""

from __future__ import annotations

from sut.gatewayapi import (
    BackendRef,
    Gateway,
    HTTPRoute,
    HTTPRouteRule,
    Listener,
    ObjectMeta,
    ParentReference,
    PathMatch,
    Resources,
    RouteMatch,
    Service,
    ServicePort,
)

__all__ = ["SERVICES", "many_routes"]

SERVICES = tuple(f"svc-{i}" for i in range(4))
"""The Services the routes send to (scale each to give the ClusterLoadAssignments endpoints)."""


def many_routes(route_count: int, matches_per_rule: int = 1) -> Resources:
    """`route_count` Envoy routes (a multiple of `matches_per_rule`, at most 64 per rule)."""
    if route_count % matches_per_rule:
        raise ValueError(f"{route_count} routes are not a multiple of {matches_per_rule}")
    gateway = Gateway(
        metadata=ObjectMeta(name="eg", namespace="default"),
        gateway_class_name="eg",
        listeners=(Listener(name="http", port=80, protocol="HTTP"),),
    )
    services = [
        Service(ObjectMeta(name=name, namespace="default"), (ServicePort(8080),))
        for name in SERVICES
    ]
    routes = [
        HTTPRoute(
            metadata=ObjectMeta(name=f"route-{i:05d}", namespace="default"),
            parent_refs=(ParentReference(name="eg"),),
            hostnames=(f"host-{i % 100}.example.com",),
            rules=(
                HTTPRouteRule(
                    matches=tuple(
                        RouteMatch(path=PathMatch("PathPrefix", f"/api/{i}/{j}"))
                        for j in range(matches_per_rule)
                    ),
                    backend_refs=(BackendRef(name=SERVICES[i % len(SERVICES)], port=8080),),
                ),
            ),
        )
        for i in range(route_count // matches_per_rule)
    ]
    return Resources(gateways=(gateway,), services=services, http_routes=routes)
