"""The reference server's behaviour core, with plain protobufs and no network."""

from __future__ import annotations

import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import (
    DirectResponseAction,
    Route,
    RouteAction,
    RouteMatch,
    VirtualHost,
)
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.any_pb2 import Any as AnyMessage
from hypothesis import given
from hypothesis import strategies as st

from sut.extension import behaviour
from sut.extension.generated import extension_pb2
from sut.extension.hooks import MARKER_HEADER, READINESS_PREFIX, Fault, Hook, marker_value


def _route(name: str = "r", cluster: str = "c") -> Route:
    return Route(name=name, match=RouteMatch(prefix="/"), route=RouteAction(cluster=cluster))


def _markers(route: Route) -> list[str]:
    return [o.header.value for o in route.response_headers_to_add if o.header.key == MARKER_HEADER]


def _route_configuration(name: str, *routes: Route) -> RouteConfiguration:
    return RouteConfiguration(
        name=name,
        virtual_hosts=[VirtualHost(name=f"{name}/vh", domains=["*"], routes=list(routes))],
    )


def _rds_listener(name: str, route_config_name: str) -> Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="http-80", rds=hcm_pb2.Rds(route_config_name=route_config_name)
    )
    packed = AnyMessage()
    packed.Pack(manager)
    return Listener(
        name=name,
        filter_chains=[
            FilterChain(
                name=name,
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager", typed_config=packed
                    )
                ],
            )
        ],
    )


def _hcm(listener: Listener) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


@given(first=st.integers(0, 10**6), second=st.integers(0, 10**6))
def test_marking_replaces_an_older_marker_and_leaves_other_headers(first, second):
    route = _route()
    route.response_headers_to_add.append(
        HeaderValueOption(header=HeaderValue(key="x-other", value="kept"))
    )
    twice = behaviour.mark_route(behaviour.mark_route(route, first), second)
    assert _markers(twice) == [marker_value(second)]
    assert twice == behaviour.mark_route(route, second)
    assert [o.header.key for o in twice.response_headers_to_add] == ["x-other", MARKER_HEADER]
    assert twice.response_headers_to_add[-1].append_action == (
        HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    )
    assert _markers(route) == []  # the input is not mutated


def test_healthy_translate_marks_every_route_except_the_readiness_configuration():
    request = extension_pb2.PostTranslateModifyRequest(
        routes=[
            _route_configuration("gw/one", _route("a"), _route("b")),
            _route_configuration(f"{READINESS_PREFIX}-0.0.0.0-19001", _route("ready")),
        ],
        listeners=[_rds_listener("gw/one", "gw/one")],
    )
    outcome = behaviour.respond(Hook.POST_TRANSLATE_MODIFY, Fault.HEALTHY, request, 5)
    assert isinstance(outcome, behaviour.Reply)
    reply = outcome.response
    gateway, readiness = reply.routes
    assert [_markers(r) for r in gateway.virtual_hosts[0].routes] == [["gen-5"], ["gen-5"]]
    assert readiness == request.routes[1]
    assert list(reply.listeners) == list(request.listeners)


@pytest.mark.parametrize("hook", [Hook.POST_VIRTUAL_HOST_MODIFY, Hook.POST_HTTP_LISTENER_MODIFY])
def test_healthy_virtual_host_and_listener_hooks_answer_no_change(hook):
    request = behaviour.request_type(hook)()
    outcome = behaviour.respond(hook, Fault.HEALTHY, request, 1)
    assert isinstance(outcome, behaviour.Reply)
    assert outcome.response.ByteSize() == 0


def test_reject_adds_a_pseudo_header_at_every_level():
    assert behaviour.reject_route(_route()).response_headers_to_add[-1].header.key == ":path"
    vhost = behaviour.reject_virtual_host(VirtualHost(name="v", domains=["*"]))
    assert vhost.response_headers_to_add[-1].header.key == ":path"
    rc = behaviour.reject_route_configuration(_route_configuration("gw/one"))
    assert rc.response_headers_to_add[-1].header.key == ":path"
    ready = _route_configuration(f"{READINESS_PREFIX}-x")
    assert behaviour.reject_route_configuration(ready) == ready


def test_reject_listener_duplicates_the_first_filter_chain_match():
    listener = _rds_listener("gw/one", "gw/one")
    rejected = behaviour.reject_listener(listener)
    first, duplicate = rejected.filter_chains
    assert first.filter_chain_match == duplicate.filter_chain_match
    assert first.name != duplicate.name


def test_dangling_route_forwards_to_the_missing_cluster_whatever_its_action():
    direct = Route(
        name="r", match=RouteMatch(prefix="/"), direct_response=DirectResponseAction(status=500)
    )
    for route in (_route(), direct):
        dangling = behaviour.dangle_route(route)
        assert dangling.WhichOneof("action") == "route"
        assert dangling.route.cluster == behaviour.MISSING_CLUSTER


def test_dangling_listener_reads_a_missing_route_configuration():
    listener = _rds_listener("gw/one", "gw/one")
    dangling = behaviour.dangle_listener(listener)
    assert _hcm(dangling).rds.route_config_name == behaviour.MISSING_ROUTE_CONFIGURATION
    assert _hcm(listener).rds.route_config_name == "gw/one"
    ready = _rds_listener(f"{READINESS_PREFIX}-x", "ready")
    assert behaviour.dangle_listener(ready) == ready


def test_dangling_translate_drops_route_configurations_named_by_listeners():
    request = extension_pb2.PostTranslateModifyRequest(
        listeners=[_rds_listener("gw/one", "gw/one"), _rds_listener("gw/two", "gw/two")],
        routes=[
            _route_configuration("gw/one", _route()),
            _route_configuration("gw/two", _route()),
            _route_configuration("unreferenced", _route()),
        ],
    )
    outcome = behaviour.respond(Hook.POST_TRANSLATE_MODIFY, Fault.INVALID_DANGLING, request, 2)
    assert isinstance(outcome, behaviour.Reply)
    assert [rc.name for rc in outcome.response.routes] == ["unreferenced"]
    assert len(outcome.response.listeners) == 2


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.HANG, behaviour.Hang()),
        (Fault.INTERNAL, "INTERNAL"),
        (Fault.UNAVAILABLE, "UNAVAILABLE"),
    ],
)
def test_failing_faults_give_no_reply(fault, expected):
    request = extension_pb2.PostRouteModifyRequest(route=_route())
    outcome = behaviour.respond(Hook.POST_ROUTE_MODIFY, fault, request, 1)
    if isinstance(expected, str):
        assert isinstance(outcome, behaviour.Abort)
        assert outcome.code == expected
    else:
        assert outcome == expected


def test_respond_refuses_a_request_of_another_hook():
    with pytest.raises(TypeError, match="PostRouteModify"):
        behaviour.respond(
            Hook.POST_ROUTE_MODIFY, Fault.HEALTHY, extension_pb2.PostTranslateModifyRequest(), 1
        )
