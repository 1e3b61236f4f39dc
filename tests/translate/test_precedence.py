"""Route precedence inside a virtual host, across all rules of all routes (HTTPRouteRule doc)."""

from __future__ import annotations

from typing import Any

import pytest

from sut.translate import build_ir
from tests.translate.worlds import backend, gateway, listener, route, service, world


def match(
    path: tuple[str, str] = ("PathPrefix", "/"),
    headers: int = 0,
    queries: int = 0,
    method: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"path": {"type": path[0], "value": path[1]}}
    if headers:
        result["headers"] = [{"name": f"h{i}", "value": "v"} for i in range(headers)]
    if queries:
        result["queryParams"] = [{"name": f"q{i}", "value": "v"} for i in range(queries)]
    if method:
        result["method"] = method
    return result


def ordered_sources(*routes: dict[str, Any]) -> list[str]:
    """(route, rule, match) of the routes on the one virtual host, in Envoy order."""
    ir, _ = build_ir(
        world(
            gateway([listener(allowed_routes={"namespaces": {"from": "All"}})]),
            service("web"),
            *routes,
        )
    )
    (host,) = ir.listeners[0].filter_chains[0].route_config.virtual_hosts
    return [f"{r.source.route.name}:{r.source.rule}:{r.source.match}" for r in host.routes]


def one_rule(name: str, *matches: dict[str, Any], created: str | None = None) -> dict:
    return route(
        name,
        created=created,
        rules=[{"matches": list(matches), "backendRefs": [backend("web")]}],
    )


PAIRS = [
    pytest.param(
        match(("Exact", "/a")), match(("PathPrefix", "/a/b/c/d")), id="exact-beats-prefix"
    ),
    pytest.param(
        match(("Exact", "/a")), match(("RegularExpression", "/a.*")), id="exact-beats-regex"
    ),
    pytest.param(
        match(("RegularExpression", "/a")),
        match(("PathPrefix", "/a/b/c/d/e")),
        id="regex-beats-prefix",
    ),
    pytest.param(
        match(("PathPrefix", "/abc")), match(("PathPrefix", "/ab")), id="longer-prefix-first"
    ),
    pytest.param(
        match(("PathPrefix", "/a"), method="GET"),
        match(("PathPrefix", "/a"), headers=5),
        id="method-beats-headers",
    ),
    pytest.param(
        match(("PathPrefix", "/a"), headers=2),
        match(("PathPrefix", "/a"), headers=1, queries=5),
        id="more-headers-first",
    ),
    pytest.param(
        match(("PathPrefix", "/a"), queries=2),
        match(("PathPrefix", "/a"), queries=1),
        id="more-queries-first",
    ),
    pytest.param(match(("PathPrefix", "/a")), match(("PathPrefix", "/")), id="slash-counts-zero"),
]


@pytest.mark.parametrize(("higher", "lower"), PAIRS)
def test_match_specificity_beats_age_and_name(higher: dict, lower: dict) -> None:
    # The less specific match belongs to the older, alphabetically first route.
    order = ordered_sources(
        one_rule("aaa", lower, created="2020-01-01T00:00:00Z"),
        one_rule("zzz", higher, created="2024-01-01T00:00:00Z"),
    )
    assert order == ["zzz:0:0", "aaa:0:0"]


def test_ties_go_to_the_oldest_route_then_namespace_name() -> None:
    same = match(("PathPrefix", "/a"))
    order = ordered_sources(
        one_rule("b", same, created="2024-01-01T00:00:00Z"),
        one_rule("c", same, created="2023-01-01T00:00:00Z"),
        one_rule("a", same, created="2024-01-01T00:00:00Z"),
        one_rule("untimed", same),
    )
    assert order == ["c:0:0", "a:0:0", "b:0:0", "untimed:0:0"]


def test_ties_within_a_route_go_to_rule_then_match_order() -> None:
    same = match(("PathPrefix", "/a"))
    order = ordered_sources(
        route(
            "app",
            rules=[
                {"matches": [same, match(("Exact", "/z"))], "backendRefs": [backend("web")]},
                {"matches": [same], "backendRefs": [backend("web")]},
            ],
        )
    )
    assert order == ["app:0:1", "app:0:0", "app:1:0"]


def test_header_names_repeated_case_insensitively_count_once() -> None:
    duplicate = {
        "path": {"type": "PathPrefix", "value": "/a"},
        "headers": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
    }
    two = match(("PathPrefix", "/a"), headers=2)
    order = ordered_sources(
        one_rule("dup", duplicate, created="2020-01-01T00:00:00Z"),
        one_rule("two", two, created="2024-01-01T00:00:00Z"),
    )
    assert order == ["two:0:0", "dup:0:0"]
