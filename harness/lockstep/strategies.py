"""What the machine draws from: the change kinds swarm testing enables per example, and
HTTPRoutes over the catalogue (`worlds`)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from harness.lockstep.worlds import (
    GATEWAY,
    HEADER,
    LISTENERS,
    MISSING_SERVICE,
    ROUTE_HOSTNAMES,
    ROUTE_PATHS,
    SECOND_GATEWAY,
    SERVICES,
)
from model import Backend, Match, Route, Rule

__all__ = ["CHANGE_KINDS", "GATEWAY_CHANGE_KINDS", "route_strategy", "swarm"]


CHANGE_KINDS = (
    "create-route",
    "update-route",
    "delete-route",
    "add-listener",
    "remove-listener",
    "scale",
    "backend-policy",
    "extension-fault",
    "extension-recover",
    "fail-open",
    "resync",
)
"""What the compound rules may do in a row. A resync is among them: a controller's periodic
resync can come at any moment, and it is what makes an extension change take effect."""
GATEWAY_CHANGE_KINDS = ("create-gateway", "delete-gateway")
"""The second Gateway's changes (with `StackSettings.gateways` = 2 only)."""
PARENT_REFS = ((GATEWAY,), (SECOND_GATEWAY,), (GATEWAY, SECOND_GATEWAY))


def swarm() -> st.SearchStrategy[frozenset[str]]:
    """Swarm testing for the compound rules, as Hypothesis does for the rules themselves: each
    example enables a random subset of the change kinds, so no fixed weight starves a short
    path (an extension change then a resync; a burst of route creations)."""
    return st.sets(st.sampled_from(CHANGE_KINDS), min_size=1).map(frozenset)


def _rules() -> st.SearchStrategy[tuple[Rule, ...]]:
    services = st.sampled_from((*SERVICES, MISSING_SERVICE))
    match = st.builds(
        Match,
        path_kind=st.sampled_from(("PathPrefix", "Exact")),
        path=st.sampled_from(ROUTE_PATHS),
        headers=st.sampled_from(((), (HEADER,))),
    )
    backends = st.one_of(
        services.map(lambda service: (Backend(service),)),
        st.tuples(services, services).map(lambda pair: (Backend(pair[0], 1), Backend(pair[1], 0))),
    )
    one_rule = st.builds(lambda m, b: Rule((m,), b), match, backends)
    return st.lists(one_rule, min_size=1, max_size=2).map(tuple)


def route_strategy(name: str, created: int, gateways: int = 1) -> st.SearchStrategy[Route]:
    """HTTPRoutes over the catalogue: overlapping hostnames, prefixes and sections; with two
    Gateways, parentRefs to either or both."""
    parents: dict[str, Any] = {}
    if gateways == 2:
        parents["gateways"] = st.sampled_from(PARENT_REFS)
    return st.builds(
        Route,
        name=st.just(name),
        created=st.just(created),
        rules=_rules(),
        hostnames=st.lists(st.sampled_from(ROUTE_HOSTNAMES), max_size=2, unique=True).map(tuple),
        section=st.sampled_from((None, None, *LISTENERS)),
        **parents,
    )
