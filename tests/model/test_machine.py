"""Table-driven tests of the model's transitions: publishing, failure policies, recovery."""

from __future__ import annotations

import attrs
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


@pytest.mark.parametrize(
    ("hook", "still_failing"),
    [("PostRouteModify", False), ("PostTranslateModify", True), (None, True)],
)
def test_a_route_hook_fault_fails_nothing_while_no_route_is_translated(hook, still_failing):
    """PostRouteModify runs once per route: with none attached, its fault is never reached."""
    state = started().extension_fails("internal", hook)
    without_routes = state.with_world(World(listeners=(LISTENER,), services=WORLD.services))
    assert (without_routes.cache == state.cache) is still_failing
    if not still_failing:
        assert without_routes.cache is not None and without_routes.cache.world.routes == ()


def test_faults_on_several_hooks_add_up_until_recovery():
    state = started().extension_fails("internal", "PostRouteModify")
    state = state.extension_fails("hang", "PostTranslateModify")
    empty = state.with_world(World(listeners=(LISTENER,), services=WORLD.services))
    assert empty.cache == state.cache  # PostTranslateModify still fails: keep last good
    recovered = empty.extension_recovers(new_generation=False).reconcile()
    assert recovered.cache is not None and recovered.cache.world.routes == ()


def test_a_route_attached_to_no_listener_does_not_call_the_route_hook():
    detached = Route("r", 1, ROUTE.rules, section="absent")
    state = started().extension_fails("internal", "PostRouteModify")
    moved = state.with_world(WORLD.with_route(detached))
    assert moved.cache is not None and moved.cache.world.routes == (detached,)


HTTPS_A = GatewayListener("https-a", "HTTPS", 8443, "a.example.com")
HTTPS_B = GatewayListener("https-b", "HTTPS", 8443, "b.example.com")


@pytest.mark.parametrize(
    ("listeners", "still_failing"),
    [
        ((LISTENER, HTTPS_A), False),
        ((LISTENER, HTTPS_A, HTTPS_B), True),
        ((HTTPS_A, attrs.evolve(HTTPS_B, port=9443)), False),
    ],
    ids=["one-https-listener", "two-https-listeners-on-one-port", "two-https-ports"],
)
def test_the_gateways_421_routes_reach_a_route_hook_fault(listeners, still_failing):
    """HTTPS listeners sharing a port answer 421 for each other's hostnames with routes of the
    gateway's own; PostRouteModify is called for those too, so its fault is reached."""
    state = started().extension_fails("internal", "PostRouteModify")
    without_routes = state.with_world(World(listeners=listeners, services=WORLD.services))
    assert (without_routes.cache == state.cache) is still_failing
