"""Table-driven tests of the routing oracle: hostnames, attachment, precedence, backends."""

from __future__ import annotations

import pytest

from model import (
    Backend,
    GatewayListener,
    HeaderMatch,
    Match,
    ProxyConfig,
    Request,
    Route,
    Rule,
    Served,
    Service,
    Status,
    Unreachable,
    World,
    effective_hostnames,
    expected_outcomes,
    host_matches,
    path_matches,
)

HTTP = GatewayListener("http", "HTTP", 8080)
HTTP_WILD = GatewayListener("http-wild", "HTTP", 8081, "*.example.com")
HTTPS_A = GatewayListener("https-a", "HTTPS", 8443, "a.example.com")
HTTPS_B = GatewayListener("https-b", "HTTPS", 8443, "b.example.com")
SERVICES = (Service("a", ("a-0",)), Service("b", ("b-0",)), Service("c", ("c-0", "c-1")))
LIVE = frozenset({"a-0", "b-0", "c-0", "c-1"})


def rule(path: str, service: str, kind: str = "PathPrefix", headers=()) -> Rule:
    return Rule(
        (Match(kind, path, tuple(HeaderMatch(n, v) for n, v in headers)),), (Backend(service),)
    )


def served(service: str, pod: str | None = None, marker=None):
    return frozenset({Served(service, pod or f"{service}-0", marker)})


def outcome(routes, request, listeners=(HTTP, HTTP_WILD, HTTPS_A, HTTPS_B), live=LIVE, **config):
    world = World(listeners=listeners, routes=routes, services=SERVICES)
    return expected_outcomes(ProxyConfig(world, **config), request, live)


def get(path: str, host: str = "a.example.com", port: int = 8080, scheme: str = "http", headers=()):
    return Request(port, scheme, host, path, tuple(headers))


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("a.example.com", "a.example.com", True),
        ("a.example.com", "b.example.com", False),
        ("*.example.com", "a.example.com", True),
        ("*.example.com", "x.a.example.com", True),
        ("*.example.com", "example.com", False),
        (None, "anything", True),
    ],
)
def test_hostname_matching(pattern, host, matches):
    assert host_matches(pattern, host) is matches


@pytest.mark.parametrize(
    ("kind", "pattern", "path", "matches"),
    [
        ("PathPrefix", "/app", "/app", True),
        ("PathPrefix", "/app", "/app/", True),
        ("PathPrefix", "/app", "/app/v1", True),
        ("PathPrefix", "/app", "/apps", False),
        ("PathPrefix", "/app/", "/app", True),
        ("PathPrefix", "/", "/anything", True),
        ("Exact", "/app", "/app", True),
        ("Exact", "/app", "/app/", False),
        ("Exact", "/app", "/app?x=1", True),
    ],
)
def test_path_prefix_matches_whole_segments(kind, pattern, path, matches):
    assert path_matches(Match(kind, pattern), path) is matches


@pytest.mark.parametrize(
    ("route_hostnames", "listener", "expected"),
    [
        ((), HTTP, ("*",)),
        ((), HTTP_WILD, ("*.example.com",)),
        (("a.example.com",), HTTP_WILD, ("a.example.com",)),
        (("a.other.org",), HTTP_WILD, ()),
        (("*.example.com",), HTTPS_A, ("a.example.com",)),
        (("*.a.example.com",), HTTP_WILD, ("*.a.example.com",)),
        (("*.org",), HTTP_WILD, ()),
    ],
)
def test_route_hostnames_intersect_the_listener(route_hostnames, listener, expected):
    route = Route("r", 1, (rule("/", "a"),), hostnames=route_hostnames)
    assert effective_hostnames(route, listener) == expected


def test_section_name_attaches_to_one_listener_only():
    route = Route("r", 1, (rule("/", "a"),), section="https-a")
    assert effective_hostnames(route, HTTPS_B) == ()
    assert outcome([route], get("/", port=8443, scheme="https")) == served("a")
    assert outcome([route], get("/", port=8080)) == {Status(404)}


