"""Envoy Gateway's BackendTrafficPolicy, reduced to the cluster settings translated here.

The document is far larger than the value: the policy keeps a load balancer type and a TCP
connect timeout, and the names of the fields it does not implement, so translation can refuse
such a policy in its status instead of applying half of it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.meta import ObjectKey, ObjectMeta, namespaced
from sut.gatewayapi.schema import (
    GATEWAY_GROUP,
    FieldError,
    as_tuple,
    length,
    one_of,
    optional,
    parse_duration,
    rule,
)

__all__ = [
    "LOAD_BALANCER_TYPES",
    "POLICY_TARGET_KINDS",
    "BackendTrafficPolicy",
    "PolicyTargetReference",
    "read_backend_traffic_policy",
]

POLICY_TARGET_KINDS = (
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "UDPRoute",
    "TCPRoute",
    "TLSRoute",
)
"""Kinds a BackendTrafficPolicy may target (the CRD's CEL rule); only Gateway and HTTPRoute
exist in `Resources`, so a target of another kind is never found."""

LOAD_BALANCER_TYPES = ("ConsistentHash", "LeastRequest", "Random", "RoundRobin")
"""`spec.loadBalancer.type` values the CRD allows (ConsistentHash is not implemented here)."""


@attrs.frozen(order=True)
class PolicyTargetReference:
    """A `LocalPolicyTargetReference`: the target lives in the policy's own namespace."""

    kind: str = attrs.field(validator=length(1, 63))
    name: str = attrs.field(validator=length(1, 253))
    group: str = GATEWAY_GROUP

    def __attrs_post_init__(self) -> None:
        # The CRD's CEL rules on spec.targetRefs.
        if self.group != GATEWAY_GROUP:
            raise ValueError(f"this policy can only have a targetRefs[*].group of {GATEWAY_GROUP}")
        if self.kind not in POLICY_TARGET_KINDS:
            raise ValueError(
                "this policy can only have a targetRefs[*].kind of " + "/".join(POLICY_TARGET_KINDS)
            )


def _target_document(document: dict[str, Any]) -> dict[str, Any]:
    if "sectionName" in document:
        raise decode.Invalid(
            "is not supported: target a whole Gateway or HTTPRoute", ("sectionName",)
        )
    if "group" not in document:
        raise decode.Invalid("is required", ("group",))  # defaulted in Python, not in YAML
    return document


def _unique_targets(refs: Iterable[PolicyTargetReference]) -> tuple[PolicyTargetReference, ...]:
    """In order, each target once: naming one target twice means naming it once."""
    return tuple(dict.fromkeys(refs))


def _not_negative(value: datetime.timedelta) -> str | None:
    return "connectTimeout must not be negative" if value < datetime.timedelta(0) else None


@attrs.frozen
class BackendTrafficPolicy:
    """`load_balancer` and `connect_timeout` are None when the policy leaves them unset (the proxy
    default then applies). `unsupported_fields` names the Envoy Gateway fields the manifest sets
    that this gateway does not implement (as `spec.retry`, `spec.loadBalancer.slowStart`).
    """

    metadata: ObjectMeta = attrs.field(validator=namespaced)
    target_refs: tuple[PolicyTargetReference, ...] = attrs.field(
        converter=_unique_targets,
        validator=rule(
            lambda refs: None if refs else "either targetRef or targetRefs must be used"
        ),
    )
    load_balancer: str | None = attrs.field(
        default=None, validator=optional(one_of(*LOAD_BALANCER_TYPES))
    )
    connect_timeout: datetime.timedelta | None = attrs.field(
        default=None, validator=optional(rule(_not_negative))
    )
    unsupported_fields: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def problem(self) -> str | None:
        """Why translation cannot apply this policy as written (a status message), or None."""
        if self.unsupported_fields:
            return "fields not supported: " + ", ".join(self.unsupported_fields)
        if self.load_balancer == "ConsistentHash":
            return "loadBalancer type ConsistentHash is not supported"
        if self.connect_timeout is not None and self.connect_timeout <= datetime.timedelta(0):
            # Envoy requires Cluster.connect_timeout > 0 and would refuse the whole update.
            return "timeout.tcp.connectTimeout must be greater than zero"
        return None


_UNSUPPORTED = (
    "mergeType",
    "rateLimit",
    "bandwidthLimit",
    "faultInjection",
    "admissionControl",
    "useClientProtocol",
    "compression",
    "compressor",
    "responseOverride",
    "httpUpgrade",
    "requestBuffer",
    "telemetry",
    "routingType",
    "retry",
    "proxyProtocol",
    "tcpKeepalive",
    "healthCheck",
    "circuitBreaker",
    "connection",
    "dns",
    "http2",
)
"""BackendTrafficPolicySpec fields of Envoy Gateway (api/v1alpha1) not implemented here: a policy
setting one loads, and translation refuses it in its status (never half-applied)."""
_LOAD_BALANCER_EXTRAS = ("consistentHash", "endpointOverride", "slowStart", "zoneAware")
_FIELD_PATHS = {
    "target_refs": (),
    "load_balancer": ("loadBalancer", "type"),
    "connect_timeout": ("timeout", "tcp", "connectTimeout"),
}


def read_backend_traffic_policy(root: dict[str, Any], metadata: ObjectMeta) -> BackendTrafficPolicy:
    try:
        return _policy(decode.mapping(root.get("spec")), metadata)
    except decode.Invalid as error:
        raise error.under("spec") from None


def _object(value: Any, path: tuple[str, ...], known: tuple[str, ...]) -> dict[str, Any]:
    try:
        inner = decode.mapping(value)
        decode.only(inner, known)
    except decode.Invalid as error:
        raise error.under(*path) from None
    return inner


def _policy(spec: dict[str, Any], metadata: ObjectMeta) -> BackendTrafficPolicy:
    decode.only(
        spec,
        ("targetRef", "targetRefs", "targetSelectors", "loadBalancer", "timeout", *_UNSUPPORTED),
    )
    unsupported = [f"spec.{name}" for name in _UNSUPPORTED if name in spec]
    targets = _targets(spec)
    load_balancer = (
        _load_balancer(spec["loadBalancer"], unsupported) if "loadBalancer" in spec else None
    )
    connect_timeout = _connect_timeout(spec["timeout"], unsupported) if "timeout" in spec else None
    try:
        return BackendTrafficPolicy(
            metadata=metadata,
            target_refs=targets,
            load_balancer=load_balancer,
            connect_timeout=connect_timeout,
            unsupported_fields=unsupported,
        )
    except FieldError as error:
        raise decode.Invalid(error.reason, _FIELD_PATHS.get(error.field, ())) from None


def _targets(spec: dict[str, Any]) -> tuple[PolicyTargetReference, ...]:
    """`targetRefs`, or the deprecated single `targetRef`: exactly one of them."""
    if "targetSelectors" in spec:
        raise decode.Invalid(
            "is not supported: name the targets in targetRefs", ("targetSelectors",)
        )
    if ("targetRef" in spec) == ("targetRefs" in spec):
        raise decode.Invalid("either targetRef or targetRefs must be used")
    key = "targetRef" if "targetRef" in spec else "targetRefs"
    kind: Any = PolicyTargetReference if key == "targetRef" else tuple[PolicyTargetReference, ...]
    try:
        read = decode.structure(spec[key], kind)
    except decode.Invalid as error:
        raise error.under(key) from None
    targets: tuple[PolicyTargetReference, ...] = (read,) if key == "targetRef" else read
    if not targets:
        raise decode.Invalid("must have at least 1 item", (key,))
    return targets


def _load_balancer(value: Any, unsupported: list[str]) -> str:
    """`loadBalancer.type`, after the CRD's CEL rules on LoadBalancer; notes what is not kept."""
    balancer = _object(value, ("loadBalancer",), ("type", *_LOAD_BALANCER_EXTRAS))
    kind = balancer.get("type")
    if not isinstance(kind, str):
        problem = "is required" if kind is None else "must be a string"
        raise decode.Invalid(problem, ("loadBalancer", "type"))
    if (kind == "ConsistentHash") != ("consistentHash" in balancer):
        raise decode.Invalid(
            "If LoadBalancer type is consistentHash, consistentHash field needs to be set.",
            ("loadBalancer",),
        )
    if kind in ("Random", "ConsistentHash") and "slowStart" in balancer:
        raise decode.Invalid(
            "Currently SlowStart is only supported for RoundRobin and LeastRequest load balancers.",
            ("loadBalancer",),
        )
    unsupported += [
        f"spec.loadBalancer.{name}" for name in _LOAD_BALANCER_EXTRAS if name in balancer
    ]
    return kind


def _connect_timeout(value: Any, unsupported: list[str]) -> datetime.timedelta | None:
    """`timeout.tcp.connectTimeout` as a duration; notes `timeout.http`, which is not kept."""
    timeout = _object(value, ("timeout",), ("tcp", "http"))
    if "http" in timeout:
        unsupported.append("spec.timeout.http")
    if "tcp" not in timeout:
        return None
    path = ("timeout", "tcp", "connectTimeout")
    text = _object(timeout["tcp"], path[:2], path[2:]).get("connectTimeout")
    if text is None:
        return None
    if not isinstance(text, str):
        raise decode.Invalid(f"must be a string, got {decode.type_name(text)}", path)
    try:
        return parse_duration(text)
    except ValueError as error:
        raise decode.Invalid(str(error), path) from None


decode.shape(PolicyTargetReference, accepted=("sectionName",), prepare=_target_document)
