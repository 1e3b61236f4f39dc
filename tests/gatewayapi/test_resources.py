"""Resources: immutable, canonical, and updated one operation at a time."""

from __future__ import annotations

import pytest

from sut.gatewayapi import (
    BackendRef,
    Endpoint,
    HTTPRoute,
    HTTPRouteRule,
    Labels,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    ParentReference,
    Resources,
    Service,
    ServiceEndpoints,
    ServicePort,
)


def http_route(name: str, namespace: str = "default") -> HTTPRoute:
    return HTTPRoute(
        metadata=ObjectMeta(name=name, namespace=namespace),
        parent_refs=(ParentReference(name="eg"),),
        rules=(HTTPRouteRule(backend_refs=(BackendRef(name="web", port=80),)),),
    )


def test_order_of_construction_does_not_matter() -> None:
    first = Resources(http_routes=(http_route("b"), http_route("a")))
    second = Resources(http_routes=[http_route("a"), http_route("b")])
    assert first == second
    assert [r.metadata.name for r in first.http_routes] == ["a", "b"]


def test_duplicates_are_refused() -> None:
    with pytest.raises(ValueError, match="two objects named default/a"):
        Resources(http_routes=(http_route("a"), http_route("a")))


def test_functional_updates_leave_the_original_alone() -> None:
    empty = Resources()
    one = empty.with_route(http_route("a"))
    assert empty.http_routes == () and one.http_route("default", "a") is not None
    replaced = one.with_route(
        HTTPRoute(metadata=ObjectMeta(name="a", namespace="default"), hostnames=("x.io",))
    )
    assert len(replaced.http_routes) == 1 and replaced.http_routes[0].hostnames == ("x.io",)
    assert one.without_route("default", "a") == empty
    assert one.without_route("default", "missing") == one


def test_endpoints_are_supplied_separately_and_sorted() -> None:
    resources = Resources(
        services=(Service(ObjectMeta(name="web", namespace="default"), (ServicePort(80),)),)
    ).with_endpoints(
        ServiceEndpoints("default", "web", 80, (Endpoint("127.0.0.1", 2), Endpoint("127.0.0.1", 1)))
    )
    assert resources.service_endpoints("default", "web", 80) == (
        Endpoint("127.0.0.1", 1),
        Endpoint("127.0.0.1", 2),
    )
    assert resources.service_endpoints("default", "web", 81) == ()
    scaled = resources.with_endpoints(ServiceEndpoints("default", "web", 80, ()))
    assert scaled.service_endpoints("default", "web", 80) == ()
    assert resources.without_endpoints("default", "web", 80).endpoints == ()


def test_label_selector_semantics() -> None:
    labels = {"env": "prod", "team": "shop"}
    assert LabelSelector().matches(labels)
    assert LabelSelector(match_labels=Labels.of({"env": "prod"})).matches(labels)
    assert not LabelSelector(match_labels=Labels.of({"env": "qa"})).matches(labels)
    not_in = LabelSelectorRequirement("env", "NotIn", ("qa",))
    exists = LabelSelectorRequirement("team", "Exists")
    missing = LabelSelectorRequirement("legacy", "Exists")
    assert LabelSelector(match_expressions=(not_in, exists)).matches(labels)
    assert not LabelSelector(match_expressions=(missing,)).matches(labels)


def test_values_validate_on_construction() -> None:
    with pytest.raises(ValueError, match="weight"):
        BackendRef(name="web", port=80, weight=-1)
    with pytest.raises(ValueError, match="hostname"):
        HTTPRoute(metadata=ObjectMeta(name="a", namespace="default"), hostnames=("*",))
