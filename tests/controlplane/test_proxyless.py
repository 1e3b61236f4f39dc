"""The control plane publishes a second snapshot for proxyless gRPC clients, and a real one
(gRPC's own xDS client) follows it to real gRPC echo pods: by hostname, across a route change,
and with a LeastRequest policy published as the ROUND_ROBIN it can load."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2

from harness.loopback.grpc_echo import GrpcEchoPod
from harness.loopback.proxyless import ProxylessClient
from sut.controlplane import ControlPlane, ControlPlaneSettings, FailurePolicy, Outcome
from sut.extension import ExtensionClient, ExtensionSettings, Hook, RetryPolicy
from sut.gatewayapi import Endpoint, Resources, ServiceEndpoints, load_manifests
from sut.translate import to_proxyless
from sut.xds import ResourceType, Snapshot, SnapshotCache, XdsServer

ENVOY_NODE = "envoy-gw"
PROXYLESS_NODE = "proxyless-gw"
HOST = "echo.example.com"
HTTP_PORT = 8080
GRPC_PORT = 9090

T = TypeVar("T")


def _until(predicate: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def _world(
    backend: str,
    endpoints: dict[str, tuple[str, int]],
    load_balancer: str | None = None,
    extra_rules: tuple[dict[str, Any], ...] = (),
) -> Resources:
    """Gateway `infra/eg` (HTTP, HOST) and an HTTPRoute sending "/" to `backend`; every Service
    has an HTTP port and a port named `grpc` whose endpoint is its pod's gRPC server."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "eg", "namespace": "infra"},
            "spec": {
                "gatewayClassName": "eg",
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": 80,
                        "hostname": HOST,
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "echo", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "eg", "namespace": "infra"}],
                "hostnames": [HOST],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": backend, "port": HTTP_PORT}],
                    },
                    *extra_rules,
                ],
            },
        },
    ]
    for service in sorted(endpoints):
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": "default"},
                "spec": {
                    "ports": [
                        {"name": "http", "port": HTTP_PORT},
                        {"name": "grpc", "port": GRPC_PORT, "appProtocol": "grpc"},
                    ]
                },
            }
        )
    if load_balancer is not None:
        documents.append(
            {
                "apiVersion": "gateway.envoyproxy.io/v1alpha1",
                "kind": "BackendTrafficPolicy",
                "metadata": {"name": "lb", "namespace": "default"},
                "spec": {
                    "targetRefs": [
                        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "echo"}
                    ],
                    "loadBalancer": {"type": load_balancer},
                },
            }
        )
    resources = load_manifests(yaml.safe_dump_all(documents, sort_keys=False))
    for service, (address, port) in endpoints.items():
        resources = resources.with_endpoints(
            ServiceEndpoints("default", service, GRPC_PORT, (Endpoint(address, port),))
        )
    return resources


@pytest.fixture
def pods() -> Iterator[dict[str, tuple[str, int]]]:
    with (
        GrpcEchoPod("default", "svc-a", "svc-a-0") as a,
        GrpcEchoPod("default", "svc-b", "svc-b-0") as b,
    ):
        yield {"svc-a": a.endpoint, "svc-b": b.endpoint}


def _control_plane(cache: SnapshotCache) -> ControlPlane:
    settings = ControlPlaneSettings(node_id=ENVOY_NODE, proxyless_node_id=PROXYLESS_NODE)
    return ControlPlane(settings, cache)


def test_without_a_proxyless_node_only_envoy_gets_a_snapshot() -> None:
    cache = SnapshotCache()
    plane = ControlPlane(ControlPlaneSettings(node_id=ENVOY_NODE), cache)
    result = plane.start(_world("svc-a", {"svc-a": ("127.0.0.1", 10001)}))
    assert result.outcome is Outcome.PUBLISHED and result.proxyless_version == ""
    assert plane.published_proxyless_snapshot is None


def test_the_proxyless_node_id_must_not_be_envoys() -> None:
    with pytest.raises(ValueError, match="must differ"):
        ControlPlaneSettings(node_id=ENVOY_NODE, proxyless_node_id=ENVOY_NODE)


