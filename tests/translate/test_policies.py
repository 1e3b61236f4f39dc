"""BackendTrafficPolicy translation: which policy sets which Cluster, and the policy status.

Envoy Gateway's semantics: a policy on an HTTPRoute overrides one on its Gateway entirely; among
policies naming one target the oldest wins and the others are Conflicted; only Clusters change.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from sut.gatewayapi import ParentReference, Reason, Statuses
from sut.translate import TranslateOptions, Translation, translate
from tests.translate.worlds import (
    backend,
    backend_traffic_policy,
    gateway,
    listener,
    route,
    service,
    world,
)

ALL_NAMESPACES = {"namespaces": {"from": "All"}}
EG = ParentReference(name="eg", namespace="infra")
STORE = "httproute/default/store/rule/0/backend/default/store/8080"
BLOG = "httproute/default/blog/rule/0/backend/default/blog/8080"
DEFAULTS = ("LEAST_REQUEST", datetime.timedelta(seconds=10))


def shop(*extra: dict[str, Any], options: TranslateOptions | None = None) -> Translation:
    """Gateway infra/eg (one HTTP listener, routes from all namespaces), routes store and blog."""
    documents = [
        gateway([listener(allowed_routes=ALL_NAMESPACES)], created="2024-01-01T00:00:00Z"),
        service("store"),
        service("blog"),
        route("store", hostnames=["store.test"], rules=[{"backendRefs": [backend("store")]}]),
        route("blog", hostnames=["blog.test"], rules=[{"backendRefs": [backend("blog")]}]),
        *extra,
    ]
    endpoints = {("default", "store", 8080): 1, ("default", "blog", 8080): 1}
    return translate(world(*documents, endpoints=endpoints), options)


def cluster_settings(result: Translation, name: str) -> tuple[str, datetime.timedelta]:
    cluster = result.xds.cluster(name)
    assert cluster is not None, name
    policy = cluster_pb2.Cluster.LbPolicy.Name(cluster.lb_policy)
    return policy, cluster.connect_timeout.ToTimedelta()


def accepted(statuses: Statuses, name: str, ancestor: ParentReference, ns: str = "default") -> str:
    status = statuses.backend_traffic_policy(ns, name)
    assert status is not None, name
    found = status.ancestor(ancestor)
    assert found is not None, (ancestor, status)
    condition = found.condition(Reason.ACCEPTED)
    assert condition is not None
    return f"{condition.status}/{condition.reason}"


def test_without_policies_clusters_keep_the_defaults() -> None:
    result = shop(options=TranslateOptions(connect_timeout=datetime.timedelta(seconds=3)))
    assert cluster_settings(result, STORE) == ("LEAST_REQUEST", datetime.timedelta(seconds=3))
    assert result.statuses.backend_traffic_policies == ()


def test_a_gateway_policy_sets_every_cluster_of_the_routes_attached_to_it() -> None:
    result = shop(
        backend_traffic_policy(
            "gw", [("Gateway", "eg")], "infra", load_balancer="Random", connect_timeout="5s"
        )
    )
    for name in (STORE, BLOG):
        assert cluster_settings(result, name) == ("RANDOM", datetime.timedelta(seconds=5))
    assert accepted(result.statuses, "gw", EG, "infra") == "True/Accepted"


def test_a_route_policy_overrides_the_gateway_policy_entirely() -> None:
    """No field-wise merge: the route policy leaves connectTimeout unset, so the default applies
    to its clusters, not the Gateway policy's 5s."""
    result = shop(
        backend_traffic_policy(
            "gw", [("Gateway", "eg")], "infra", load_balancer="Random", connect_timeout="5s"
        ),
        backend_traffic_policy(
            "store-tuning", [("HTTPRoute", "store")], load_balancer="RoundRobin"
        ),
    )
    assert cluster_settings(result, STORE) == ("ROUND_ROBIN", DEFAULTS[1])
    assert cluster_settings(result, BLOG) == ("RANDOM", datetime.timedelta(seconds=5))
    assert accepted(result.statuses, "store-tuning", EG) == "True/Accepted"
    gateway_status = result.statuses.backend_traffic_policy("infra", "gw")
    assert gateway_status is not None
    ancestor = gateway_status.ancestor(EG)
    assert ancestor is not None
    overridden = ancestor.condition(Reason.OVERRIDDEN)
    assert overridden is not None and overridden.is_true
    assert "HTTPRoute default/store" in overridden.message
    assert "blog" not in overridden.message


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        # creationTimestamp decides, whatever the names
        (("z-old", "2024-01-01T00:00:00Z"), ("a-new", "2024-06-01T00:00:00Z"), "z-old"),
        # equal timestamps: namespace/name
        (("b", "2024-01-01T00:00:00Z"), ("a", "2024-01-01T00:00:00Z"), "a"),
        # a policy without a timestamp comes after every timestamped one
        (("a-untimed", None), ("b-timed", "2030-01-01T00:00:00Z"), "b-timed"),
    ],
)
def test_the_oldest_policy_holds_a_target_and_the_others_are_conflicted(
    first: tuple[str, str | None], second: tuple[str, str | None], winner: str
) -> None:
    balancers = {first[0]: "Random", second[0]: "RoundRobin"}
    result = shop(
        *(
            backend_traffic_policy(
                name, [("HTTPRoute", "store")], load_balancer=balancers[name], created=created
            )
            for name, created in (first, second)
        )
    )
    loser = next(name for name in balancers if name != winner)
    assert (
        cluster_settings(result, STORE)[0]
        == {"Random": "RANDOM", "RoundRobin": "ROUND_ROBIN"}[balancers[winner]]
    )
    assert accepted(result.statuses, winner, EG) == "True/Accepted"
    assert accepted(result.statuses, loser, EG) == "False/Conflicted"
    status = result.statuses.backend_traffic_policy("default", loser)
    assert status is not None
    condition = status.ancestors[0].condition(Reason.ACCEPTED)
    assert condition is not None and f"default/{winner}" in condition.message


