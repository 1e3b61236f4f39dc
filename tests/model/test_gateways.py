"""The model with a second Gateway: one specification per Gateway, a fleet of its own."""

from __future__ import annotations

import attrs
import pytest

from model import (
    Backend,
    Extension,
    Gateway,
    GatewayListener,
    Match,
    ModelState,
    ProxyConfig,
    Request,
    Route,
    Rule,
    Served,
    Service,
    Status,
    Unreachable,
    World,
)

HTTP = GatewayListener("http", "HTTP", 8080)
SECOND = Gateway("gw-2", (GatewayListener("http", "HTTP", 8080),))
ON_FIRST = Route("first", 1, (Rule((Match("PathPrefix", "/a"),), (Backend("a"),)),))
ON_SECOND = Route(
    "second", 2, (Rule((Match("PathPrefix", "/b"),), (Backend("b"),)),), gateways=("gw-2",)
)
ON_BOTH = Route(
    "both", 3, (Rule((Match("PathPrefix", "/c"),), (Backend("a"),)),), gateways=("gw", "gw-2")
)
SERVICES = (Service("a", ("a-0",)), Service("b", ("b-0",)))
WORLD = World(
    listeners=(HTTP,), routes=(ON_FIRST, ON_SECOND, ON_BOTH), services=SERVICES, others=(SECOND,)
)
FIRST_PROXY, SECOND_PROXY = 0, 1


def _request(path: str) -> Request:
    return Request(8080, "http", "x.example.com", path)


def _started(world: World = WORLD, extension: Extension | None = None) -> ModelState:
    return ModelState(extension=extension or Extension()).with_fleet("gw-2").started(world)


def test_each_gateway_projects_to_its_listeners_and_routes():
    first, second = WORLD.of_gateway("gw"), WORLD.of_gateway("gw-2")
    assert first.listeners == (HTTP,) and second.listeners == SECOND.listeners
    assert {r.name for r in first.routes} == {"first", "both"}
    assert {r.name for r in second.routes} == {"second", "both"}
    assert WORLD.without_gateway("gw-2").of_gateway("gw-2").listeners == ()
    single = World(listeners=(HTTP,), routes=(ON_FIRST,), services=SERVICES)
    assert single.of_gateway("gw") == single  # a one-Gateway world is its own projection


def test_each_proxy_is_judged_by_its_own_gateway():
    state = _started()
    assert state.expect(_request("/a"), FIRST_PROXY) == {Served("a", "a-0", 1)}
    assert state.expect(_request("/a"), SECOND_PROXY) == {Status(404)}
    assert state.expect(_request("/b"), SECOND_PROXY) == {Served("b", "b-0", 1)}
    assert state.expect(_request("/c"), SECOND_PROXY) == {Served("a", "a-0", 1)}
    assert state.gateway_of(SECOND_PROXY) == "gw-2" and state.gateway_of(FIRST_PROXY) == "gw"


def test_a_gateway_not_in_the_store_publishes_nothing_that_answers():
    state = _started(WORLD.without_gateway("gw-2"))
    (outcome,) = state.expect(_request("/b"), SECOND_PROXY)
    assert isinstance(outcome, Unreachable)
    created = state.with_world(WORLD)
    assert created.expect(_request("/b"), SECOND_PROXY) == {Served("b", "b-0", 1)}
    deleted = created.with_world(WORLD.without_gateway("gw-2"))
    assert isinstance(next(iter(deleted.expect(_request("/b"), SECOND_PROXY))), Unreachable)
    assert deleted.expect(_request("/a"), FIRST_PROXY) == {Served("a", "a-0", 1)}


def test_keep_last_good_keeps_every_fleet_and_a_fault_is_reached_over_every_gateway():
    # The first Gateway has no route: only the second's reach PostRouteModify, which fails.
    world = attrs.evolve(WORLD, routes=(ON_SECOND,))
    state = _started(world).extension_fails("unavailable", "PostRouteModify")
    changed = state.with_world(world.without_listener("http"))
    assert changed.cache == state.cache and changed.others == state.others
    assert isinstance(next(iter(changed.expect(_request("/a"), FIRST_PROXY))), Status)
    # Without the second Gateway no translation has a route: nothing fails.
    gone = state.with_world(world.without_gateway("gw-2"))
    assert gone.others[0].cache is not None and gone.others[0].cache.world.listeners == ()


def test_holds_restarts_and_cache_loss_are_per_fleet():
    state = _started().hold(SECOND_PROXY).with_world(WORLD.without_route("second"))
    assert state.expect(_request("/b"), SECOND_PROXY) == {Served("b", "b-0", 1)}
    assert state.passing(state.release(SECOND_PROXY), SECOND_PROXY)[-1] == state.others[0].cache
    released = state.release(SECOND_PROXY)
    assert released.expect(_request("/b"), SECOND_PROXY) == {Status(404)}
    lost = released.control_plane_restarted()
    assert lost.others[0].cache == released.others[0].cache  # rebuilt alike
    assert lost.proxy_restarted(SECOND_PROXY).link(SECOND_PROXY).proxy == lost.others[0].cache
    with pytest.raises(IndexError):
        state.link(2)


def test_pods_settle_only_once_no_gateway_names_them():
    state = _started().hold(SECOND_PROXY)
    scaled = state.scale("b", 0)
    assert "b-0" in scaled.settled().live_pods  # the held proxy of gw-2 may still send there
    released = scaled.release(SECOND_PROXY).settled()
    assert "b-0" not in released.live_pods


def test_proxyless_stays_the_first_gateways():
    state = _started()
    assert state.proxyless == ProxyConfig(WORLD.of_gateway("gw"))
