"""Stage 1, policies: which BackendTrafficPolicy sets the clusters of each HTTPRoute, and status.

Rules of this module (Envoy Gateway's semantics, internal/gatewayapi/backendtrafficpolicy.go):

- A policy's targetRefs name a Gateway or an HTTPRoute in the policy's own namespace. A target
  that does not exist, or is not ours to serve (a Gateway of another class, a GRPCRoute), gets
  Accepted=False TargetNotFound, reported against the target reference itself.
- Policies are considered oldest first (creationTimestamp, then namespace/name; without a
  timestamp after every timestamped one). The first valid policy to name a target holds it; a
  later one naming the same target gets Accepted=False Conflicted on that target's ancestors.
- A policy that sets fields not implemented here (or an invalid value Envoy would refuse) is
  Accepted=False Invalid, applies nowhere and holds no target: it is never half-applied.
- The more specific policy wins entirely (no field-wise merge): a route's clusters take the
  policy holding the route, else the policy holding the oldest served Gateway the route is
  attached to (clusters are shared by every Gateway of the snapshot, so one must be chosen). A
  Gateway policy that loses a route of its Gateway this way gets Overridden=True naming it.
- Ancestors are Gateways: the Gateway itself for a Gateway target, each served Gateway among an
  HTTPRoute's parentRefs (with its sectionName) for a route target. An ancestor reached through
  several targets of one policy is Accepted=False when any of them failed (messages joined).
- Only Cluster resources change (lb_policy, connect_timeout); ClusterLoadAssignments do not.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence

import attrs

from sut.gatewayapi import (
    GATEWAY_GROUP,
    BackendTrafficPolicy,
    BackendTrafficPolicyStatus,
    Condition,
    Gateway,
    ObjectKey,
    ParentReference,
    PolicyAncestorStatus,
    PolicyTargetReference,
    Reason,
    Resources,
)
from sut.translate.ir import ClusterSettings
from sut.translate.precedence import creation_order

__all__ = ["PolicyResolution", "resolve_backend_traffic_policies"]

_SERVED_KINDS = ("Gateway", "HTTPRoute")


@attrs.frozen
class PolicyResolution:
    settings: Mapping[ObjectKey, ClusterSettings]
    """Cluster settings per HTTPRoute key; a route without an entry keeps the defaults."""
    statuses: tuple[BackendTrafficPolicyStatus, ...]
    """One per BackendTrafficPolicy, sorted by key."""


def _policy_order(policy: BackendTrafficPolicy) -> tuple[datetime.datetime, ObjectKey]:
    return (creation_order(policy.metadata.creation_timestamp), policy.key)


def _gateway_ref(key: ObjectKey, section_name: str | None = None) -> ParentReference:
    return ParentReference(name=key.name, namespace=key.namespace, section_name=section_name)


def _target_ref(target: PolicyTargetReference, namespace: str) -> ParentReference:
    return ParentReference(
        name=target.name, namespace=namespace, group=target.group, kind=target.kind
    )


class _Ancestors:
    """Per policy, per ancestor: the problems found (none means Accepted) and overridden routes."""

    def __init__(self) -> None:
        self.problems: dict[ParentReference, list[tuple[str, str]]] = {}
        self.overridden: dict[ParentReference, list[str]] = {}

    def accept(self, ancestors: Iterable[ParentReference]) -> None:
        for ancestor in ancestors:
            self.problems.setdefault(ancestor, [])

    def refuse(self, ancestors: Iterable[ParentReference], reason: str, message: str) -> None:
        for ancestor in ancestors:
            self.problems.setdefault(ancestor, []).append((reason, message))

    def status(self, policy: BackendTrafficPolicy) -> BackendTrafficPolicyStatus:
        generation = policy.metadata.generation
        result = []
        for ancestor, problems in self.problems.items():
            if problems:
                accepted = Condition.of(
                    Reason.ACCEPTED,
                    False,
                    problems[0][0],
                    "; ".join(dict.fromkeys(message for _, message in problems)),
                    generation,
                )
            else:
                accepted = Condition.of(
                    Reason.ACCEPTED, True, Reason.ACCEPTED, "policy accepted", generation
                )
            conditions = [accepted]
            overridden = self.overridden.get(ancestor)
            if overridden:
                conditions.append(
                    Condition.of(
                        Reason.OVERRIDDEN,
                        True,
                        Reason.OVERRIDDEN,
                        "overridden for " + ", ".join(overridden),
                        generation,
                    )
                )
            result.append(PolicyAncestorStatus(ancestor_ref=ancestor, conditions=tuple(conditions)))
        return BackendTrafficPolicyStatus(policy=policy.key, ancestors=tuple(result))


def _resolve_target(
    target: PolicyTargetReference,
    key: ObjectKey,
    resources: Resources,
    served: Mapping[ObjectKey, Gateway],
) -> tuple[ParentReference, ...] | str:
    """The ancestors of an existing target we serve, or why it is not found."""
    where = f"{target.kind} {key}"
    if target.kind not in _SERVED_KINDS:
        return f"{where} not found: this gateway serves only Gateway and HTTPRoute targets"
    if target.kind == "Gateway":
        if key in served:
            return (_gateway_ref(key),)
        existing = resources.gateway(key.namespace, key.name)
        if existing is None:
            return f"{where} not found"
        return f"{where} is not served by this controller (class {existing.gateway_class_name})"
    route = resources.http_route(key.namespace, key.name)
    if route is None:
        return f"{where} not found"
    ancestors: dict[ParentReference, None] = {}
    for ref in route.parent_refs:
        gateway = ObjectKey(ref.namespace or key.namespace, ref.name)
        if (ref.group, ref.kind) == (GATEWAY_GROUP, "Gateway") and gateway in served:
            ancestors[_gateway_ref(gateway, ref.section_name)] = None
    if not ancestors:
        return f"{where} has no parent Gateway served by this controller"
    return tuple(ancestors)


def resolve_backend_traffic_policies(
    resources: Resources,
    served: Sequence[Gateway],
    attached: Mapping[ObjectKey, Iterable[ObjectKey]],
) -> PolicyResolution:
    """Cluster settings per route and the status of every policy.

    `served` are the served Gateways oldest first; `attached` maps each HTTPRoute key to the
    served Gateways it is attached to (Accepted on at least one of their listeners).
    """
    served_by_key = {gateway.key: gateway for gateway in served}
    rank = {gateway.key: index for index, gateway in enumerate(served)}
    holders: dict[tuple[str, ObjectKey], BackendTrafficPolicy] = {}
    notes: dict[ObjectKey, _Ancestors] = {}
    for policy in sorted(resources.backend_traffic_policies, key=_policy_order):
        note = notes.setdefault(policy.key, _Ancestors())
        problem = policy.problem()
        for target in policy.target_refs:
            key = ObjectKey(policy.metadata.namespace, target.name)
            resolved = _resolve_target(target, key, resources, served_by_key)
            if isinstance(resolved, str):
                note.refuse([_target_ref(target, key.namespace)], Reason.TARGET_NOT_FOUND, resolved)
                continue
            if problem is not None:
                note.refuse(resolved, Reason.INVALID, problem)
                continue
            holder = holders.setdefault((target.kind, key), policy)
            if holder is not policy:
                note.refuse(
                    resolved,
                    Reason.CONFLICTED,
                    f"{target.kind} {key} is already targeted by the older BackendTrafficPolicy"
                    f" {holder.key}",
                )
                continue
            note.accept(resolved)

    settings: dict[ObjectKey, ClusterSettings] = {}
    for route, gateways in sorted(attached.items()):
        ordered = sorted(set(gateways), key=lambda gateway: rank[gateway])
        chosen = holders.get(("HTTPRoute", route))
        if chosen is None:
            chosen = next(
                (
                    holders[("Gateway", gateway)]
                    for gateway in ordered
                    if ("Gateway", gateway) in holders
                ),
                None,
            )
        if chosen is None:
            continue
        settings[route] = ClusterSettings(
            load_balancer=chosen.load_balancer, connect_timeout=chosen.connect_timeout
        )
        for gateway in ordered:
            loser = holders.get(("Gateway", gateway))
            if loser is not None and loser is not chosen:
                notes[loser.key].overridden.setdefault(_gateway_ref(gateway), []).append(
                    f"HTTPRoute {route} (by BackendTrafficPolicy {chosen.key})"
                )

    policies = sorted(resources.backend_traffic_policies, key=lambda policy: policy.key)
    return PolicyResolution(
        settings=settings,
        statuses=tuple(notes[policy.key].status(policy) for policy in policies),
    )
