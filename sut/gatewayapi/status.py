"""Status conditions as the Gateway API defines them, as immutable values.

Translation computes these (stage 1); nothing writes them back to a cluster. The condition types
and reasons are the spec's own strings (apis/v1/gateway_types.go, shared_types.go), so tests and
the harness can compare them with what a conformant controller would report.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from sut.gatewayapi.gateway import RouteGroupKind
from sut.gatewayapi.httproute import ParentReference
from sut.gatewayapi.meta import ObjectKey

__all__ = [
    "BackendTrafficPolicyStatus",
    "Condition",
    "ConditionStatus",
    "GatewayClassStatus",
    "GatewayStatus",
    "HTTPRouteStatus",
    "ListenerStatus",
    "PolicyAncestorStatus",
    "Reason",
    "RouteParentStatus",
    "Statuses",
    "find_condition",
    "statuses_as_dict",
]


class ConditionStatus:
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason:
    """Condition types and reasons, spelled as in the spec."""

    # condition types
    ACCEPTED = "Accepted"
    PROGRAMMED = "Programmed"
    RESOLVED_REFS = "ResolvedRefs"
    CONFLICTED = "Conflicted"
    PARTIALLY_INVALID = "PartiallyInvalid"
    # Gateway / GatewayClass reasons
    LISTENERS_NOT_VALID = "ListenersNotValid"
    UNSUPPORTED_ADDRESS = "UnsupportedAddress"
    INVALID = "Invalid"
    # Listener reasons
    PORT_UNAVAILABLE = "PortUnavailable"
    UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
    UNSUPPORTED_VALUE = "UnsupportedValue"
    INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
    INVALID_ROUTE_KINDS = "InvalidRouteKinds"
    REF_NOT_PERMITTED = "RefNotPermitted"
    PROTOCOL_CONFLICT = "ProtocolConflict"
    HOSTNAME_CONFLICT = "HostnameConflict"
    NO_CONFLICTS = "NoConflicts"
    # Route reasons
    NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
    NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
    NO_MATCHING_PARENT = "NoMatchingParent"
    BACKEND_NOT_FOUND = "BackendNotFound"
    INVALID_KIND = "InvalidKind"
    # Policy reasons (apis/v1/policy_types.go) and Envoy Gateway's Overridden condition
    TARGET_NOT_FOUND = "TargetNotFound"
    OVERRIDDEN = "Overridden"


_STATUSES = (ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN)


@attrs.frozen
class Condition:
    type: str
    status: str
    reason: str
    message: str = ""
    observed_generation: int = 0

    def __attrs_post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"condition status must be one of {_STATUSES}, got {self.status!r}")
        if not self.type or not self.reason:
            raise ValueError("a condition needs a type and a reason")

    @property
    def is_true(self) -> bool:
        return self.status == ConditionStatus.TRUE

    @classmethod
    def of(
        cls, type_: str, ok: bool, reason: str, message: str = "", generation: int = 0
    ) -> Condition:
        status = ConditionStatus.TRUE if ok else ConditionStatus.FALSE
        return cls(type_, status, reason, message, generation)


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    for condition in conditions:
        if condition.type == type_:
            return condition
    return None


@attrs.frozen
class GatewayClassStatus:
    name: str
    conditions: tuple[Condition, ...]


@attrs.frozen
class ListenerStatus:
    name: str
    supported_kinds: tuple[RouteGroupKind, ...]
    attached_routes: int
    conditions: tuple[Condition, ...]

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


@attrs.frozen
class GatewayStatus:
    gateway: ObjectKey
    conditions: tuple[Condition, ...]
    listeners: tuple[ListenerStatus, ...]

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)

    def listener(self, name: str) -> ListenerStatus | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None


@attrs.frozen
class RouteParentStatus:
    parent_ref: ParentReference
    conditions: tuple[Condition, ...]

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


@attrs.frozen
class HTTPRouteStatus:
    route: ObjectKey
    parents: tuple[RouteParentStatus, ...]

    def parent(self, parent_ref: ParentReference) -> RouteParentStatus | None:
        for parent in self.parents:
            if parent.parent_ref == parent_ref:
                return parent
        return None


@attrs.frozen
class PolicyAncestorStatus:
    """A policy's conditions with respect to one ancestor (Gateway API `PolicyAncestorStatus`).

    The ancestor is a Gateway the policy's target belongs to; for a target that cannot be
    resolved it is the target reference itself, so the TargetNotFound condition has a place.
    """

    ancestor_ref: ParentReference
    conditions: tuple[Condition, ...]

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


@attrs.frozen
class BackendTrafficPolicyStatus:
    policy: ObjectKey
    ancestors: tuple[PolicyAncestorStatus, ...]

    def ancestor(self, ancestor_ref: ParentReference) -> PolicyAncestorStatus | None:
        for ancestor in self.ancestors:
            if ancestor.ancestor_ref == ancestor_ref:
                return ancestor
        return None


@attrs.frozen
class Statuses:
    """Status of every object translation is responsible for, sorted by key."""

    gateway_classes: tuple[GatewayClassStatus, ...] = ()
    gateways: tuple[GatewayStatus, ...] = ()
    http_routes: tuple[HTTPRouteStatus, ...] = ()
    backend_traffic_policies: tuple[BackendTrafficPolicyStatus, ...] = ()

    def gateway(self, namespace: str, name: str) -> GatewayStatus | None:
        key = ObjectKey(namespace, name)
        for status in self.gateways:
            if status.gateway == key:
                return status
        return None

    def http_route(self, namespace: str, name: str) -> HTTPRouteStatus | None:
        key = ObjectKey(namespace, name)
        for status in self.http_routes:
            if status.route == key:
                return status
        return None

    def backend_traffic_policy(
        self, namespace: str, name: str
    ) -> BackendTrafficPolicyStatus | None:
        key = ObjectKey(namespace, name)
        for status in self.backend_traffic_policies:
            if status.policy == key:
                return status
        return None


def _condition_dict(condition: Condition) -> dict[str, object]:
    return {
        "type": condition.type,
        "status": condition.status,
        "reason": condition.reason,
        "message": condition.message,
        "observedGeneration": condition.observed_generation,
    }


def _parent_ref_dict(ref: ParentReference) -> dict[str, object]:
    result: dict[str, object] = {"group": ref.group, "kind": ref.kind, "name": ref.name}
    if ref.namespace is not None:
        result["namespace"] = ref.namespace
    if ref.section_name is not None:
        result["sectionName"] = ref.section_name
    if ref.port is not None:
        result["port"] = ref.port
    return result


def statuses_as_dict(statuses: Statuses) -> dict[str, object]:
    """Statuses shaped like the Kubernetes `status` stanzas (for reports and golden files).

    `backendTrafficPolicies` appears only when there is a policy, so worlds without one render
    exactly as they did before policies existed.
    """
    result: dict[str, object] = {
        "gateways": [
            {
                "namespace": item.gateway.namespace,
                "name": item.gateway.name,
                "conditions": [_condition_dict(c) for c in item.conditions],
                "listeners": [
                    {
                        "name": listener.name,
                        "supportedKinds": [
                            {"group": kind.group, "kind": kind.kind}
                            for kind in listener.supported_kinds
                        ],
                        "attachedRoutes": listener.attached_routes,
                        "conditions": [_condition_dict(c) for c in listener.conditions],
                    }
                    for listener in item.listeners
                ],
            }
            for item in statuses.gateways
        ],
        "httpRoutes": [
            {
                "namespace": item.route.namespace,
                "name": item.route.name,
                "parents": [
                    {
                        "parentRef": _parent_ref_dict(parent.parent_ref),
                        "conditions": [_condition_dict(c) for c in parent.conditions],
                    }
                    for parent in item.parents
                ],
            }
            for item in statuses.http_routes
        ],
    }
    if statuses.backend_traffic_policies:
        result["backendTrafficPolicies"] = [
            {
                "namespace": item.policy.namespace,
                "name": item.policy.name,
                "ancestors": [
                    {
                        "ancestorRef": _parent_ref_dict(ancestor.ancestor_ref),
                        "conditions": [_condition_dict(c) for c in ancestor.conditions],
                    }
                    for ancestor in item.ancestors
                ],
            }
            for item in statuses.backend_traffic_policies
        ]
    return result
