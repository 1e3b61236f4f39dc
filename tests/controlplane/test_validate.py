"""`envoy_rejections`: every reason it knows why Envoy would NACK the extension's output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sut.controlplane import envoy_rejections
from sut.extension.behaviour import (
    reject_listener,
    reject_route,
    reject_route_configuration,
    reject_virtual_host,
)
from sut.translate import TranslateOptions, XdsResources, translate
from tests.controlplane.conftest import SITES, WEB
from tests.controlplane.manifests import world

RouteConfigEdit = Callable[[route_pb2.RouteConfiguration], None]


@pytest.fixture(scope="module")
def translated() -> XdsResources:
    return translate(world(SITES), TranslateOptions(readiness_port=0)).xds


def _with_route_configuration(resources: XdsResources, edit: RouteConfigEdit) -> XdsResources:
    """The resources with the HTTP listener's RouteConfiguration edited in a copy."""
    configs = []
    for config in resources.route_configurations:
        copy = route_pb2.RouteConfiguration()
        copy.CopyFrom(config)
        if any(WEB.hostname in host.domains for host in copy.virtual_hosts):
            edit(copy)
        configs.append(copy)
    return attrs.evolve(resources, route_configurations=tuple(configs))


def _header(key: str) -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key=key, value="x"))


def _first_route(config: route_pb2.RouteConfiguration) -> route_components_pb2.Route:
    return config.virtual_hosts[0].routes[0]


def test_a_clean_translation_has_no_rejection(translated: XdsResources) -> None:
    assert envoy_rejections(translated) == []


@pytest.mark.parametrize("header", [":path", ":authority", "host", "Host"])
@pytest.mark.parametrize(
    "where",
    [
        "route_configuration.request_headers_to_add",
        "route_configuration.response_headers_to_add",
        "virtual_host.request_headers_to_add",
        "virtual_host.response_headers_to_add",
        "route.request_headers_to_add",
        "route.response_headers_to_add",
        "weighted_cluster.request_headers_to_add",
    ],
)
def test_adding_a_pseudo_or_host_header_is_rejected(
    translated: XdsResources, where: str, header: str
) -> None:
    level, field = where.split(".")

    def edit(config: route_pb2.RouteConfiguration) -> None:
        target: object
        if level == "route_configuration":
            target = config
        elif level == "virtual_host":
            target = config.virtual_hosts[0]
        elif level == "route":
            target = _first_route(config)
        else:
            route = _first_route(config)
            weighted = route.route.weighted_clusters.clusters.add(name=route.route.cluster)
            weighted.weight.value = 1
            target = weighted
        getattr(target, field).append(_header(header))

    problems = envoy_rejections(_with_route_configuration(translated, edit))
    assert len(problems) == 1
    assert repr(header) in problems[0] and "may not be modified" in problems[0]


@pytest.mark.parametrize("level", ["route_configuration", "virtual_host", "route"])
def test_removing_a_pseudo_or_host_header_is_rejected(translated: XdsResources, level: str) -> None:
    def edit(config: route_pb2.RouteConfiguration) -> None:
        target: Any = {
            "route_configuration": config,
            "virtual_host": config.virtual_hosts[0],
            "route": _first_route(config),
        }[level]
        target.response_headers_to_remove.append("host")
        target.request_headers_to_remove.append(":method")

    problems = envoy_rejections(_with_route_configuration(translated, edit))
    assert len(problems) == 2
    assert all("may not be removed" in problem for problem in problems)


def test_ordinary_headers_are_fine(translated: XdsResources) -> None:
    def edit(config: route_pb2.RouteConfiguration) -> None:
        config.response_headers_to_add.append(_header("x-routeproof"))
        _first_route(config).request_headers_to_remove.append("x-other")

    assert envoy_rejections(_with_route_configuration(translated, edit)) == []


def test_a_domain_twice_in_one_route_configuration_is_rejected(translated: XdsResources) -> None:
    def edit(config: route_pb2.RouteConfiguration) -> None:
        config.virtual_hosts.add(name="copy", domains=[WEB.hostname])

    problems = envoy_rejections(_with_route_configuration(translated, edit))
    assert len(problems) == 1
    assert "is not unique" in problems[0] and WEB.hostname in problems[0]


@pytest.mark.parametrize("where", ["path", "header"])
def test_a_regex_envoy_cannot_compile_is_rejected(translated: XdsResources, where: str) -> None:
    def edit(config: route_pb2.RouteConfiguration) -> None:
        match = _first_route(config).match
        if where == "path":
            match.safe_regex.regex = "(?=lookahead)"
        else:
            header = match.headers.add(name="x-variant")
            header.string_match.safe_regex.regex = "a{2,1}"

    problems = envoy_rejections(_with_route_configuration(translated, edit))
    assert len(problems) == 1
    assert "regex" in problems[0]


def test_two_filter_chains_with_the_same_match_are_rejected(translated: XdsResources) -> None:
    rejected = reject_listener(
        next(
            item
            for item in translated.listeners
            if item.filter_chains and item.name != translated.readiness_listener
        )
    )
    listeners = tuple(
        rejected if item.name == rejected.name else item for item in translated.listeners
    )
    problems = envoy_rejections(attrs.evolve(translated, listeners=listeners))
    assert len(problems) == 1
    assert "same matching rules" in problems[0]


def test_an_hcm_without_routes_is_rejected(translated: XdsResources) -> None:
    listener = listener_pb2.Listener()
    listener.CopyFrom(
        next(item for item in translated.listeners if item.name != translated.readiness_listener)
    )
    network_filter = listener.filter_chains[0].filters[0]
    manager = hcm_pb2.HttpConnectionManager()
    assert network_filter.typed_config.Unpack(manager)
    manager.ClearField("rds")
    network_filter.typed_config.Pack(manager)
    listeners = tuple(
        listener if item.name == listener.name else item for item in translated.listeners
    )
    problems = envoy_rejections(attrs.evolve(translated, listeners=listeners))
    assert len(problems) == 1
    assert "neither rds nor route_config" in problems[0]


def test_every_invalid_reject_output_of_the_reference_server_is_caught(
    translated: XdsResources,
) -> None:
    """Whatever `invalid-reject` answers for any hook, the runner's check sees it."""

    def route_level(config: route_pb2.RouteConfiguration) -> None:
        _first_route(config).CopyFrom(reject_route(_first_route(config)))

    def host_level(config: route_pb2.RouteConfiguration) -> None:
        config.virtual_hosts[0].CopyFrom(reject_virtual_host(config.virtual_hosts[0]))

    def config_level(config: route_pb2.RouteConfiguration) -> None:
        config.CopyFrom(reject_route_configuration(config))

    for edit in (route_level, host_level, config_level):
        assert len(envoy_rejections(_with_route_configuration(translated, edit))) == 1
