"""How long does translating 1,000 HTTPRoutes take? Prints the timing; not a test.

Usage: .venv/bin/python benchmarks/translate_1000_routes.py [routes] [repeats]
"""

from __future__ import annotations

import statistics
import sys
import time

from sut.gatewayapi import (
    BackendRef,
    Endpoint,
    Gateway,
    HeaderMatch,
    HTTPRoute,
    HTTPRouteRule,
    Listener,
    ObjectMeta,
    ParentReference,
    PathMatch,
    Resources,
    RouteMatch,
    Service,
    ServiceEndpoints,
    ServicePort,
)
from sut.translate import build_ir, to_xds, translate


def world(route_count: int) -> Resources:
    gateway = Gateway(
        metadata=ObjectMeta(name="eg", namespace="default"),
        gateway_class_name="eg",
        listeners=(Listener(name="http", port=80, protocol="HTTP"),),
    )
    services = [
        Service(ObjectMeta(name=f"svc-{i}", namespace="default"), (ServicePort(8080),))
        for i in range(50)
    ]
    endpoints = [
        ServiceEndpoints("default", f"svc-{i}", 8080, (Endpoint("127.0.0.1", 20000 + i),))
        for i in range(50)
    ]
    routes = []
    for i in range(route_count):
        routes.append(
            HTTPRoute(
                metadata=ObjectMeta(name=f"route-{i:04d}", namespace="default"),
                parent_refs=(ParentReference(name="eg"),),
                hostnames=(f"host-{i % 100}.example.com",),
                rules=(
                    HTTPRouteRule(
                        matches=(RouteMatch(path=PathMatch("PathPrefix", f"/api/{i}")),),
                        backend_refs=(
                            BackendRef(name=f"svc-{i % 50}", port=8080, weight=90),
                            BackendRef(name=f"svc-{(i + 1) % 50}", port=8080, weight=10),
                        ),
                    ),
                    HTTPRouteRule(
                        matches=(
                            RouteMatch(
                                path=PathMatch("Exact", f"/exact/{i}"),
                                headers=(HeaderMatch("x-version", "v2"),),
                            ),
                        ),
                        backend_refs=(BackendRef(name=f"svc-{i % 50}", port=8080),),
                    ),
                ),
            )
        )
    return Resources(
        gateways=(gateway,), services=services, http_routes=routes, endpoints=endpoints
    )


def main() -> None:
    route_count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    resources = world(route_count)
    stage1, stage2, total = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ir, _statuses = build_ir(resources)
        middle = time.perf_counter()
        to_xds(ir)
        end = time.perf_counter()
        stage1.append(middle - start)
        stage2.append(end - middle)
        start = time.perf_counter()
        result = translate(resources)
        total.append(time.perf_counter() - start)
    routes = sum(
        len(host.routes)
        for config in result.xds.route_configurations
        for host in config.virtual_hosts
    )
    print(f"{route_count} HTTPRoutes -> {routes} Envoy routes, {len(result.xds.clusters)} clusters")
    print(f"build_ir  median {statistics.median(stage1) * 1000:7.1f} ms")
    print(f"to_xds    median {statistics.median(stage2) * 1000:7.1f} ms")
    print(
        f"translate median {statistics.median(total) * 1000:7.1f} ms (min {min(total) * 1000:.1f})"
    )


if __name__ == "__main__":
    main()
