"""What a proxyless gRPC client's call gets from the snapshot the control plane publishes for it.

Rules (the control plane's proxyless stage, `sut.translate.proxyless`, seen from the caller):
1. Proxyless clients hold the bare translation: no extension marker, never in error (the
   failure policies rewrite Envoy's snapshot only).
2. A hostname gets a Listener when a route serves it concretely on an HTTP Gateway listener
   (an effective hostname without `*`); the lowest such port's virtual host is the one used.
3. A call to `xds:///<host>` with method path `/service/method` is routed as the HTTP request
   (that port, that host, that path) would be: Served -> OK from one of the allowed pods (the
   load balancer is always round robin, so any of them); every other outcome (404 no route, 500,
   503 no healthy endpoint, a redirect or a direct response) fails the call UNAVAILABLE.
4. A hostname without a Listener never resolves: the call runs out its deadline
   (DEADLINE_EXCEEDED), or fails UNAVAILABLE once gRPC's does-not-exist timer fired or the
   Listener it had was withdrawn.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from model.routing import ProxyConfig, Request, Served, effective_hostnames, expected_outcomes
from model.world import World

__all__ = [
    "CallOutcome",
    "GrpcCall",
    "GrpcServed",
    "GrpcStatus",
    "expected_grpc",
    "proxyless_hosts",
    "serving_port",
]

UNAVAILABLE = "UNAVAILABLE"
DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


@attrs.frozen
class GrpcCall:
    host: str
    method: str
    """`/service/method`: gRPC paths always have exactly two segments."""

    def __attrs_post_init__(self) -> None:
        parts = self.method.split("/")
        if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
            raise ValueError(f"not a gRPC method path: {self.method!r}")

    def describe(self) -> str:
        return f"xds:///{self.host}{self.method}"


@attrs.frozen
class GrpcServed:
    service: str
    pod: str

    def describe(self) -> str:
        return f"OK from {self.pod}"


@attrs.frozen
class GrpcStatus:
    code: str
    """A `grpc.StatusCode` name."""

    def describe(self) -> str:
        return self.code


CallOutcome = GrpcServed | GrpcStatus


def serving_port(world: World, host: str) -> int | None:
    """Rule 2: the port of the HTTP listener whose virtual host for `host` is published."""
    for listener in sorted(world.listeners, key=lambda item: item.port):
        if listener.protocol != "HTTP":
            continue
        if any(host in effective_hostnames(route, listener) for route in world.routes):
            return listener.port
    return None


def proxyless_hosts(world: World) -> frozenset[str]:
    """Rule 2: every hostname proxyless clients find a Listener for."""
    return frozenset(
        hostname
        for listener in world.listeners
        if listener.protocol == "HTTP"
        for route in world.routes
        for hostname in effective_hostnames(route, listener)
        if "*" not in hostname
    )


def expected_grpc(
    config: ProxyConfig | None,
    call: GrpcCall,
    live_pods: frozenset[str],
    endpoints: Iterable[World] = (),
) -> frozenset[CallOutcome]:
    """Every outcome the call may get from a client holding `config` (rules 1-4)."""
    port = serving_port(config.world, call.host) if config is not None else None
    if config is None or port is None:
        return frozenset({GrpcStatus(DEADLINE_EXCEEDED), GrpcStatus(UNAVAILABLE)})
    bare = ProxyConfig(config.world)
    request = Request(port, "http", call.host, call.method)
    outcomes: set[CallOutcome] = set()
    for outcome in expected_outcomes(bare, request, live_pods, endpoints):
        if isinstance(outcome, Served):
            outcomes.add(GrpcServed(outcome.service, outcome.pod))
        else:
            outcomes.add(GrpcStatus(UNAVAILABLE))
    return frozenset(outcomes)