def test_each_publish_puts_both_snapshots_and_an_equal_one_is_unchanged() -> None:
    cache = SnapshotCache()
    plane = _control_plane(cache)
    world = _world("svc-a", {"svc-a": ("127.0.0.1", 10001)})
    first = plane.start(world)
    assert first.outcome is Outcome.PUBLISHED
    proxyless = plane.published_proxyless_snapshot
    assert proxyless is not None and proxyless.version == first.proxyless_version
    envoy = plane.published_snapshot
    assert envoy is not None and envoy.version == first.snapshot_version != proxyless.version
    assert plane.apply(world).outcome is Outcome.UNCHANGED
    # Only the gRPC endpoints change: Envoy's snapshot stays, the proxyless one moves.
    moved = plane.apply(_world("svc-a", {"svc-a": ("127.0.0.1", 10002)}))
    assert moved.outcome is Outcome.PUBLISHED
    assert moved.snapshot_version == first.snapshot_version
    assert moved.proxyless_version != first.proxyless_version


@pytest.mark.parametrize("policy", [FailurePolicy.KEEP_LAST_GOOD, FailurePolicy.RDS_ERROR])
def test_on_extension_failure_the_proxyless_snapshot_moves_with_envoys(
    policy: FailurePolicy,
) -> None:
    """Rule 7: held back with Envoy's (keep-last-good); the translation's when Envoy's gets the
    failure policy's rewrite (rds-error)."""
    cache = SnapshotCache()
    settings = ControlPlaneSettings(
        node_id=ENVOY_NODE,
        proxyless_node_id=PROXYLESS_NODE,
        failure_policy=policy,
        hooks=frozenset({Hook.POST_TRANSLATE_MODIFY}),
    )
    first = ControlPlane(settings, cache).start(_world("svc-a", {"svc-a": ("127.0.0.1", 10001)}))
    assert first.outcome is Outcome.PUBLISHED
    # A second control plane on the same cache, whose extension is unreachable (fail-closed).
    unreachable = ExtensionSettings(
        "127.0.0.1:1",
        deadline=0.2,
        retry=RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.01),
    )
    changed = _world("svc-b", {"svc-b": ("127.0.0.1", 10002)})
    with ExtensionClient(unreachable) as extension:
        plane = ControlPlane(settings, cache, extension)
        result = plane.start(changed)
    if policy is FailurePolicy.KEEP_LAST_GOOD:
        assert result.outcome is Outcome.KEPT_LAST_GOOD
        assert result.snapshot_version == first.snapshot_version
        assert result.proxyless_version == first.proxyless_version
        return
    assert result.outcome is Outcome.FAILURE_POLICY
    assert result.snapshot_version != first.snapshot_version
    translated = plane.last_translation
    assert translated is not None
    expected = Snapshot.from_messages(to_proxyless(translated.ir, changed).messages())
    assert plane.published_proxyless_snapshot == expected
    assert result.proxyless_version == expected.version != first.proxyless_version


def test_a_proxyless_client_follows_what_the_control_plane_publishes(
    pods: dict[str, tuple[str, int]],
) -> None:
    cache = SnapshotCache()
    plane = _control_plane(cache)
    assert plane.start(_world("svc-a", pods)).outcome is Outcome.PUBLISHED
    with (
        XdsServer(cache) as server,
        ProxylessClient(server.address, PROXYLESS_NODE) as client,
    ):
        first = client.call(HOST, timeout=5.0)
        assert (first.code, first.pod) == ("OK", "svc-a-0")
        held = {(r.type_name, r.name): r.status for r in client.csds()}
        assert held[("Listener", HOST)] == "ACKED"
        assert set(held.values()) == {"ACKED"}

        # A route change moves the calls to the other Service's pod.
        assert plane.apply(_world("svc-b", pods)).outcome is Outcome.PUBLISHED
        _until(lambda: client.call(HOST, timeout=2.0).pod == "svc-b-0", "calls reach svc-b-0")

        # Back to svc-a under a LeastRequest policy: Envoy gets LEAST_REQUEST, which gRPC
        # NACKs (tests/harness_loopback/test_proxyless.py), the client ROUND_ROBIN, and ACKs it.
        result = plane.apply(_world("svc-a", pods, load_balancer="LeastRequest"))
        assert result.outcome is Outcome.PUBLISHED
        (name,) = _lb_policies(plane.published_proxyless_snapshot)
        assert _lb_policies(plane.published_snapshot)[name] == cluster_pb2.Cluster.LEAST_REQUEST
        assert _lb_policies(plane.published_proxyless_snapshot)[name] == (
            cluster_pb2.Cluster.ROUND_ROBIN
        )
        _until(lambda: client.call(HOST, timeout=2.0).pod == "svc-a-0", "calls reach svc-a-0")
        statuses = {(r.type_name, r.name): r for r in client.csds()}
        assert statuses[("Cluster", name)].status == "ACKED"
        assert not [r for r in statuses.values() if r.status == "NACKED"]


