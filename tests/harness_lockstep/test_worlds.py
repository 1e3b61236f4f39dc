"""The harness's worlds, translated by the real SUT, agree with what the model assumes of them;
built directly as Resources, they equal what the manifest loader reads from their YAML."""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.lockstep.machine import ROUTE_NAMES, route_strategy
from harness.lockstep.worlds import (
    LISTENERS,
    LOAD_BALANCERS,
    SERVICES,
    initial_world,
    load_world,
    to_resources,
)
from model import Service, World
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


@st.composite
def worlds(draw: st.DrawFn) -> World:
    listeners = draw(st.lists(st.sampled_from(list(LISTENERS.values())), min_size=1, unique=True))
    names = draw(st.lists(st.sampled_from(ROUTE_NAMES), unique=True, max_size=len(ROUTE_NAMES)))
    routes = [draw(route_strategy(name, created)) for created, name in enumerate(names)]
    services = [
        Service(name, tuple(draw(st.lists(st.sampled_from(("p0", "p1", "p2")), unique=True))))
        for name in draw(st.lists(st.sampled_from(SERVICES), unique=True))
    ]
    return World(
        listeners=listeners,
        routes=routes,
        services=services,
        load_balancer=draw(st.sampled_from((None, *LOAD_BALANCERS))),
    )


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_the_direct_resources_equal_what_the_manifest_loader_reads(world):
    """Operations build Resources directly; the YAML path (the initial world's) must agree."""
    assert to_resources(world, world.load_balancer) == load_world(world, world.load_balancer)
