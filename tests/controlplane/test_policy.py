"""The failure policies as pure rewrites of a real translation (no I/O)."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sut.controlplane import (
    ERROR_ROUTE_CONFIGURATION,
    ERROR_VIRTUAL_HOST,
    envoy_rejections,
    error_route_configuration,
    with_inline_error,
    with_rds_error,
)
from sut.gatewayapi import Resources
from sut.translate import TranslateOptions, XdsResources, translate
from sut.xds import Snapshot, consistency_errors
from tests.controlplane.conftest import SITES
from tests.controlplane.manifests import world


@pytest.fixture(scope="module")
def translated() -> XdsResources:
    resources = translate(world(SITES), TranslateOptions(readiness_port=0)).xds
    # Two HTTPS listeners on one port and one HTTP listener: 2 Envoy listeners + readiness,
    # three RouteConfigurations.
    assert len(resources.listeners) == 3
    assert len(resources.route_configurations) == 3
    return resources


def _managers(listener: listener_pb2.Listener) -> list[hcm_pb2.HttpConnectionManager]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    found = []
    for chain in chains:
        for network_filter in chain.filters:
            manager = hcm_pb2.HttpConnectionManager()
            if network_filter.typed_config.Unpack(manager):
                found.append(manager)
    return found


def _readiness(resources: XdsResources) -> listener_pb2.Listener:
    listener = resources.listener(resources.readiness_listener)
    assert listener is not None
    return listener


def test_error_route_configuration_answers_500_for_everything() -> None:
    config = error_route_configuration("some/name")
    assert config.name == "some/name"
    assert error_route_configuration().name == ERROR_ROUTE_CONFIGURATION
    (host,) = config.virtual_hosts
    assert host.name == ERROR_VIRTUAL_HOST
    assert list(host.domains) == ["*"]
    (route,) = host.routes
    assert route.match.prefix == "/"
    assert route.direct_response.status == 500


def test_rds_error_rewrites_every_route_configuration_and_keeps_its_name(
    translated: XdsResources,
) -> None:
    rewritten = with_rds_error(translated)
    names = [rc.name for rc in translated.route_configurations]
    assert [rc.name for rc in rewritten.route_configurations] == names
    for config in rewritten.route_configurations:
        assert config == error_route_configuration(config.name)
    # Listeners (readiness included), clusters, endpoints and secrets are left alone, so every
    # HCM still reads its routes over RDS under the same name.
    assert rewritten.listeners == translated.listeners
    assert rewritten.clusters == translated.clusters
    assert rewritten.cluster_load_assignments == translated.cluster_load_assignments
    assert rewritten.secrets == translated.secrets
    assert not consistency_errors(Snapshot.from_messages(rewritten.messages()))
    assert envoy_rejections(rewritten) == []


def test_inline_error_rewrites_every_hcm_but_the_readiness_listeners(
    translated: XdsResources,
) -> None:
    rewritten = with_inline_error(translated)
    assert _readiness(rewritten) == _readiness(translated)
    served = [item for item in rewritten.listeners if item.name != rewritten.readiness_listener]
    assert served
    managers = [manager for listener in served for manager in _managers(listener)]
    # One HCM per filter chain: two SNI chains on 443, one on the HTTP port.
    assert len(managers) == 3
    for manager in managers:
        assert not manager.HasField("rds")
        assert manager.route_config == error_route_configuration()
    # Nothing but the HCMs changes: same listeners by name, same chain matches, and the
    # RouteConfigurations stay in the snapshot untouched (as in Envoy Gateway v1.3).
    assert [item.name for item in rewritten.listeners] == [
        item.name for item in translated.listeners
    ]
    for before, after in zip(translated.listeners, rewritten.listeners, strict=True):
        assert [c.filter_chain_match for c in after.filter_chains] == [
            c.filter_chain_match for c in before.filter_chains
        ]
    assert rewritten.route_configurations == translated.route_configurations
    assert not consistency_errors(Snapshot.from_messages(rewritten.messages()))
    assert envoy_rejections(rewritten) == []


def test_inline_error_reaches_a_default_filter_chain(translated: XdsResources) -> None:
    http = next(item for item in translated.listeners if item.name != translated.readiness_listener)
    with_default = listener_pb2.Listener()
    with_default.CopyFrom(http)
    with_default.default_filter_chain.CopyFrom(http.filter_chains[0])
    listeners = tuple(
        with_default if item.name == http.name else item for item in translated.listeners
    )
    rewritten = with_inline_error(
        XdsResources(
            listeners=listeners,
            route_configurations=translated.route_configurations,
            clusters=translated.clusters,
            cluster_load_assignments=translated.cluster_load_assignments,
            secrets=translated.secrets,
            readiness_listener=translated.readiness_listener,
        )
    )
    listener = rewritten.listener(http.name)
    assert listener is not None
    default = hcm_pb2.HttpConnectionManager()
    assert listener.default_filter_chain.filters[0].typed_config.Unpack(default)
    assert default.route_config == error_route_configuration()


def test_policies_leave_a_translation_without_listeners_alone() -> None:
    empty = translate(Resources(), TranslateOptions(readiness_port=0)).xds
    assert [item.name for item in empty.listeners] == [empty.readiness_listener]
    assert with_rds_error(empty) == empty
    assert with_inline_error(empty) == empty