def _target(kind: str, name: str) -> ParentReference:
    return ParentReference(name=name, namespace="default", kind=kind)


@pytest.mark.parametrize(
    ("documents", "kind", "name", "message", "options"),
    [
        ([], "HTTPRoute", "missing", "HTTPRoute default/missing not found", None),
        ([], "Gateway", "eg", "Gateway default/eg not found", None),  # eg lives in infra
        ([], "GRPCRoute", "store", "serves only Gateway and HTTPRoute", None),
        (
            [gateway([listener()], name="theirs", namespace="default", gateway_class="other")],
            "Gateway",
            "theirs",
            "Gateway default/theirs is not served by this controller (class other)",
            TranslateOptions(gateway_class="eg"),
        ),
        (
            [route("orphan", parents=[{"name": "nowhere"}])],
            "HTTPRoute",
            "orphan",
            "HTTPRoute default/orphan has no parent Gateway served by this controller",
            None,
        ),
    ],
)
def test_a_target_that_is_not_found_is_reported_against_the_target_itself(
    documents: list[dict[str, Any]],
    kind: str,
    name: str,
    message: str,
    options: TranslateOptions | None,
) -> None:
    result = shop(
        *documents,
        backend_traffic_policy(
            "lost", [(kind, name), ("HTTPRoute", "store")], load_balancer="Random"
        ),
        options=options,
    )
    status = result.statuses.backend_traffic_policy("default", "lost")
    assert status is not None
    ancestor = status.ancestor(_target(kind, name))
    assert ancestor is not None, status
    condition = ancestor.condition(Reason.ACCEPTED)
    assert condition is not None
    assert (condition.status, condition.reason) == ("False", "TargetNotFound")
    assert message in condition.message
    # the other target of the same policy is unaffected
    assert accepted(result.statuses, "lost", EG) == "True/Accepted"
    assert cluster_settings(result, STORE)[0] == "RANDOM"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"retry": {"numRetries": 3}}, "fields not supported: spec.retry"),
        ({"timeout": {"tcp": {"connectTimeout": "0s"}}}, "must be greater than zero"),
    ],
)
def test_an_invalid_policy_applies_nowhere_and_holds_no_target(
    extra: dict[str, Any], message: str
) -> None:
    result = shop(
        backend_traffic_policy(
            "invalid",
            [("HTTPRoute", "store")],
            load_balancer="Random",
            created="2024-01-01T00:00:00Z",
            **extra,
        ),
        backend_traffic_policy(
            "valid", [("HTTPRoute", "store")], load_balancer="RoundRobin", connect_timeout="2s"
        ),
    )
    assert accepted(result.statuses, "invalid", EG) == "False/Invalid"
    status = result.statuses.backend_traffic_policy("default", "invalid")
    assert status is not None
    condition = status.ancestors[0].condition(Reason.ACCEPTED)
    assert condition is not None and message in condition.message
    assert accepted(result.statuses, "valid", EG) == "True/Accepted"
    assert cluster_settings(result, STORE) == ("ROUND_ROBIN", datetime.timedelta(seconds=2))


