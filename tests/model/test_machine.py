"""Table-driven tests of the model's transitions: publishing, failure policies, recovery."""

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
    Unreachable,
    World,
)

LISTENER = GatewayListener("http", "HTTP", 8080)
ROUTE = Route("r", 1, (Rule((Match("PathPrefix", "/"),), (Backend("a"),)),))
WORLD = World(listeners=(LISTENER,), routes=(ROUTE,), services=(Service("a", ("a-0",)),))
REQUEST = Request(8080, "http", "x.example.com", "/")


def started(policy: str = "keep-last-good", fail_open: bool = False) -> ModelState:
    state = ModelState(policy=policy, extension=Extension(fail_open=fail_open))
    return state.with_live_pods(frozenset({"a-0"})).with_world(WORLD)


def test_a_healthy_extension_marks_every_route_with_its_generation():
    assert started().expect(REQUEST) == {Served("a", "a-0", 1)}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("keep-last-good", {Served("a", "a-0", 1)}),
        ("rds-error", {Status(500)}),
        ("inline-error", {Status(500)}),
    ],
)
def test_each_failure_policy_while_the_extension_fails_closed(policy, expected):
    state = started(policy).extension_fails("internal").reconcile()
    assert state.expect(REQUEST) == expected


def test_keep_last_good_keeps_serving_the_last_published_world_through_changes():
    state = started().extension_fails("hang")
    state = state.with_world(WORLD.without_route("r"))
    assert state.expect(REQUEST) == {Served("a", "a-0", 1)}


def test_fail_open_publishes_the_current_world_without_the_marker():
    state = started(fail_open=True).extension_fails("unavailable")
    state = state.with_world(WORLD.without_route("r"))
    assert state.expect(REQUEST) == {Status(404)}
    assert state.with_world(WORLD).expect(REQUEST) == {Served("a", "a-0", None)}


@pytest.mark.parametrize("policy", ["keep-last-good", "rds-error", "inline-error"])
def test_recovery_serves_the_current_world_with_the_new_generation(policy):
    state = started(policy).extension_fails("internal").reconcile()
    state = state.extension_recovers(new_generation=True).reconcile()
    assert state.expect(REQUEST) == {Served("a", "a-0", 2)}


def test_faults_take_effect_only_at_the_next_reconcile():
    state = started("rds-error").extension_fails("internal")
    assert state.expect(REQUEST) == {Served("a", "a-0", 1)}
    assert state.reconcile().expect(REQUEST) == {Status(500)}


def test_a_control_plane_restart_while_failing_keeps_the_proxy_on_its_config():
    state = started().extension_fails("internal").control_plane_restarted()
    assert state.cache is None
    assert state.expect(REQUEST) == {Served("a", "a-0", 1)}
    assert state.proxy_restarted().expect(REQUEST) == {Unreachable()}


def test_scaling_a_service_to_zero_answers_503():
    state = started().with_world(WORLD.with_service(Service("a", ()))).with_live_pods(frozenset())
    assert state.expect(REQUEST) == {Status(503)}


def test_a_dead_pod_still_published_answers_503():
    state = started().extension_fails("internal")
    state = state.with_world(WORLD.with_service(Service("a", ("a-1",)))).with_live_pods(
        frozenset({"a-1"})
    )
    assert state.expect(REQUEST) == {Status(503)}
