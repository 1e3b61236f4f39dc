"""Stage 1, attachment: which listeners each HTTPRoute attaches to, and the route's status.

Rules of this module:

- Attachment of a parentRef: listeners selected by sectionName/port (else NoMatchingParent),
  allowing the route's kind and namespace (else NotAllowedByListeners), with intersecting
  hostnames (else NoMatchingListenerHostname). ParentRefs to Gateways we do not serve get no
  status from us: their controller writes it.
- `attachedRoutes` counts the routes Accepted on the listener (ListenerStatus.AttachedRoutes,
  Gateway API v1.5: "The AttachedRoutes number represents the number of Routes with the
  Accepted condition set to "True" that have been attached to this Listener. Routes with any
  other value for the Accepted condition MUST NOT be included in this count."): a route counts
  on each listener it was accepted on through a parentRef whose Accepted is True, which needs a
  hostname intersecting that listener's (conformance HTTPRouteHostnameIntersection).
- Dropped rules (see `planning`): the route stays Accepted with PartiallyInvalid ("Dropped Rule
  ..."); a route whose every rule is dropped is Accepted=False UnsupportedValue and attaches
  nowhere.
"""

from __future__ import annotations

import attrs

from sut.gatewayapi import (
    GATEWAY_GROUP,
    Condition,
    HTTPRoute,
    HTTPRouteStatus,
    ObjectKey,
    ParentReference,
    Reason,
    Resources,
    RouteParentStatus,
)
from sut.translate.hostnames import route_hostnames_on_listener
from sut.translate.listeners import HTTPROUTE_KIND, ListenerState
from sut.translate.options import TranslateOptions
from sut.translate.planning import RulePlan, plan_route

__all__ = ["RouteResult", "RoutesOnListener", "attach_routes", "route_result"]


@attrs.frozen
class RouteResult:
    status: HTTPRouteStatus
    plans: tuple[RulePlan, ...]
    attachments: tuple[tuple[ListenerState, tuple[str, ...]], ...]
    """(listener, the route's hostnames on it) for every listener the route is accepted on."""


RoutesOnListener = dict[int, list[tuple[HTTPRoute, RouteResult, tuple[str, ...]]]]
"""By `id()` of a ListenerState: its routes, each with all its hostnames on that listener."""


def route_result(
    route: HTTPRoute,
    listeners_by_gateway: dict[ObjectKey, list[ListenerState]],
    resources: Resources,
    options: TranslateOptions,
) -> RouteResult:
    generation = route.metadata.generation
    planned = plan_route(route, resources, options)
    plans = planned.rules
    if planned.refs_problem is None:
        resolved = Condition.of(
            Reason.RESOLVED_REFS, True, Reason.RESOLVED_REFS, "references resolved", generation
        )
    else:
        resolved = Condition.of(
            Reason.RESOLVED_REFS,
            False,
            planned.refs_problem[0],
            planned.refs_problem[1],
            generation,
        )
    dropped = [plan for plan in plans if plan.problem is not None]
    parents: list[RouteParentStatus] = []
    attachments: list[tuple[ListenerState, tuple[str, ...]]] = []
    for ref in route.parent_refs:
        if (ref.group, ref.kind) != (GATEWAY_GROUP, "Gateway"):
            continue
        gateway_key = ObjectKey(ref.namespace or route.metadata.namespace, ref.name)
        states = listeners_by_gateway.get(gateway_key)
        if states is None:
            continue  # not a Gateway we serve: its controller writes this status
        accepted, attached = _attach(route, ref, states, resources, generation)
        if accepted.is_true and len(dropped) == len(plans):
            accepted = Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.UNSUPPORTED_VALUE,
                "all rules are invalid: "
                + "; ".join(f"rule {p.index}: {p.problem}" for p in dropped),
                generation,
            )
        else:
            attachments.extend(attached)
        conditions = [accepted, resolved]
        if accepted.is_true and dropped:
            conditions.append(
                Condition.of(
                    Reason.PARTIALLY_INVALID,
                    True,
                    Reason.UNSUPPORTED_VALUE,
                    "Dropped Rule(s) " + "; ".join(f"{p.index}: {p.problem}" for p in dropped),
                    generation,
                )
            )
        parents.append(RouteParentStatus(parent_ref=ref, conditions=tuple(conditions)))
    return RouteResult(
        status=HTTPRouteStatus(route=route.key, parents=tuple(parents)),
        plans=plans,
        attachments=tuple(attachments),
    )


def _namespace_allowed(state: ListenerState, route: HTTPRoute, resources: Resources) -> bool:
    namespaces = state.spec.allowed_routes.namespaces
    if namespaces.from_ == "All":
        return True
    if namespaces.from_ == "Same":
        return route.metadata.namespace == state.gateway.metadata.namespace
    assert namespaces.selector is not None
    return namespaces.selector.matches(resources.namespace_labels(route.metadata.namespace))


def _attach(
    route: HTTPRoute,
    ref: ParentReference,
    states: list[ListenerState],
    resources: Resources,
    generation: int,
) -> tuple[Condition, list[tuple[ListenerState, tuple[str, ...]]]]:
    selected = [
        state
        for state in states
        if (ref.section_name is None or state.spec.name == ref.section_name)
        and (ref.port is None or state.spec.port == ref.port)
    ]
    if not selected:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NO_MATCHING_PARENT,
                "no listener matches the parentRef's sectionName/port",
                generation,
            ),
            [],
        )
    allowed = [
        state
        for state in selected
        if HTTPROUTE_KIND in state.supported_kinds and _namespace_allowed(state, route, resources)
    ]
    if not allowed:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NOT_ALLOWED_BY_LISTENERS,
                "no selected listener allows this route's kind and namespace",
                generation,
            ),
            [],
        )
    attached: list[tuple[ListenerState, tuple[str, ...]]] = []
    for state in allowed:
        hostnames = route_hostnames_on_listener(state.spec.hostname, route.hostnames)
        if hostnames:
            attached.append((state, hostnames))
    if not attached:
        return (
            Condition.of(
                Reason.ACCEPTED,
                False,
                Reason.NO_MATCHING_LISTENER_HOSTNAME,
                "no listener hostname intersects the route's hostnames",
                generation,
            ),
            [],
        )
    return (
        Condition.of(Reason.ACCEPTED, True, Reason.ACCEPTED, "route accepted", generation),
        attached,
    )


def attach_routes(
    results: list[tuple[HTTPRoute, RouteResult]],
) -> tuple[RoutesOnListener, dict[ObjectKey, set[ObjectKey]]]:
    """Record each accepted route on its listeners (attachedRoutes); the routes of every
    listener, and the served Gateways of every route."""
    routes_on: RoutesOnListener = {}
    seen: dict[tuple[int, ObjectKey], tuple[HTTPRoute, RouteResult, tuple[str, ...]]] = {}
    gateways_of: dict[ObjectKey, set[ObjectKey]] = {}
    for route, result in results:
        for state, hostnames in result.attachments:
            state.attached.add(route.key)  # accepted on this listener: attachedRoutes
            gateways_of.setdefault(route.key, set()).add(state.gateway.key)
            key = (id(state), route.key)
            previous = seen.get(key)
            merged = tuple(sorted(set(hostnames) | set(previous[2] if previous else ())))
            seen[key] = (route, result, merged)
    for (state_id, _), entry in seen.items():
        routes_on.setdefault(state_id, []).append(entry)
    return routes_on, gateways_of