@pytest.mark.parametrize(
    ("routes", "request_", "expected"),
    [
        # Exact beats any prefix, even a longer one written first.
        (
            [Route("r1", 1, (rule("/app/v1", "a"), rule("/app", "b", kind="Exact")))],
            get("/app"),
            served("b"),
        ),
        # The longest prefix wins across routes.
        (
            [Route("r1", 1, (rule("/app", "a"),)), Route("r2", 2, (rule("/app/v1", "b"),))],
            get("/app/v1/x"),
            served("b"),
        ),
        # More header matches win on equal paths.
        (
            [
                Route("r1", 1, (rule("/app", "a"),)),
                Route("r2", 2, (rule("/app", "b", headers=[("x-variant", "blue")]),)),
            ],
            get("/app", headers=[("x-variant", "blue")]),
            served("b"),
        ),
        # On a full tie the older route wins...
        (
            [Route("r2", 1, (rule("/app", "b"),)), Route("r1", 2, (rule("/app", "a"),))],
            get("/app"),
            served("b"),
        ),
        # ...and on equal age, the name.
        (
            [Route("r2", 1, (rule("/app", "b"),)), Route("r1", 1, (rule("/app", "a"),))],
            get("/app"),
            served("a"),
        ),
        # Within a route, the first rule wins a tie.
        ([Route("r1", 1, (rule("/app", "a"), rule("/app", "b")))], get("/app"), served("a")),
        # Nothing matches: 404.
        ([Route("r1", 1, (rule("/app", "a"),))], get("/other"), {Status(404)}),
    ],
    ids=[
        "exact-beats-prefix",
        "longest-prefix",
        "more-headers",
        "older-route",
        "route-name",
        "rule-order",
        "no-match",
    ],
)
def test_precedence(routes, request_, expected):
    assert outcome(routes, request_) == expected


def test_the_most_specific_hostname_selects_the_routes_considered():
    wildcard = Route("wild", 1, (rule("/api", "a"),), hostnames=("*.example.com",))
    exact = Route("exact", 2, (rule("/app", "b"),), hostnames=("a.example.com",))
    assert outcome([wildcard, exact], get("/app")) == served("b")
    # a.example.com has its own routes: the wildcard route's /api is not considered for it.
    assert outcome([wildcard, exact], get("/api")) == {Status(404)}
    assert outcome([wildcard, exact], get("/api", host="z.example.com")) == served("a")


def test_listener_hostname_the_host_does_not_match_answers_404():
    route = Route("r", 1, (rule("/", "a"),))
    assert outcome([route], get("/", host="other.org", port=8081)) == {Status(404)}


def test_https_without_a_filter_chain_for_the_sni_is_unreachable():
    route = Route("r", 1, (rule("/", "a"),))
    assert outcome([route], get("/", host="c.example.com", port=8443, scheme="https")) == {
        Unreachable()
    }


def test_a_port_without_listeners_is_unreachable():
    assert outcome([], get("/", port=9999)) == {Unreachable()}


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ((Backend("a", 1), Backend("b", 0)), served("a")),
        ((Backend("a", 0), Backend("b", 0)), {Status(500)}),
        ((Backend("missing", 1),), {Status(500)}),
        ((Backend("a", 1), Backend("missing", 1)), served("a") | {Status(500)}),
        ((Backend("c", 1),), served("c", "c-0") | served("c", "c-1")),
    ],
    ids=["zero-weight-gets-nothing", "all-zero-500", "missing-500", "partial-500", "two-pods"],
)
def test_backends(backends, expected):
    route = Route("r", 1, (Rule((Match("PathPrefix", "/"),), backends),))
    assert outcome([route], get("/")) == expected


def test_a_service_without_endpoints_or_with_dead_pods_answers_503():
    route = Route("r", 1, (rule("/", "a"),))
    assert outcome([route], get("/"), live=frozenset()) == {Status(503)}
    empty = World(listeners=(HTTP,), routes=(route,), services=(Service("a"),))
    assert expected_outcomes(ProxyConfig(empty), get("/"), LIVE) == {Status(503)}


def test_error_configuration_answers_500_wherever_a_listener_accepts():
    route = Route("r", 1, (rule("/app", "a"),))
    assert outcome([route], get("/nothing-here"), error=True) == {Status(500)}
    assert outcome(
        [route], get("/", host="c.example.com", port=8443, scheme="https"), error=True
    ) == {Unreachable()}


def test_the_marker_follows_the_configuration():
    route = Route("r", 1, (rule("/", "a"),))
    assert outcome([route], get("/"), marker=7) == served("a", marker=7)
