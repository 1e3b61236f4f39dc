"""The model of proxyless gRPC clients: which hostnames get a Listener, what a call gets, and
how their snapshot moves with Envoy's (rule 8 of `model.machine`)."""

from __future__ import annotations

import pytest

from model import (
    Backend,
    Extension,
    GatewayListener,
    GrpcCall,
    GrpcServed,
    GrpcStatus,
    Match,
    ModelState,
    ProxyConfig,
    Route,
    Rule,
    Service,
    World,
    expected_grpc,
    proxyless_hosts,
    serving_port,
)

HTTP = GatewayListener("http", "HTTP", 8080)
WILD = GatewayListener("http-wild", "HTTP", 8081, "*.example.com")
HTTPS = GatewayListener("https", "HTTPS", 8443, "a.example.com")
ANY_HOST = Route("any", 0, (Rule((Match("PathPrefix", "/"),), (Backend("a"),)),))
APP_B = Route(
    "app-b", 1, (Rule((Match("PathPrefix", "/app"),), (Backend("b"),)),), ("b.example.com",)
)
V1_WILD = Route(
    "v1", 2, (Rule((Match("PathPrefix", "/app/v1"),), (Backend("c"),)),), ("*.example.com",)
)
SERVICES = (Service("a", ("a-0",)), Service("b", ("b-0", "b-1")), Service("c", ("c-0",)))
WORLD = World(listeners=(HTTP, HTTPS), routes=(ANY_HOST, APP_B), services=SERVICES)
LIVE = frozenset({"a-0", "b-0", "b-1", "c-0"})
UNAVAILABLE = GrpcStatus("UNAVAILABLE")
NEVER = {GrpcStatus("DEADLINE_EXCEEDED"), UNAVAILABLE}


def test_only_concrete_hostnames_of_http_listeners_are_published():
    https_only = Route("https-only", 3, APP_B.rules, ("a.example.com",), section="https")
    world = World(listeners=(HTTP, WILD, HTTPS), routes=(ANY_HOST, APP_B, V1_WILD, https_only))
    assert proxyless_hosts(world) == {"b.example.com"}
    assert serving_port(world, "b.example.com") == 8080
    assert serving_port(world, "a.example.com") is None


def test_a_listener_hostname_alone_makes_a_hostname_concrete():
    listener = GatewayListener("http-b", "HTTP", 9000, "b.example.com")
    world = World(listeners=(listener,), routes=(ANY_HOST,), services=SERVICES)
    assert proxyless_hosts(world) == {"b.example.com"}
    call = GrpcCall("b.example.com", "/x/y")
    assert expected_grpc(ProxyConfig(world), call, LIVE) == {GrpcServed("a", "a-0")}


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("/app/x", {GrpcServed("b", "b-0"), GrpcServed("b", "b-1")}),
        ("/app/v1", {GrpcServed("b", "b-0"), GrpcServed("b", "b-1")}),
        ("/apix/y", {UNAVAILABLE}),  # no route on b.example.com's own virtual host
        ("/routeproof.Echo/Call", {UNAVAILABLE}),
    ],
)
def test_a_call_is_routed_as_the_http_request_on_its_hostname(method, expected):
    call = GrpcCall("b.example.com", method)
    assert expected_grpc(ProxyConfig(WORLD), call, LIVE) == expected


def test_a_hostname_without_a_listener_never_resolves():
    call = GrpcCall("a.example.com", "/app/x")
    assert expected_grpc(ProxyConfig(WORLD), call, LIVE) == NEVER
    assert expected_grpc(None, call, LIVE) == NEVER


def test_no_live_endpoint_fails_the_call_unavailable():
    call = GrpcCall("b.example.com", "/app/x")
    assert expected_grpc(ProxyConfig(WORLD), call, frozenset({"a-0"})) == {UNAVAILABLE}
    empty = WORLD.with_service(Service("b"))
    assert expected_grpc(ProxyConfig(empty), call, LIVE) == {UNAVAILABLE}


def test_the_marker_and_the_error_of_envoys_configuration_do_not_reach_grpc():
    call = GrpcCall("b.example.com", "/app/x")
    served = {GrpcServed("b", "b-0"), GrpcServed("b", "b-1")}
    assert expected_grpc(ProxyConfig(WORLD, marker=3), call, LIVE) == served
    assert expected_grpc(ProxyConfig(WORLD, error=True), call, LIVE) == served


@pytest.mark.parametrize("method", ["/", "/app", "/a/b/c", "app/x"])
def test_a_call_names_a_service_and_a_method(method):
    with pytest.raises(ValueError, match="not a gRPC method path"):
        GrpcCall("b.example.com", method)


# ----------------------------------------------------------------- rule 8 of the machine


def _started(policy: str = "keep-last-good", fail_open: bool = False) -> ModelState:
    state = ModelState(policy=policy, extension=Extension(fail_open=fail_open))
    return state.with_live_pods(LIVE).with_world(WORLD)


def test_the_proxyless_snapshot_is_the_bare_world_beside_the_marked_cache():
    state = _started()
    assert state.cache == ProxyConfig(WORLD, marker=1)
    assert state.proxyless == ProxyConfig(WORLD)


@pytest.mark.parametrize("policy", ["rds-error", "inline-error"])
def test_a_failure_policy_that_publishes_publishes_the_bare_world_for_grpc(policy):
    changed = WORLD.without_route("app-b")
    state = _started(policy).extension_fails("internal").with_world(changed)
    assert state.cache == ProxyConfig(changed, error=True)
    assert state.proxyless == ProxyConfig(changed)
    assert state.expect_grpc(GrpcCall("b.example.com", "/app/x")) == NEVER


def test_keep_last_good_keeps_the_proxyless_snapshot_too():
    state = _started().extension_fails("hang").with_world(WORLD.without_route("app-b"))
    assert state.proxyless == ProxyConfig(WORLD)
    assert state.expect_grpc(GrpcCall("b.example.com", "/app/x")) == {
        GrpcServed("b", "b-0"),
        GrpcServed("b", "b-1"),
    }


def test_fail_open_publishes_the_bare_world_for_both():
    changed = WORLD.without_route("app-b")
    state = _started(fail_open=True).extension_fails("unavailable").with_world(changed)
    assert state.proxyless == ProxyConfig(changed) == state.cache


def test_clients_keep_what_they_hold_while_a_restarted_control_plane_has_nothing():
    """The cache is lost with the control plane; gRPC keeps its cached resources across the
    reconnect, as a proxy does (found by `check --proxies 3 --grpc-clients 2`)."""
    failing = _started().extension_fails("internal").with_world(WORLD.without_route("app-b"))
    restarted = failing.control_plane_restarted()
    assert restarted.cache is None
    assert restarted.proxyless == ProxyConfig(WORLD)
    assert restarted.expect_grpc(GrpcCall("b.example.com", "/app/x")) == {
        GrpcServed("b", "b-0"),
        GrpcServed("b", "b-1"),
    }
    recovered = restarted.extension_recovers(new_generation=False).reconcile()
    assert recovered.proxyless == ProxyConfig(WORLD.without_route("app-b"))


def test_a_withdrawn_pod_keeps_running_while_the_proxyless_snapshot_names_it():
    state = _started().extension_fails("hang").scale("b", 1)
    assert "b-1" in state.proxyless.world.pods()  # keep-last-good: still published
    assert "b-1" in state.settled().live_pods
