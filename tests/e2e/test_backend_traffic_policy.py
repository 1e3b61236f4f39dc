"""Envoy Gateway BackendTrafficPolicy through real Envoy (manifests/backend-traffic-policy.yaml).

Applying the policies to a running stack must change the Clusters Envoy holds (lb_policy,
connect_timeout: read back from its /config_dump), leave the endpoints alone, and never drop a
request: an updated Cluster warms until its ClusterLoadAssignment arrives again while the old
one keeps serving, so every request sent before, during and after the change answers 200 from
the right backend. Removing the policies restores the defaults the same way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.commands.serve import serving
from harness.lockstep.stack import Stack
from harness.loopback.echo import EchoReply
from harness.loopback.probe import ProbeResult, probe
from sut.gatewayapi import ObjectKey, Resources, load_manifests
from tests.e2e.served import MANIFESTS

GATEWAY = ObjectKey("default", "tuned")
STORE = "httproute/default/store/rule/0/backend/default/store/8080"
BLOG = "httproute/default/blog/rule/0/backend/default/blog/8080"
HOSTS = {"store.example.com": "store", "blog.example.com": "blog"}
DEADLINE = 5.0


def _poll(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


class Traffic:
    """Requests to both hosts on fresh connections, back to back, in a thread."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.replies: list[tuple[str, ProbeResult]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for host in HOSTS:
                result = probe(*self.address, host, "/", timeout=2.0)
                with self._lock:
                    self.replies.append((host, result))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.replies)

    def more(self, count: int = 10) -> None:
        """Wait until `count` more replies came back."""
        target = self.count + count
        _poll(lambda: self.count >= target, f"{count} more replies")

    def failures(self) -> list[str]:
        with self._lock:
            replies = list(self.replies)
        problems = []
        for host, result in replies:
            service = None
            if result.status == 200:
                with contextlib.suppress(ValueError):
                    service = EchoReply.from_json(result.body).service
            if service != HOSTS[host]:
                problems.append(f"{host}: {result.status} {result.error or ''} from {service}")
        return problems

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)


def _cluster(stack: Stack, name: str) -> tuple[str, str]:
    """(lb_policy, connect_timeout) as Envoy holds the cluster (JSON omits the 0 enum value)."""
    cluster: dict[str, Any] = stack.envoy_view().active_clusters[name]
    return cluster.get("lb_policy", "ROUND_ROBIN"), cluster["connect_timeout"]


def _apply(stack: Stack, resources: Resources) -> None:
    result = stack.apply(resources)
    assert result.published, result
    convergence = stack.converge()
    assert convergence.converged, convergence.describe()


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_policies_change_the_clusters_envoy_holds_while_traffic_flows(mode: str) -> None:
    tuned = load_manifests(MANIFESTS / "backend-traffic-policy.yaml")
    plain = tuned.without_backend_traffic_policy(
        "default", "gateway-wide"
    ).without_backend_traffic_policy("default", "store-only")
    assert not plain.backend_traffic_policies
    with serving(plain, mode=mode) as stack:
        defaults = ("LEAST_REQUEST", "0.250s")  # the stack's connect_timeout option
        assert {_cluster(stack, STORE), _cluster(stack, BLOG)} == {defaults}
        endpoints = {name: stack.envoy_view().endpoints[name] for name in (STORE, BLOG)}
        assert all(endpoints.values()), endpoints
        address = stack.local_address(80, "HTTP", GATEWAY)
        assert address is not None
        with Traffic(address).running() as traffic:
            traffic.more()

            _apply(stack, tuned)
            assert _cluster(stack, STORE) == ("ROUND_ROBIN", "5s")  # the route's policy wins
            assert _cluster(stack, BLOG) == ("RANDOM", "2s")  # the Gateway's policy
            view = stack.envoy_view()
            assert {name: view.endpoints[name] for name in (STORE, BLOG)} == endpoints
            assert not view.warming_clusters
            traffic.more()

            _apply(stack, plain)
            assert {_cluster(stack, STORE), _cluster(stack, BLOG)} == {defaults}
            traffic.more()
        assert stack.local_address(80, "HTTP", GATEWAY) == address  # listener untouched
        assert traffic.failures() == [], f"{traffic.count} requests"
        assert stack.update_rejections() == {}
        assert stack.init_fetch_timeouts() == {}


def test_policy_status_through_the_control_plane() -> None:
    with serving(load_manifests(MANIFESTS / "backend-traffic-policy.yaml")) as stack:
        assert stack.control_plane is not None
        statuses = stack.control_plane.statuses
        assert statuses is not None
        conditions = {}
        for status in statuses.backend_traffic_policies:
            for ancestor in status.ancestors:
                for condition in ancestor.conditions:
                    conditions[(status.policy.name, condition.type)] = condition.reason
        assert conditions == {
            ("gateway-wide", "Accepted"): "Accepted",
            ("gateway-wide", "Overridden"): "Overridden",
            ("store-only", "Accepted"): "Accepted",
        }
