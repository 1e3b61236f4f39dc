"""Stage 2 for proxyless gRPC clients: what gRPC's xDS client is told, rule by rule
(`sut.translate.proxyless`), checked on the protos."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sut.gatewayapi import ObjectKey, Resources, ServicePort
from sut.translate import ProxylessResources, build_ir, grpc_port, to_proxyless
from sut.translate.proxyless import LOCALITY_ZONE
from sut.xds import Snapshot, consistency_errors
from tests.translate.worlds import (
    backend,
    backend_traffic_policy,
    gateway,
    listener,
    prefix,
    route,
    tls_secret,
    world,
)

ALL = {"namespaces": {"from": "All"}}
HOST = "echo.example.com"
CLUSTER = "httproute/default/app/rule/0/backend/default/web/8080"
VHOST = f"infra/eg/http/{HOST.replace('.', '_')}"


def grpc_service(name: str, ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Service with an HTTP port 8080 and a gRPC port 9090 (unless `ports` says otherwise)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "ports": ports
            if ports is not None
            else [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}]
        },
    }


def proxyless(resources: Resources, gateway_key: ObjectKey | None = None) -> ProxylessResources:
    ir, _ = build_ir(resources)
    result = to_proxyless(ir, resources, gateway_key)
    assert consistency_errors(Snapshot.from_messages(result.messages())) == []
    return result


def one_rule(
    rule: dict[str, Any], *extra: dict[str, Any], hostnames: list[str] | None = None
) -> ProxylessResources:
    return proxyless(
        world(
            gateway([listener(allowed_routes=ALL)]),
            grpc_service("web"),
            route("app", hostnames=[HOST] if hostnames is None else hostnames, rules=[rule]),
            *extra,
            endpoints={("default", "web", 8080): 1, ("default", "web", 9090): 2},
        )
    )


def routes_of(result: ProxylessResources) -> list[route_components_pb2.Route]:
    (config,) = result.route_configurations
    (host,) = config.virtual_hosts
    return list(host.routes)


def test_a_hostname_becomes_an_api_listener_loading_its_virtual_host_over_rds() -> None:
    result = one_rule({"backendRefs": [backend("web")]})
    (found,) = result.listeners
    assert found.name == HOST
    assert not found.HasField("address") and not found.filter_chains
    manager = hcm_pb2.HttpConnectionManager()
    assert found.api_listener.api_listener.Unpack(manager)
    assert manager.rds.route_config_name == VHOST
    assert manager.rds.config_source.HasField("ads")
    assert [f.name for f in manager.http_filters] == ["envoy.filters.http.router"]
    config = result.route_configuration(VHOST)
    assert config is not None
    (host,) = config.virtual_hosts
    assert (host.name, list(host.domains)) == (VHOST, [HOST])
    assert not config.HasField("validate_clusters")
    (only,) = host.routes
    assert only.match.prefix == "/" and only.route.cluster == CLUSTER


def test_clusters_are_eds_round_robin_with_the_grpc_ports_endpoints_in_one_weighted_locality() -> (
    None
):
    result = one_rule({"backendRefs": [backend("web")]})
    cluster = result.cluster(CLUSTER)
    assert cluster is not None
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert cluster.eds_cluster_config.service_name == CLUSTER
    assignment = result.cluster_load_assignment(CLUSTER)
    assert assignment is not None
    (locality,) = assignment.endpoints
    assert locality.locality.zone == LOCALITY_ZONE
    assert locality.load_balancing_weight.value == 1
    ports = [e.endpoint.address.socket_address.port_value for e in locality.lb_endpoints]
    assert ports == [10000, 10001]  # the two endpoints of port 9090, not the one of 8080


@pytest.mark.parametrize("load_balancer", [None, "RoundRobin", "LeastRequest", "Random"])
def test_every_load_balancer_is_published_as_round_robin(load_balancer: str | None) -> None:
    policies = (
        [backend_traffic_policy("lb", [("HTTPRoute", "app")], load_balancer=load_balancer)]
        if load_balancer
        else []
    )
    resources = world(
        gateway([listener(allowed_routes=ALL)]),
        grpc_service("web"),
        route("app", hostnames=[HOST], rules=[{"backendRefs": [backend("web")]}]),
        *policies,
    )
    ir, _ = build_ir(resources)
    assert ir.clusters[0].settings.load_balancer == load_balancer  # the policy did apply
    (cluster,) = to_proxyless(ir, resources).clusters
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        pytest.param([ServicePort(8080, "http")], None, id="no-grpc-port"),
        pytest.param([ServicePort(9090, "grpc")], 9090, id="named-grpc"),
        pytest.param(
            [ServicePort(9000, "grpc-b"), ServicePort(9090, "grpc"), ServicePort(80, "grpc-a")],
            9090,
            id="grpc-beats-grpc-star",
        ),
        pytest.param(
            [ServicePort(9100, "grpc-b"), ServicePort(9001, "grpc-a")], 9001, id="lowest-grpc-star"
        ),
        pytest.param([ServicePort(9090, "grpc", protocol="UDP")], None, id="udp-is-no-grpc"),
        pytest.param([ServicePort(9090, "grpcweb")], None, id="prefix-needs-the-dash"),
    ],
)
def test_the_grpc_port_of_a_service(ports: list[ServicePort], expected: int | None) -> None:
    found = grpc_port(tuple(ports))
    assert (found.port if found is not None else None) == expected


def test_a_service_without_a_grpc_port_gives_its_cluster_no_endpoints() -> None:
    result = proxyless(
        world(
            gateway([listener(allowed_routes=ALL)]),
            grpc_service("web", ports=[{"port": 8080}]),
            route("app", hostnames=[HOST], rules=[{"backendRefs": [backend("web")]}]),
            endpoints={("default", "web", 8080): 1},
        )
    )
    assignment = result.cluster_load_assignment(CLUSTER)
    assert assignment is not None and not assignment.endpoints


def test_wildcard_and_catch_all_hosts_get_no_listener() -> None:
    result = one_rule(
        {"backendRefs": [backend("web")]}, hostnames=[HOST, "*.example.com", "*.other.test"]
    )
    assert [item.name for item in result.listeners] == [HOST]
    catch_all = one_rule({"backendRefs": [backend("web")]}, hostnames=[])
    assert catch_all.listeners == () and catch_all.clusters == ()


def test_only_http_listeners_are_published_and_the_first_gateway_port_wins() -> None:
    resources = world(
        gateway(
            [
                listener("http", 80, allowed_routes=ALL),
                listener("http-alt", 8000, allowed_routes=ALL),
                listener(
                    "https",
                    443,
                    "HTTPS",
                    hostname="secure.example.com",
                    allowed_routes=ALL,
                    certificates=[{"name": "tls"}],
                ),
            ]
        ),
        tls_secret("tls"),
        grpc_service("web"),
        route("app", hostnames=[HOST], rules=[{"backendRefs": [backend("web")]}]),
        route(
            "secure",
            parents=[{"name": "eg", "namespace": "infra", "sectionName": "https"}],
            hostnames=["secure.example.com"],
            rules=[{"backendRefs": [backend("web")]}],
        ),
    )
    ir, _ = build_ir(resources)
    assert {item.protocol for item in ir.listeners} == {"HTTP", "HTTPS"}
    result = proxyless(resources)
    assert [item.name for item in result.listeners] == [HOST]
    assert [item.name for item in result.route_configurations] == [VHOST]  # port 80's, not 8000's


def test_a_hostname_two_gateways_serve_goes_to_the_first_or_to_the_one_asked_for() -> None:
    def app(name: str, gateway_name: str) -> dict[str, Any]:
        return route(
            name,
            parents=[{"name": gateway_name, "namespace": "infra"}],
            hostnames=[HOST],
            rules=[{"backendRefs": [backend("web")]}],
        )

    resources = world(
        gateway([listener(allowed_routes=ALL)], name="a"),
        gateway([listener(port=81, allowed_routes=ALL)], name="b"),
        grpc_service("web"),
        app("via-a", "a"),
        app("via-b", "b"),
    )
    (config,) = proxyless(resources).route_configurations
    assert config.name.startswith("infra/a/")
    (config,) = proxyless(resources, ObjectKey("infra", "b")).route_configurations
    assert config.name.startswith("infra/b/")
    (only,) = routes_of(proxyless(resources, ObjectKey("infra", "b")))
    assert only.route.cluster.startswith("httproute/default/via-b/")


def test_path_prefixes_are_spelt_as_grpc_paths_and_unmatchable_routes_are_dropped() -> None:
    def path(kind: str, value: str) -> dict[str, Any]:
        return {"path": {"type": kind, "value": value}}

    result = one_rule(
        {
            "matches": [
                prefix("/pkg.Echo"),  # one segment: every method of the service
                prefix("/pkg.Echo/Call/"),  # two segments: that one method
                prefix("/a/b/c"),  # three segments: no gRPC path has them
                path("Exact", "/pkg.Echo/Exact"),
                path("RegularExpression", "/pkg\\.Echo/.*"),
                {
                    "path": {"type": "PathPrefix", "value": "/q"},
                    "queryParams": [{"name": "x", "value": "1"}],
                },
                {"path": {"type": "PathPrefix", "value": "/get"}, "method": "GET"},
                {"path": {"type": "PathPrefix", "value": "/post"}, "method": "POST"},
            ],
            "backendRefs": [backend("web")],
        }
    )
    matches = [route.match for route in routes_of(result)]
    spelt = [
        (m.WhichOneof("path_specifier"), m.prefix or m.path or m.safe_regex.regex) for m in matches
    ]
    assert sorted(spelt) == sorted(
        [
            ("prefix", "/pkg.Echo/"),
            ("path", "/pkg.Echo/Call"),
            ("path", "/pkg.Echo/Exact"),
            ("safe_regex", "/pkg\\.Echo/.*"),
            ("prefix", "/post/"),
        ]
    )
    assert all(not m.headers and not m.query_parameters for m in matches)


def test_non_forwarding_routes_stay_and_a_path_rewrite_fails_not_calls_another_method() -> None:
    rules = [
        {
            "matches": [prefix("/moved")],
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"hostname": "x.test"}}],
        },
        {
            "matches": [prefix("/renamed")],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/x/y"}},
                }
            ],
            "backendRefs": [backend("web")],
        },
        {
            "matches": [prefix("/rehosted")],
            "filters": [
                {"type": "URLRewrite", "urlRewrite": {"hostname": "internal.example.com"}},
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {"set": [{"name": "x-set", "value": "1"}]},
                },
            ],
            "backendRefs": [backend("web")],
        },
        {"matches": [prefix("/half")], "backendRefs": [backend("web"), backend("missing")]},
    ]
    resources = world(
        gateway([listener(allowed_routes=ALL)]),
        grpc_service("web"),
        route("app", hostnames=[HOST], rules=rules),
    )
    by_prefix: dict[str, list[route_components_pb2.Route]] = {}
    for found in routes_of(proxyless(resources)):
        by_prefix.setdefault(found.match.prefix, []).append(found)
    (moved,) = by_prefix["/moved/"]
    assert moved.redirect.host_redirect == "x.test"
    (renamed,) = by_prefix["/renamed/"]
    assert renamed.WhichOneof("action") == "direct_response"
    assert renamed.direct_response.status == 500
    (rehosted,) = by_prefix["/rehosted/"]
    assert rehosted.route.cluster.startswith("httproute/default/app/rule/2/")
    assert not rehosted.route.host_rewrite_literal and not rehosted.request_headers_to_add
    share, rest = by_prefix["/half/"]  # the invalid backend's 500 share stays
    assert share.direct_response.status == 500 and share.match.HasField("runtime_fraction")
    assert rest.WhichOneof("action") == "route"


def test_equal_inputs_give_byte_equal_resources() -> None:
    rule = {"matches": [prefix("/pkg.Echo")], "backendRefs": [backend("web")]}
    first, second = one_rule(rule), one_rule(rule)
    assert [m.SerializeToString(deterministic=True) for m in first.messages()] == [
        m.SerializeToString(deterministic=True) for m in second.messages()
    ]
