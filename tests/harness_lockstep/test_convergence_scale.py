"""Convergence at 10,000 routes through real Envoy: reading what Envoy holds takes a second or
two there (a whole dump of ~10 MB); convergence still holds within its bound, and the
comparison still sees a route that was changed in the snapshot but never sent."""

from __future__ import annotations

import attrs
import pytest

from harness.lockstep.envoy_state import EnvoyView, snapshot_differences
from harness.lockstep.stack import Stack, StackSettings
from sut.gatewayapi import PathMatch, RouteMatch
from sut.xds import Resource, ResourceType
from tests.harness_lockstep.scale import SERVICES, many_routes

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

ROUTES = 10_000
MATCHES_PER_RULE = 2
"""5,000 clusters and as many ClusterLoadAssignments: 10,002 resources, more than twice what the
old cache held, and few enough clusters for Envoy to build in a few seconds."""

SETTINGS = StackSettings(extension=False, initial_fetch_timeout=4.0)
"""No extension (a PostRouteModify call per route); a longer fetch timeout, so the bound (half
of it) leaves Envoy time to rebuild a RouteConfiguration of 10,000 routes on a busy machine."""


def _envoy_routes(view: EnvoyView) -> int:
    return sum(
        len(host.get("routes", ()))
        for config in view.route_configurations.values()
        for host in config.get("virtual_hosts", ())
    )


def test_convergence_at_10000_routes_holds_within_its_bound_and_sees_a_route_not_sent():
    world = many_routes(ROUTES, MATCHES_PER_RULE)
    with Stack(SETTINGS) as stack:
        for service in SERVICES:
            stack.scale("default", service, 1)
        stack.start(world)
        first = stack.converge()
        assert first.converged, first.describe()
        assert first.view is not None and _envoy_routes(first.view) == ROUTES

        route = world.http_routes[0]
        rule = route.rules[0]
        moved = attrs.evolve(
            rule, matches=(RouteMatch(path=PathMatch("PathPrefix", "/moved")), *rule.matches[1:])
        )
        stack.apply(world.with_route(attrs.evolve(route, rules=(moved,))))
        second = stack.converge()  # within the bound: a read begun before it found the snapshot
        assert second.converged, second.describe()
        assert second.view is not None

        snapshot = stack.published_snapshot()
        assert snapshot is not None
        name = next(iter(snapshot.of_type(ResourceType.ROUTE)))
        message = snapshot.of_type(ResourceType.ROUTE)[name].message()
        message.virtual_hosts[-1].routes[-1].match.prefix = "/never-sent"
        not_sent = snapshot.replacing(Resource.from_message(message))
        assert snapshot_differences(second.view, not_sent) == [
            f"RouteConfiguration {name!r} differs from the snapshot's"
        ]
        assert snapshot_differences(second.view, snapshot) == []
