"""Envoy Gateway's BackendTrafficPolicy: loading, CRD rules, durations and the value class."""

from __future__ import annotations

import datetime
import textwrap

import pytest

from sut.errors import ManifestError
from sut.gatewayapi import (
    BackendTrafficPolicy,
    ObjectMeta,
    PolicyTargetReference,
    Resources,
    load_manifests,
    parse_duration,
)


def policy(spec: str, name: str = "tuned") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (
        "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n"
        f"metadata:\n  name: {name}\n  namespace: shop\nspec:\n{body}\n"
    )


TARGET_ROUTE = """
targetRefs:
- group: gateway.networking.k8s.io
  kind: HTTPRoute
  name: store
"""


def load_one(spec: str) -> BackendTrafficPolicy:
    loaded = load_manifests(policy(spec)).backend_traffic_policy("shop", "tuned")
    assert loaded is not None
    return loaded


def test_cluster_settings_are_loaded() -> None:
    loaded = load_one(
        TARGET_ROUTE
        + """
        loadBalancer:
          type: RoundRobin
        timeout:
          tcp:
            connectTimeout: 1m30s
        """.replace("\n        ", "\n")
    )
    assert loaded.target_refs == (PolicyTargetReference(kind="HTTPRoute", name="store"),)
    assert loaded.load_balancer == "RoundRobin"
    assert loaded.connect_timeout == datetime.timedelta(seconds=90)
    assert loaded.unsupported_fields == ()
    assert loaded.problem() is None


def test_unset_settings_stay_none_and_the_deprecated_target_ref_still_works() -> None:
    loaded = load_one(
        "targetRef:\n  group: gateway.networking.k8s.io\n  kind: Gateway\n  name: eg\n"
    )
    assert loaded.target_refs == (PolicyTargetReference(kind="Gateway", name="eg"),)
    assert (loaded.load_balancer, loaded.connect_timeout) == (None, None)


def test_envoy_gateway_fields_not_implemented_load_but_make_the_policy_invalid() -> None:
    loaded = load_one(
        TARGET_ROUTE
        + "retry: {numRetries: 2}\n"
        + "loadBalancer: {type: LeastRequest, slowStart: {window: 5s}}\n"
        + "timeout: {http: {connectionIdleTimeout: 5s}}\n"
    )
    assert loaded.unsupported_fields == (
        "spec.retry",
        "spec.loadBalancer.slowStart",
        "spec.timeout.http",
    )
    assert loaded.problem() == (
        "fields not supported: spec.retry, spec.loadBalancer.slowStart, spec.timeout.http"
    )


def test_consistent_hash_and_a_zero_timeout_are_refused_by_translation_not_the_loader() -> None:
    hashed = load_one(
        TARGET_ROUTE + "loadBalancer: {type: ConsistentHash, consistentHash: {type: SourceIP}}\n"
    )
    assert hashed.problem() == "fields not supported: spec.loadBalancer.consistentHash"
    zero = load_one(TARGET_ROUTE + "timeout: {tcp: {connectTimeout: 0s}}\n")
    assert zero.connect_timeout == datetime.timedelta(0)
    assert zero.problem() == "timeout.tcp.connectTimeout must be greater than zero"


def test_naming_one_target_twice_names_it_once() -> None:
    loaded = load_one(TARGET_ROUTE + TARGET_ROUTE.replace("targetRefs:\n", ""))
    assert len(loaded.target_refs) == 1


