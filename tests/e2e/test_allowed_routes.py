"""allowedRoutes and parentRef selection through real Envoy (manifests/allowed-routes.yaml).

Spec (apis/v1/gateway_types.go): AllowedRoutes.Namespaces.From "Same" (default) admits routes
of the Gateway's namespace only, "All" every namespace, "Selector" the namespaces whose labels
match the selector; AllowedRoutes.Kinds restricts route kinds ("Listener ResolvedRefs False
InvalidRouteKinds" for unsupported kinds). ParentReference.SectionName / Port select the
listeners a route attaches to; a parentRef that selects no listener gets Accepted=False
NoMatchingParent, one whose selected listeners refuse the route NotAllowedByListeners
(apis/v1/shared_types.go). A route a listener does not admit serves nothing there: 404.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sut.gatewayapi import find_condition
from tests.e2e.served import Served, served_manifest

GATEWAY = "infra/shared"
PATHS = {"/infra": "infra", "/a": "team-a", "/b": "team-b", "/c": "team-c"}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("allowed-routes.yaml") as served:
        yield served


@pytest.mark.parametrize(
    ("host", "port", "admitted"),
    [
        ("same.example.com", 80, {"infra"}),
        ("all.example.com", 80, {"infra", "team-a", "team-b", "team-c"}),
        ("prod.example.com", 80, {"team-a"}),  # matchLabels env=prod
        ("not-prod.example.com", 80, {"infra", "team-b", "team-c"}),  # env NotIn [prod]
        ("by-name.example.com", 80, {"team-c"}),  # kubernetes.io/metadata.name In [team-c]
        ("grpc.example.com", 80, set()),  # kinds: GRPCRoute only
        ("http-kind.example.com", 80, {"infra", "team-a", "team-b", "team-c"}),
        ("alt.example.com", 8080, {"infra", "team-a", "team-b", "team-c"}),
    ],
)
def test_listener_admits_namespaces(
    served: Served, host: str, port: int, admitted: set[str]
) -> None:
    answered = {}
    for path, namespace in PATHS.items():
        reply = served.get(GATEWAY, port, host, path)
        assert reply.status in (200, 404), reply
        if reply.status == 200:
            assert reply.backend == f"{namespace}/web"
        answered[namespace] = reply.status
    assert {ns for ns, status in answered.items() if status == 200} == admitted


@pytest.mark.parametrize(
    ("host", "port", "path", "status"),
    [
        ("same.example.com", 80, "/only-same", 200),
        ("all.example.com", 80, "/only-same", 404),
        ("alt.example.com", 8080, "/only-8080", 200),
        ("all.example.com", 80, "/only-8080", 404),
        ("all.example.com", 80, "/section-and-port", 200),
        ("same.example.com", 80, "/section-and-port", 404),
        ("same.example.com", 80, "/unknown-section", 404),
        ("all.example.com", 80, "/unknown-section", 404),
        ("same.example.com", 80, "/section-port-mismatch", 404),
        ("alt.example.com", 8080, "/section-port-mismatch", 404),
        ("prod.example.com", 80, "/wrong-namespace", 404),
    ],
)
def test_parent_ref_selects_listeners(
    served: Served, host: str, port: int, path: str, status: int
) -> None:
    reply = served.get(GATEWAY, port, host, path)
    assert reply.status == status, reply


@pytest.mark.parametrize(
    ("namespace", "name", "reason"),
    [
        ("infra", "unknown-section", "NoMatchingParent"),
        ("infra", "section-port-mismatch", "NoMatchingParent"),
        ("team-b", "wrong-namespace", "NotAllowedByListeners"),
        ("infra", "only-port-8080", "Accepted"),
    ],
)
def test_route_parent_status(served: Served, namespace: str, name: str, reason: str) -> None:
    status = served.statuses.http_route(namespace, name)
    assert status is not None
    accepted = find_condition(status.parents[0].conditions, "Accepted")
    assert accepted is not None
    assert accepted.reason == reason
    assert accepted.is_true == (reason == "Accepted")


def test_listener_with_unsupported_kinds_reports_invalid_route_kinds(served: Served) -> None:
    gateway = served.statuses.gateway("infra", "shared")
    assert gateway is not None
    listener = gateway.listener("grpc-only")
    assert listener is not None
    assert listener.supported_kinds == ()
    resolved = listener.condition("ResolvedRefs")
    assert resolved is not None
    assert (resolved.status, resolved.reason) == ("False", "InvalidRouteKinds")
