"""The second Gateway in the harness's world: its manifests, its translation on a node of its
own, and the abstract state `explore` keeps of its proxy."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.lockstep.abstraction import History, abstract
from harness.lockstep.machine import ROUTE_NAMES, route_strategy
from harness.lockstep.operations import CreateGateway, CreateRoute, DeleteGateway
from harness.lockstep.replay_files import decode_operations, encode_operations
from harness.lockstep.worlds import (
    CATALOGUE_ROUTES,
    NAMESPACE,
    SECOND_GATEWAY,
    initial_world,
    load_world,
    second_gateway,
    to_resources,
)
from model import Extension, ModelState, World
from sut.controlplane import ControlPlane, ControlPlaneSettings
from sut.gatewayapi import ObjectKey, Reason
from sut.translate import TranslateOptions
from sut.xds import ResourceType, SnapshotCache

PODS = {"svc-a": ("svc-a-0",), "svc-b": ("svc-b-0",), "svc-c": ("svc-c-0",)}


@st.composite
def two_gateway_worlds(draw: st.DrawFn) -> World:
    world = initial_world(PODS)
    if draw(st.booleans()):
        world = world.with_gateway(second_gateway())
    names = draw(st.lists(st.sampled_from(ROUTE_NAMES), unique=True, max_size=3))
    routes = [draw(route_strategy(name, index, gateways=2)) for index, name in enumerate(names)]
    return attrs.evolve(world, routes=routes)


@settings(max_examples=60, deadline=None)
@given(two_gateway_worlds())
def test_the_direct_resources_equal_what_the_manifest_loader_reads(world):
    assert to_resources(world) == load_world(world)


def test_the_second_gateway_binds_the_first_ones_port_on_a_node_of_its_own():
    world = initial_world(PODS).with_gateway(second_gateway())
    world = attrs.evolve(
        world,
        routes=[attrs.evolve(route, gateways=("gw", SECOND_GATEWAY)) for route in world.routes],
    )
    plane = ControlPlane(
        ControlPlaneSettings(
            node_id="node",
            translate_options=TranslateOptions(readiness_port=0),
            gateway_nodes={ObjectKey(NAMESPACE, SECOND_GATEWAY): "node-gw-2"},
        ),
        SnapshotCache(),
    )
    plane.start(to_resources(world))
    statuses = plane.statuses
    assert statuses is not None
    reasons = {
        condition.reason
        for gateway in statuses.gateways
        for listener in gateway.listeners
        for condition in listener.conditions
    }
    assert Reason.PORT_UNAVAILABLE not in reasons
    second = plane.published_snapshot_of("node-gw-2")
    assert second is not None
    names = {name for name in second.of_type(ResourceType.LISTENER) if "/" in name}
    assert names and all(name.startswith(f"{NAMESPACE}/{SECOND_GATEWAY}/") for name in names)


def test_the_abstract_state_tells_the_second_gateways_proxy_apart():
    model = ModelState(extension=Extension()).with_fleet(SECOND_GATEWAY)
    model = model.started(initial_world(PODS))
    held_first, held_second = model.hold(0), model.hold(1)
    assert abstract(held_first, History()) != abstract(held_second, History())
    created = model.with_world(model.world.with_gateway(second_gateway()))
    assert abstract(created, History()) != abstract(model, History())
    assert abstract(created, History()).other_caches == ("current",)


def test_replay_files_name_a_routes_gateways_only_when_it_has_more_than_the_first():
    first = CreateRoute(CATALOGUE_ROUTES["route-0"])
    both = CreateRoute(attrs.evolve(CATALOGUE_ROUTES["route-1"], gateways=("gw", SECOND_GATEWAY)))
    operations = [first, both, CreateGateway(second_gateway()), DeleteGateway(SECOND_GATEWAY)]
    assert '"gateways"' not in encode_operations([first])
    assert decode_operations(encode_operations(operations)) == operations
