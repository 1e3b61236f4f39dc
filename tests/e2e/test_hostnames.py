"""Hostname intersection, hostname precedence and Listener Isolation (manifests/hostnames.yaml).

Spec (apis/v1/httproute_types.go, HTTPRouteSpec.Hostnames): a route hostname matches a listener
hostname when both are equal, or one is a wildcard covering the other; "Hostnames that do not
match the Listener hostname MUST be ignored"; "If both the Listener and HTTPRoute have specified
hostnames, and none match ..., then the HTTPRoute is not accepted"; "precedence must be given to
rules from the HTTPRoute with the largest number of: Characters in a matching non-wildcard
hostname. Characters in a matching hostname." A wildcard "*.example.com" matches
"foo.example.com" and "foo.bar.example.com" but not "example.com" (Listener.Hostname).

Listener Isolation (apis/v1/gateway_types.go, Listeners): "requests SHOULD be matched against
the most specific Listener hostname"; a request matching a more specific listener never reaches
a less specific one (conformance GatewayHTTPListenerIsolation).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sut.gatewayapi import find_condition
from tests.e2e.served import Served, served_manifest


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("hostnames.yaml") as served:
        yield served


# ------------------------------------------------------------------- intersection

_INTERSECTION = [
    # exact route hostname on an exact listener
    ("very.specific.com", "/s1", "s1"),
    ("very.specific.com:1234", "/s1", "s1"),
    ("non.matching.com", "/s1", None),
    ("foo.nonmatchingwildcard.io", "/s1", None),
    ("foo.wildcard.io", "/s1", None),
    ("very.specific.com", "/non-matching-prefix", None),
    # exact route hostnames on a wildcard listener
    ("foo.wildcard.io", "/s2", "s2"),
    ("bar.wildcard.io", "/s2", "s2"),
    ("foo.bar.wildcard.io", "/s2", "s2"),
    ("non.matching.com", "/s2", None),
    ("wildcard.io", "/s2", None),
    ("very.specific.com", "/s2", None),
    ("baz.wildcard.io", "/s2", None),  # inside the listener, but not a route hostname
    # a wildcard route hostname narrowed to an exact listener
    ("very.specific.com", "/s3", "s3"),
    ("non.matching.com", "/s3", None),
    ("foo.specific.com", "/s3", None),
    ("foo.wildcard.io", "/s3", None),
    # a wildcard route hostname on an equal wildcard listener
    ("foo.anotherwildcard.io", "/s4", "s4"),
    ("bar.anotherwildcard.io", "/s4", "s4"),
    ("foo.bar.anotherwildcard.io", "/s4", "s4"),
    ("anotherwildcard.io", "/s4", None),
    ("foo.wildcard.io", "/s4", None),
    ("very.specific.com", "/s4", None),
    # no route hostname intersects: not attached anywhere
    ("specific.but.wrong.com", "/s5", None),
    ("wildcard.io", "/s5", None),
]


@pytest.mark.parametrize(("host", "path", "service"), _INTERSECTION)
def test_hostname_intersection(served: Served, host: str, path: str, service: str | None) -> None:
    reply = served.get("edge/intersection", 80, host, path)
    if service is None:
        assert reply.status == 404, reply
        assert reply.echo is None
    else:
        assert reply.status == 200, reply
        assert reply.service == service


def test_route_without_intersecting_hostname_is_not_accepted(served: Served) -> None:
    status = served.statuses.http_route("edge", "no-intersection")
    assert status is not None and len(status.parents) == 1
    accepted = find_condition(status.parents[0].conditions, "Accepted")
    assert accepted is not None
    assert (accepted.status, accepted.reason) == ("False", "NoMatchingListenerHostname")


def test_attached_routes_count_only_routes_accepted_on_the_listener(served: Served) -> None:
    """ListenerStatus.AttachedRoutes counts Routes Accepted on the listener (conformance
    HTTPRouteHostnameIntersection: 2/1/1; a route matching no listener hostname counts nowhere)."""
    gateway = served.statuses.gateway("edge", "intersection")
    assert gateway is not None
    counts = {listener.name: listener.attached_routes for listener in gateway.listeners}
    assert counts == {"specific": 2, "wildcard": 1, "another-wildcard": 1}


@pytest.mark.parametrize(
    ("host", "status", "service"),
    [
        ("first.com", 200, "listed"),
        ("sub.first.com", 404, None),  # an exact hostname covers no subdomain
        ("a.second.com", 200, "listed"),
        ("a.b.second.com", 200, "listed"),  # a wildcard covers several labels
        ("second.com", 404, None),  # but not the apex
        ("third.com", 404, None),
    ],
)
def test_route_hostnames_on_listener_without_hostname(
    served: Served, host: str, status: int, service: str | None
) -> None:
    reply = served.get("edge/open", 80, host, "/")
    assert reply.status == status, reply
    assert reply.service == service


# ------------------------------------------------------------------- precedence by hostname


def test_exact_hostname_route_beats_wildcard_route_with_better_path(served: Served) -> None:
    """www.shop.test/deal: the route naming www.shop.test wins over the older `*.shop.test`
    route's Exact /deal, because hostname specificity decides before path matching."""
    reply = served.get("edge/open", 80, "www.shop.test", "/deal")
    assert reply.service == "shop-www"