def _lb_policies(snapshot: Snapshot | None) -> dict[str, int]:
    assert snapshot is not None
    return {
        name: cluster_pb2.Cluster.FromString(resource.body).lb_policy
        for name, resource in snapshot.of_type(ResourceType.CLUSTER).items()
    }


def _prefix(value: str) -> list[dict[str, Any]]:
    return [{"path": {"type": "PathPrefix", "value": value}}]


UNFOLLOWABLE_RULES = (
    {
        "matches": _prefix("/moved"),
        "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x.test"}}],
    },
    {
        "matches": _prefix("/renamed.Service"),
        "filters": [
            {
                "type": "URLRewrite",
                "urlRewrite": {
                    "hostname": "internal.example.com",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"},
                },
            }
        ],
        "backendRefs": [{"name": "svc-b", "port": HTTP_PORT}],
    },
    {
        "matches": [
            {"path": {"type": "Exact", "value": "/routeproof.Echo/Other"}, "method": "POST"},
            {"path": {"type": "RegularExpression", "value": "/regex\\..*"}},
            {
                "path": {"type": "PathPrefix", "value": "/with.Query"},
                "queryParams": [{"name": "q", "value": "1"}],
            },
        ],
        "backendRefs": [{"name": "svc-b", "port": HTTP_PORT}, {"name": "gone", "port": 1}],
    },
)


def test_routes_grpc_cannot_follow_are_accepted_beside_the_ones_it_can(
    pods: dict[str, tuple[str, int]],
) -> None:
    """Redirects, 500 shares, rewrites, exact and regex paths, query matches: gRPC ACKs the
    RouteConfiguration that carries them and calls still reach the route that forwards."""
    cache = SnapshotCache()
    plane = _control_plane(cache)
    result = plane.start(_world("svc-a", pods, extra_rules=UNFOLLOWABLE_RULES))
    assert result.outcome is Outcome.PUBLISHED
    with (
        XdsServer(cache) as server,
        ProxylessClient(server.address, PROXYLESS_NODE) as client,
    ):
        outcome = client.call(HOST, timeout=5.0)
        assert (outcome.code, outcome.pod) == ("OK", "svc-a-0")
        statuses = {(r.type_name, r.name): r.status for r in client.csds()}
        routes = [status for (kind, _), status in statuses.items() if kind == "RouteConfiguration"]
        assert routes == ["ACKED"]
        assert "NACKED" not in statuses.values()


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param(
            [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x.test"}}], id="redirect"
        ),
        pytest.param(
            [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplaceFullPath", "replaceFullPath": "/other.Svc/Call"}
                    },
                }
            ],
            id="path-rewrite",
        ),
    ],
)
def test_a_call_matching_a_route_grpc_cannot_follow_fails_unavailable(
    pods: dict[str, tuple[str, int]], filters: list[dict[str, Any]]
) -> None:
    """The echo method's service prefix wins over "/" and holds a redirect or a path rewrite."""
    rule = {"matches": _prefix("/routeproof.Echo"), "filters": filters}
    if filters[0]["type"] == "URLRewrite":
        rule["backendRefs"] = [{"name": "svc-b", "port": HTTP_PORT}]
    cache = SnapshotCache()
    plane = _control_plane(cache)
    assert plane.start(_world("svc-a", pods, extra_rules=(rule,))).outcome is Outcome.PUBLISHED
    with (
        XdsServer(cache) as server,
        ProxylessClient(server.address, PROXYLESS_NODE) as client,
    ):
        outcome = client.call(HOST, timeout=5.0)
        assert (outcome.code, outcome.pod) == ("UNAVAILABLE", "")
        assert "inappropriate action" in outcome.details  # the route, not a missing resource
        statuses = {(r.type_name, r.name): r.status for r in client.csds()}
        assert statuses[("Listener", HOST)] == "ACKED"
        assert "NACKED" not in statuses.values()