def test_policies_change_clusters_and_nothing_else() -> None:
    plain = shop()
    tuned = shop(
        backend_traffic_policy(
            "gw", [("Gateway", "eg")], "infra", load_balancer="Random", connect_timeout="250ms"
        )
    )
    assert tuned.xds.cluster_load_assignments == plain.xds.cluster_load_assignments
    assert tuned.xds.listeners == plain.xds.listeners
    assert tuned.xds.route_configurations == plain.xds.route_configurations
    assert tuned.xds.clusters != plain.xds.clusters
    assert [c.name for c in tuned.xds.clusters] == [c.name for c in plain.xds.clusters]
    assert cluster_settings(plain, STORE) == DEFAULTS
    assert cluster_settings(tuned, STORE) == ("RANDOM", datetime.timedelta(milliseconds=250))


def test_a_route_on_two_gateways_takes_the_policy_of_the_oldest_gateway() -> None:
    """Clusters are shared by every Gateway in the snapshot, so one Gateway policy must win."""
    result = shop(
        gateway(
            [listener(port=8080, allowed_routes=ALL_NAMESPACES)],
            name="second",
            created="2024-05-01T00:00:00Z",
        ),
        route(
            "both",
            hostnames=["both.test"],
            parents=[
                {"name": "second", "namespace": "infra"},
                {"name": "eg", "namespace": "infra"},
            ],
            rules=[{"backendRefs": [backend("store")]}],
        ),
        backend_traffic_policy("first-gw", [("Gateway", "eg")], "infra", load_balancer="Random"),
        backend_traffic_policy(
            "second-gw", [("Gateway", "second")], "infra", load_balancer="RoundRobin"
        ),
    )
    both = "httproute/default/both/rule/0/backend/default/store/8080"
    assert cluster_settings(result, both)[0] == "RANDOM"
    second = ParentReference(name="second", namespace="infra")
    status = result.statuses.backend_traffic_policy("infra", "second-gw")
    assert status is not None
    ancestor = status.ancestor(second)
    assert ancestor is not None
    overridden = ancestor.condition(Reason.OVERRIDDEN)
    assert overridden is not None
    assert "HTTPRoute default/both (by BackendTrafficPolicy infra/first-gw)" in overridden.message


def test_route_policy_ancestors_are_its_served_parent_gateways_with_section_names() -> None:
    result = shop(
        route(
            "sectioned",
            parents=[
                {"name": "eg", "namespace": "infra", "sectionName": "http"},
                {"name": "not-ours", "namespace": "infra"},
            ],
            rules=[{"backendRefs": [backend("store")]}],
        ),
        backend_traffic_policy("p", [("HTTPRoute", "sectioned")], load_balancer="Random"),
    )
    status = result.statuses.backend_traffic_policy("default", "p")
    assert status is not None
    assert [item.ancestor_ref for item in status.ancestors] == [
        ParentReference(name="eg", namespace="infra", section_name="http")
    ]