def test_wildcard_route_serves_other_subdomains(served: Served) -> None:
    assert served.get("edge/open", 80, "app.shop.test", "/deal").service == "shop-wildcard"
    assert served.get("edge/open", 80, "app.shop.test", "/other").status == 404


def test_longer_wildcard_hostname_wins(served: Served) -> None:
    assert served.get("edge/open", 80, "paris.eu.shop.test", "/deal").service == "shop-eu"


def test_route_without_hostnames_only_gets_hosts_nobody_names(served: Served) -> None:
    assert served.get("edge/open", 80, "random.org", "/anyhost").service == "any-host"
    # first.com has a route naming it: that route's rules decide, and they send everything to
    # "listed"; the hostname-less route is not consulted.
    assert served.get("edge/open", 80, "first.com", "/anyhost").service == "listed"


# ------------------------------------------------------------------- Listener Isolation

_ISOLATION = [
    ("bar.com", "/empty-hostname", "empty-hostname"),
    ("bar.com", "/wildcard-example-com", None),
    ("bar.com", "/wildcard-foo-example-com", None),
    ("bar.com", "/abc-foo-example-com", None),
    ("bar.example.com", "/empty-hostname", None),
    ("bar.example.com", "/wildcard-example-com", "wildcard-example-com"),
    ("bar.example.com", "/wildcard-foo-example-com", None),
    ("bar.example.com", "/abc-foo-example-com", None),
    ("bar.foo.example.com", "/empty-hostname", None),
    ("bar.foo.example.com", "/wildcard-example-com", None),
    ("bar.foo.example.com", "/wildcard-foo-example-com", "wildcard-foo-example-com"),
    ("bar.foo.example.com", "/abc-foo-example-com", None),
    ("abc.foo.example.com", "/empty-hostname", None),
    ("abc.foo.example.com", "/wildcard-example-com", None),
    ("abc.foo.example.com", "/wildcard-foo-example-com", None),
    ("abc.foo.example.com", "/abc-foo-example-com", "abc-foo-example-com"),
]


@pytest.mark.parametrize("gateway", ["edge/isolation", "edge/isolation-intersecting"])
@pytest.mark.parametrize(("host", "path", "service"), _ISOLATION)
def test_listener_isolation(
    served: Served, gateway: str, host: str, path: str, service: str | None
) -> None:
    reply = served.get(gateway, 80, host, path)
    if service is None:
        assert reply.status == 404, reply
    else:
        assert reply.status == 200, reply
        assert reply.service == service


def test_isolation_gateways_accept_their_routes(served: Served) -> None:
    for name in (
        "hosts-on-empty-hostname",
        "hosts-on-wildcard-example-com",
        "hosts-on-wildcard-foo-example-com",
        "hosts-on-abc-foo-example-com",
    ):
        status = served.statuses.http_route("edge", name)
        assert status is not None
        accepted = find_condition(status.parents[0].conditions, "Accepted")
        assert accepted is not None and accepted.is_true, (name, accepted)
