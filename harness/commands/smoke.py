"""`harness smoke`: the xDS server, two echo backends and real Envoy, end to end, in one mode.

One listener with two virtual hosts (a.example, b.example) on two clusters; each Host must reach
its own backend; then an update swaps the backends and each Host must follow. Also measures
Envoy's start time and push-to-ACK latency through our own code.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyError, EnvoyProcess, XdsMode
from harness.loopback.echo import EchoFleet, EchoReply
from harness.loopback.envoy_resources import (
    eds_cluster,
    http_listener,
    load_assignment,
    route_configuration,
)
from harness.loopback.probe import probe
from sut.xds import Snapshot, SnapshotCache, XdsServer

__all__ = ["SmokeFailed", "run_smoke"]

NODE_ID = "routeproof-smoke"
LISTENER = "smoke"
ROUTES = "smoke-routes"


class SmokeFailed(Exception):
    """A smoke check did not hold; the message says which and why."""


def _snapshot(fleet: EchoFleet, a_service: str, b_service: str) -> Snapshot:
    messages: list[object] = [
        http_listener(LISTENER, ROUTES, initial_fetch_timeout=2.0),
        route_configuration(
            ROUTES,
            [
                ("a.example", [("/", f"cluster-{a_service}")]),
                ("b.example", [("/", f"cluster-{b_service}")]),
            ],
        ),
    ]
    for service in ("a", "b"):
        messages.append(eds_cluster(f"cluster-{service}", initial_fetch_timeout=2.0))
        messages.append(load_assignment(f"cluster-{service}", fleet.endpoints("smoke", service)))
    return Snapshot.from_messages(messages)  # type: ignore[arg-type]


def run_smoke(mode: XdsMode, say: Callable[[str], None] = print) -> dict[str, float]:
    """Run the smoke check; returns the measurements, raises SmokeFailed on the first failure."""
    measurements: dict[str, float] = {}
    cache = SnapshotCache()
    with XdsServer(cache) as server, EchoFleet() as fleet:
        fleet.scale("smoke", "a", 1)
        fleet.scale("smoke", "b", 1)
        first = _snapshot(fleet, "a", "b")
        cache.set_snapshot(NODE_ID, first)
        ads = AdsServer("127.0.0.1", server.port, mode=mode, initial_fetch_timeout=2.0)
        envoy = EnvoyProcess(EnvoyBootstrap(node_id=NODE_ID, ads=ads))
        try:
            started = time.monotonic()
            try:
                envoy.start()
                envoy.wait_ready(10)
            except EnvoyError as error:
                raise SmokeFailed(f"Envoy did not become ready: {error}") from error
            measurements["envoy_start_ms"] = (time.monotonic() - started) * 1000
            say(f"envoy: ready in {measurements['envoy_start_ms']:.1f} ms ({mode} ADS)")
            if not server.wait_converged(NODE_ID, first.version, 5):
                raise SmokeFailed("Envoy did not ACK the first snapshot within 5 s")
            _check_hosts(envoy, {"a.example": "a", "b.example": "b"}, say)
            swapped = _snapshot(fleet, "b", "a")
            pushed = time.monotonic()
            cache.set_snapshot(NODE_ID, swapped)
            if not server.wait_converged(NODE_ID, swapped.version, 5):
                raise SmokeFailed("Envoy did not ACK the swapped snapshot within 5 s")
            measurements["push_to_ack_ms"] = (time.monotonic() - pushed) * 1000
            say(f"xds: update ACKed in {measurements['push_to_ack_ms']:.2f} ms")
            _check_hosts(envoy, {"a.example": "b", "b.example": "a"}, say)
        finally:
            envoy.stop()
    return measurements


def _check_hosts(envoy: EnvoyProcess, expected: dict[str, str], say: Callable[[str], None]) -> None:
    ((address, port),) = envoy.admin.listener_ports()[LISTENER]
    for host, service in expected.items():
        result = probe(address, port, host, "/")
        if result.status != 200:
            raise SmokeFailed(
                f"{host}: expected 200 from {service}, got {result.status or result.error}"
            )
        reply = EchoReply.from_json(result.body)
        if reply.service != service:
            raise SmokeFailed(f"{host}: expected backend {service}, answered by {reply.pod}")
        say(f"check: {host} -> {reply.pod} (200) ok")
