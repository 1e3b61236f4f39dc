"""The model with several proxies of one Gateway: one cache, one link each."""

from __future__ import annotations

import pytest

from model import (
    Backend,
    Extension,
    GatewayListener,
    Match,
    ModelState,
    Request,
    Route,
    Rule,
    Served,
    Service,
    Status,
    World,
)

LISTENER = GatewayListener("http", "HTTP", 8080)
ROUTE = Route("r", 1, (Rule((Match("PathPrefix", "/"),), (Backend("a"),)),))
WORLD = World(listeners=(LISTENER,), routes=(ROUTE,), services=(Service("a", ("a-0",)),))
REQUEST = Request(8080, "http", "x.example.com", "/")


def fleet(proxies: int = 3) -> ModelState:
    return ModelState(extension=Extension()).with_proxies(proxies).started(WORLD)


def test_every_replica_holds_what_the_cache_holds():
    state = fleet().with_world(WORLD.without_route("r"))
    assert [state.expect(REQUEST, proxy=i) for i in range(3)] == [{Status(404)}] * 3


def test_a_hold_on_one_replica_leaves_the_others_current():
    state = fleet().hold(1).with_world(WORLD.without_route("r"))
    assert state.expect(REQUEST, proxy=0) == {Status(404)}
    assert state.expect(REQUEST, proxy=1) == {Served("a", "a-0", 1)}
    assert state.links[1].in_flight == (state.cache,) and state.links[0].in_flight == ()
    assert state.held
    released = state.release(1)
    assert released.expect(REQUEST, proxy=1) == {Status(404)} and not released.held


def test_a_withdrawn_pod_runs_until_no_replica_may_still_be_sent_it():
    held = fleet().hold(2)
    scaled = held.scale("a", 0)
    assert "a-0" in scaled.settled().live_pods  # replica 2 still holds and queues it
    assert "a-0" not in scaled.release(2).settled().live_pods


def test_a_restart_is_per_replica_and_passing_is_per_replica():
    before = fleet().hold(0)
    after = before.with_world(WORLD.without_route("r"))
    assert after.passing(after, proxy=0) == (before.links[0].proxy,)
    assert after.passing(after, proxy=1) == (after.links[1].proxy, after.links[1].proxy)
    with pytest.raises(ValueError, match="held"):
        after.proxy_restarted(0)
    assert after.proxy_restarted(1).links[1].proxy == after.cache


def test_a_rejected_update_is_counted_on_every_replica_and_refused_behind_a_hold():
    state = fleet().rejected_update()
    assert [link.rejected_updates for link in state.links] == [1, 1, 1]
    with pytest.raises(ValueError, match="held"):
        state.hold(0).rejected_update()


def test_a_fleet_has_at_least_one_proxy():
    with pytest.raises(ValueError, match="at least one"):
        ModelState().with_proxies(0)
