"""The harness's worlds, translated by the real SUT, agree with what the model assumes of them."""

from __future__ import annotations

import itertools

import attrs
import pytest

from harness.lockstep.worlds import LISTENERS, initial_world, to_resources
from model.routing import has_misdirected_routes
from sut.translate import TranslateOptions, translate

LISTENER_SETS = [
    combination
    for size in range(1, len(LISTENERS) + 1)  # a Gateway needs a listener
    for combination in itertools.combinations(LISTENERS.values(), size)
]


@pytest.mark.parametrize(
    "listeners", LISTENER_SETS, ids=lambda listeners: "+".join(item.name for item in listeners)
)
def test_a_world_without_routes_translates_routes_exactly_where_the_model_says(listeners):
    """The model's rule for a fault on PostRouteModify (called once per translated route) needs
    to know when a translation has routes with no HTTPRoute attached: the gateway's own 421s."""
    world = attrs.evolve(initial_world({}), listeners=listeners, routes=())
    translated = translate(to_resources(world), TranslateOptions(readiness_port=0)).xds
    routes = [
        route
        for config in translated.route_configurations
        for host in config.virtual_hosts
        for route in host.routes
    ]
    assert bool(routes) is has_misdirected_routes(world)
