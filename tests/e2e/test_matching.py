"""Matching and precedence through real Envoy (manifests/matching.yaml).

Spec: HTTPRouteRule.Matches and HTTPPathMatch in apis/v1/httproute_types.go. "Across all rules
specified on applicable Routes, precedence must be given to the match having: Exact path match;
Prefix path match with largest number of characters; Method match; Largest number of header
matches; Largest number of query param matches" ... "If ties still exist across multiple Routes
... The oldest Route based on creation timestamp; The Route appearing first in alphabetical order
by {namespace}/{name}" ... "the FIRST matching rule (in list order)". "When no rules matching a
request have been successfully attached to the parent a request is coming from, a HTTP 404
status code MUST be returned."
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.served import Served, served_manifest

GATEWAY = "infra/web"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("matching.yaml") as served:
        yield served


@pytest.mark.parametrize(
    ("path", "service"),
    [
        # Exact beats PathPrefix of the same value, whatever the rule order.
        ("/cart", "cart-exact"),
        # PathPrefix matches whole path segments.
        ("/cart/", "cart"),
        ("/cart/items", "cart"),
        ("/cart?coupon=1", "cart-exact"),
        # The longest prefix wins.
        ("/cart/checkout", "checkout"),
        ("/cart/checkout/pay", "checkout"),
        ("/cart/checkoutx", "cart"),
        # A trailing "/" in a PathPrefix is ignored.
        ("/static", "static"),
        ("/static/", "static"),
        ("/static/app.js", "static"),
        # RegularExpression: the whole path must match (Envoy's semantics).
        ("/items/42", "items"),
    ],
)
def test_path_matches(served: Served, path: str, service: str) -> None:
    reply = served.get(GATEWAY, 80, "shop.example.com", path)
    assert reply.status == 200, reply
    assert reply.service == service
    assert reply.echo is not None and reply.echo["path"] == path


@pytest.mark.parametrize(
    "path",
    [
        "/cartx",  # a prefix is not a string prefix
        "/CART",  # matching is case-sensitive
        "/staticfiles",
        "/items/42/reviews",  # the regex must match the whole path
        "/items/abc",
        "/",  # no rule matches /
        "/unknown",
    ],
)
def test_unmatched_path_is_404(served: Served, path: str) -> None:
    reply = served.get(GATEWAY, 80, "shop.example.com", path)
    assert reply.status == 404, reply
    assert reply.echo is None


def test_unmatched_host_is_404(served: Served) -> None:
    assert served.get(GATEWAY, 80, "shop.example.com", "/cart/items").status == 200
    reply = served.get(GATEWAY, 80, "other.example.com", "/cart/items")
    assert reply.status == 404
    assert reply.echo is None


def test_host_header_port_is_ignored(served: Served) -> None:
    """A Host header with a port still matches the hostname (clients send one off port 80)."""
    reply = served.get(GATEWAY, 80, "shop.example.com:8888", "/cart/items")
    assert reply.service == "cart"


@pytest.mark.parametrize(
    ("headers", "service"),
    [
        ({}, "api-v1"),
        ({"version": "two"}, "api-v2"),
        ({"Version": "two"}, "api-v2"),  # header names are case-insensitive
        ({"version": "Two"}, "api-v1"),  # header values are not
        ({"version": "two-and-more"}, "api-v1"),  # Exact is exact
        ({"x-user": "alice-7"}, "api-staff"),
        ({"x-user": "bob-12"}, "api-staff"),
        ({"x-user": "carol-7"}, "api-v1"),
        ({"x-user": "alice-7x"}, "api-v1"),  # the regex must match the whole value
    ],
)
def test_header_matches(served: Served, headers: dict[str, str], service: str) -> None:
    reply = served.get(GATEWAY, 80, "api.example.com", "/v/users", headers=headers)
    assert reply.status == 200, reply
    assert reply.service == service


@pytest.mark.parametrize(
    ("query", "service"),
    [
        ("", "search"),
        ("?q=shoes", "search-shoes"),
        ("?q=Shoes", "search"),
        ("?q=shoes&page=3", "search-paged"),  # two query matches beat one
        ("?page=3&q=shoes", "search-paged"),
        ("?q=shoes&page=three", "search-shoes"),
        ("?page=3", "search"),
    ],
)
def test_query_param_matches(served: Served, query: str, service: str) -> None:
    reply = served.get(GATEWAY, 80, "api.example.com", "/search" + query)
    assert reply.status == 200, reply
    assert reply.service == service


@pytest.mark.parametrize(
    ("method", "service"),
    [("GET", "orders-read"), ("POST", "orders-write"), ("DELETE", "orders-read")],
)
def test_method_matches(served: Served, method: str, service: str) -> None:
    reply = served.get(GATEWAY, 80, "api.example.com", "/orders", method=method)
    assert reply.status == 200, reply
    assert reply.service == service
    assert reply.echo is not None and reply.echo["method"] == method


def test_matches_of_one_rule_are_ored(served: Served) -> None:
    assert served.get(GATEWAY, 80, "api.example.com", "/either").service == "either"
    by_header = served.get(GATEWAY, 80, "api.example.com", "/x", headers={"x-either": "yes"})
    assert by_header.service == "either"
    assert served.get(GATEWAY, 80, "api.example.com", "/x").status == 404


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("PUT", "/all?all=1", {"x-all": "1"}, 200),
        ("GET", "/all?all=1", {"x-all": "1"}, 404),
        ("PUT", "/all", {"x-all": "1"}, 404),
        ("PUT", "/all?all=1", {}, 404),
        ("PUT", "/all/more?all=1", {"x-all": "1"}, 404),
    ],
)
def test_conditions_of_one_match_are_anded(
    served: Served, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    reply = served.get(GATEWAY, 80, "api.example.com", path, method=method, headers=headers)
    assert reply.status == status, reply
    if status == 200:
        assert reply.service == "all-of-them"


_EVERYTHING = {"x-a": "1", "x-b": "1"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "service"),
    [
        # Exact path beats a longer prefix, the method, headers and query params.
        ("GET", "/ladder/up?a=1&b=1", _EVERYTHING, "exact"),
        # The longer prefix beats a method match.
        ("GET", "/ladder/up/more?a=1&b=1", _EVERYTHING, "longer-prefix"),
        # A method match beats two header matches.
        ("GET", "/ladder?a=1&b=1", _EVERYTHING, "method"),
        # Two header matches beat one.
        ("POST", "/ladder?a=1&b=1", _EVERYTHING, "two-headers"),
        # One header match beats two query param matches.
        ("POST", "/ladder?a=1&b=1", {"x-a": "1"}, "one-header"),
        ("POST", "/ladder?a=1&b=1", {}, "two-queries"),
        ("POST", "/ladder?a=1", {}, None),
    ],
)
def test_precedence_ladder(
    served: Served, method: str, path: str, headers: dict[str, str], service: str | None
) -> None:
    reply = served.get(GATEWAY, 80, "ladder.example.com", path, method=method, headers=headers)
    if service is None:
        assert reply.status == 404, reply
    else:
        assert reply.status == 200, reply
        assert reply.service == service


def test_oldest_route_wins_a_tie(served: Served) -> None:
    """`older` (2023) beats `newer` (2024) although `newer` sorts first by name."""
    assert served.get(GATEWAY, 80, "ties.example.com", "/age").service == "older"


def test_namespace_name_order_breaks_a_tie_of_age(served: Served) -> None:
    """Same creationTimestamp: "aa/zz-alphabet" sorts before "bb/aa-alphabet"."""
    reply = served.get(GATEWAY, 80, "ties.example.com", "/name")
    assert reply.backend == "aa/aa-zz"


def test_first_rule_wins_inside_a_route(served: Served) -> None:
    assert served.get(GATEWAY, 80, "ties.example.com", "/rule-order").service == "first-rule"


@pytest.mark.parametrize(
    ("host", "path", "headers", "service"),
    [
        ("across.example.com", "/", {}, "across-one"),
        ("across.example.com", "/example", {}, "across-one"),
        ("across.example.net", "/example", {}, "across-one"),
        ("across.example.com", "/example", {"version": "one"}, "across-one"),
        ("across.example.com", "/v2", {}, "across-two"),
        ("across.example.net", "/v2", {}, "across-one"),  # across-two names .com only
        ("across.example.com", "/v2/example", {}, "across-two"),
        ("across.example.com", "/", {"version": "two"}, "across-two"),  # a header beats none
    ],
)
def test_matching_across_routes(
    served: Served, host: str, path: str, headers: dict[str, str], service: str
) -> None:
    reply = served.get(GATEWAY, 80, host, path, headers=headers)
    assert reply.status == 200, reply
    assert reply.service == service


def test_host_matching_ignores_case(served: Served) -> None:
    assert served.get(GATEWAY, 80, "SHOP.Example.COM", "/cart/items").service == "cart"


def test_request_reaches_backend_unchanged(served: Served) -> None:
    reply = served.get(
        GATEWAY, 80, "shop.example.com", "/cart/items?x=1&y=2", headers={"X-Custom": "kept"}
    )
    assert reply.echo is not None
    assert reply.echo["host"] == "shop.example.com"
    assert reply.echo["path"] == "/cart/items?x=1&y=2"
    assert reply.request_header("x-custom") == "kept"
    assert reply.request_header("x-forwarded-proto") == "http"