ERRORS = [
    pytest.param(
        "loadBalancer: {type: Random}", "spec", "either targetRef or targetRefs", id="no-target"
    ),
    pytest.param(
        TARGET_ROUTE + "targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: eg}",
        "spec",
        "either targetRef or targetRefs",
        id="both-target-fields",
    ),
    pytest.param("targetRefs: []", "spec.targetRefs", "at least 1", id="empty-targets"),
    pytest.param(
        "targetRefs: [{group: '', kind: Service, name: x}]",
        "spec.targetRefs[0]",
        "targetRefs[*].group of gateway.networking.k8s.io",
        id="core-group",
    ),
    pytest.param(
        "targetRefs: [{group: gateway.networking.k8s.io, kind: Service, name: x}]",
        "spec.targetRefs[0]",
        "targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute",
        id="kind-outside-the-cel-list",
    ),
    pytest.param(
        "targetRefs: [{kind: Gateway, name: eg}]",
        "spec.targetRefs[0].group",
        "is required",
        id="group-required",
    ),
    pytest.param(
        "targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: eg,"
        " sectionName: http}]",
        "spec.targetRefs[0].sectionName",
        "not supported",
        id="section-name",
    ),
    pytest.param(
        "targetSelectors: [{kind: HTTPRoute, matchLabels: {app: x}}]",
        "spec.targetSelectors",
        "not supported",
        id="target-selectors",
    ),
    pytest.param(
        TARGET_ROUTE + "loadBalancer: {type: Fastest}",
        "spec.loadBalancer.type",
        "unsupported value 'Fastest'",
        id="load-balancer-enum",
    ),
    pytest.param(
        TARGET_ROUTE + "loadBalancer: {type: ConsistentHash}",
        "spec.loadBalancer",
        "consistentHash field needs to be set",
        id="consistent-hash-cel",
    ),
    pytest.param(
        TARGET_ROUTE + "loadBalancer: {type: Random, slowStart: {window: 1s}}",
        "spec.loadBalancer",
        "SlowStart is only supported for RoundRobin and LeastRequest",
        id="slow-start-cel",
    ),
    pytest.param(
        TARGET_ROUTE + "timeout: {tcp: {connectTimeout: 5 seconds}}",
        "spec.timeout.tcp.connectTimeout",
        "is not a Gateway API duration",
        id="duration-pattern",
    ),
    pytest.param(
        TARGET_ROUTE + "timeout: {tcp: {connectTimeout: 5}}",
        "spec.timeout.tcp.connectTimeout",
        "must be a string",
        id="duration-type",
    ),
    pytest.param(
        TARGET_ROUTE + "timeout: {tcp: {idleTimeout: 5s}}",
        "spec.timeout.tcp.idleTimeout",
        "unknown field",
        id="unknown-nested-field",
    ),
    pytest.param(
        TARGET_ROUTE + "loadBalancers: {type: Random}",
        "spec.loadBalancers",
        "unknown field",
        id="misspelt-field",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), ERRORS)
def test_malformed_policies_name_document_and_field(spec: str, field: str, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(policy(spec))
    error = caught.value
    assert error.document == "<manifest 0>#0 (BackendTrafficPolicy shop/tuned)"
    assert error.field == field
    assert message in error.reason


def test_unsupported_api_version_is_named() -> None:
    manifest = policy(TARGET_ROUTE).replace("v1alpha1", "v1")
    with pytest.raises(ManifestError, match="unsupported apiVersion"):
        load_manifests(manifest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5s", datetime.timedelta(seconds=5)),
        ("250ms", datetime.timedelta(milliseconds=250)),
        ("1h30m", datetime.timedelta(hours=1, minutes=30)),
        ("1m1s1ms", datetime.timedelta(minutes=1, seconds=1, milliseconds=1)),
        ("0s", datetime.timedelta(0)),
        ("99999ms", datetime.timedelta(milliseconds=99999)),
    ],
)
def test_gateway_api_durations(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "1.5s", "-1s", "100000s", "1d", "1s1s1s1s1s", " 5s"])
def test_text_outside_the_duration_pattern_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Gateway API duration"):
        parse_duration(text)


def test_value_class_validates_and_resources_index_policies() -> None:
    meta = ObjectMeta(name="p", namespace="shop")
    with pytest.raises(ValueError, match="either targetRef or targetRefs"):
        BackendTrafficPolicy(meta, target_refs=())
    with pytest.raises(ValueError, match="namespaced"):
        BackendTrafficPolicy(
            ObjectMeta(name="p"), target_refs=(PolicyTargetReference("Gateway", "eg"),)
        )
    with pytest.raises(ValueError, match="unsupported value 'Fast'"):
        BackendTrafficPolicy(meta, (PolicyTargetReference("Gateway", "eg"),), load_balancer="Fast")
    with pytest.raises(ValueError, match="must not be negative"):
        BackendTrafficPolicy(
            meta,
            (PolicyTargetReference("Gateway", "eg"),),
            connect_timeout=datetime.timedelta(seconds=-1),
        )
    item = BackendTrafficPolicy(meta, (PolicyTargetReference("Gateway", "eg"),), "Random")
    world = Resources().with_backend_traffic_policy(item)
    assert world.backend_traffic_policy("shop", "p") == item
    assert list(world.objects()) == [item]
    changed = world.with_backend_traffic_policy(
        BackendTrafficPolicy(meta, (PolicyTargetReference("Gateway", "eg"),), "RoundRobin")
    )
    assert len(changed.backend_traffic_policies) == 1
    assert changed.backend_traffic_policies[0].load_balancer == "RoundRobin"
    assert world.without_backend_traffic_policy("shop", "p") == Resources()
    with pytest.raises(ValueError, match="two objects named shop/p"):
        Resources(backend_traffic_policies=(item, item))
