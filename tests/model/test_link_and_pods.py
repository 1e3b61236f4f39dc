"""The model's xDS link (held, cut, released) and pods (started, withdrawn, stopped)."""

from __future__ import annotations

import pytest

from model import (
    Backend,
    Extension,
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
    World,
    expected_through,
    pod_name,
)

LISTENER = GatewayListener("http", "HTTP", 8080)
ROUTE = Route("r", 1, (Rule((Match("PathPrefix", "/"),), (Backend("a"),)),))
WORLD = World(listeners=(LISTENER,), routes=(ROUTE,), services=(Service("a", ("a-0",)),))
REQUEST = Request(8080, "http", "x.example.com", "/")


def started() -> ModelState:
    return ModelState(extension=Extension()).started(WORLD)


def test_a_held_proxy_keeps_what_it_had_and_queues_what_is_published():
    held = started().hold()
    changed = held.with_world(WORLD.without_route("r"))
    assert changed.expect(REQUEST) == {Served("a", "a-0", 1)}
    assert changed.cache == ProxyConfig(WORLD.without_route("r"), marker=1)
    assert changed.in_flight == (changed.cache,)
    assert changed.release().expect(REQUEST) == {Status(404)}


def test_releasing_may_pass_through_every_queued_configuration():
    held = started().hold()
    once = held.with_world(WORLD.without_route("r"))
    twice = once.with_world(WORLD.with_service(Service("a", ())))
    released = twice.release()
    configs = twice.passing(released)
    assert configs == (held.proxy, once.cache, twice.cache, released.proxy)
    assert expected_through(configs, REQUEST, released.live_pods) == {
        Served("a", "a-0", 1),
        Status(404),
        Status(503),
    }


def test_an_undone_change_while_held_queues_both_configurations():
    held = started().hold()
    undone = held.with_world(WORLD.without_route("r")).with_world(WORLD)
    assert len(undone.in_flight) == 2
    assert undone.in_flight[-1] == held.proxy


def test_cutting_a_flowing_connection_changes_nothing_and_a_held_one_delivers_the_newest():
    state = started()
    assert state.cut() == state
    cut = state.hold().with_world(WORLD.without_route("r")).cut()
    assert not cut.held and cut.in_flight == ()
    assert cut.expect(REQUEST) == {Status(404)}


def test_operations_while_held_do_not_move_the_proxy():
    held = started().hold()
    assert held.passing(held.with_world(WORLD.without_route("r"))) == (held.proxy,)


def test_a_proxy_cannot_restart_behind_a_held_connection():
    with pytest.raises(ValueError, match="held"):
        started().hold().proxy_restarted()


def test_scaling_up_starts_pods_with_names_never_used_before():
    state = started().scale("a", 3)
    assert state.world.service("a") == Service("a", ("a-0", "a-1", "a-2"))
    assert state.live_pods == {"a-0", "a-1", "a-2"}
    again = state.scale("a", 1).settled().scale("a", 2)
    assert again.world.service("a") == Service("a", ("a-0", pod_name("a", 3)))


def test_a_withdrawn_pod_runs_until_the_proxy_stops_naming_it():
    state = started().scale("a", 2).settled()
    down = state.scale("a", 1)
    assert down.terminating == {"a-1"} and "a-1" in down.live_pods
    settled = down.settled()
    assert settled.terminating == frozenset() and "a-1" not in settled.live_pods
    assert settled.retired == {"a-1"}


def test_a_withdrawn_pod_keeps_running_while_a_held_proxy_still_names_it():
    state = started().scale("a", 2).settled()
    down = state.hold().scale("a", 1)
    assert down.settled() == down
    assert down.expect(Request(8080, "http", "x.example.com", "/")) == {
        Served("a", "a-0", 1),
        Served("a", "a-1", 1),
    }
    assert "a-1" not in down.release().settled().live_pods


def test_keep_last_good_keeps_a_withdrawn_pod_running_while_the_proxy_names_it():
    state = started().scale("a", 2).settled().extension_fails("internal")
    down = state.scale("a", 1).settled()
    assert "a-1" in down.live_pods
    recovered = down.extension_recovers(new_generation=False).reconcile().settled()
    assert "a-1" not in recovered.live_pods


def test_a_rejected_update_changes_nothing_the_proxy_holds():
    state = started()
    rejected = state.rejected_update()
    assert rejected.rejected_updates == 1
    assert rejected.proxy == state.proxy


def test_the_routes_of_one_configuration_may_meet_the_endpoints_of_another():
    """A marker change and a new pod in one step: EDS may land before RDS, so the old marker
    may come from the new pod; a marker no configuration has may not."""
    old = ProxyConfig(WORLD, marker=1)
    new = ProxyConfig(WORLD.with_service(Service("a", ("a-1",))), marker=2)
    allowed = expected_through((old, new), REQUEST, frozenset({"a-0", "a-1"}))
    assert Served("a", "a-1", 1) in allowed
    assert Served("a", "a-0", 2) in allowed
    assert Served("a", "a-1", 3) not in allowed
    assert expected_through((old,), REQUEST, frozenset({"a-0", "a-1"})) == {Served("a", "a-0", 1)}
