"""Stage 2 and the whole pipeline: what Envoy is told, for each semantic the spec fixes."""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest
import yaml
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from sut.gatewayapi import load_manifests
from sut.translate import (
    INVALID_BACKEND_ROUTE_SUFFIX,
    TranslateOptions,
    Translation,
    translate,
)
from tests.translate.worlds import (
    backend,
    gateway,
    listener,
    prefix,
    route,
    service,
    tls_secret,
    world,
)

ALL = {"namespaces": {"from": "All"}}


def translated(*documents: dict[str, Any], **options: Any) -> Translation:
    return translate(world(*documents), TranslateOptions(**options))


def routes_of(
    result: Translation, config: str = "infra/eg/http"
) -> list[route_components_pb2.Route]:
    found = result.xds.route_configuration(config)
    assert found is not None, [c.name for c in result.xds.route_configurations]
    return [r for host in found.virtual_hosts for r in host.routes]


def single_rule(rule: dict[str, Any], hostnames: list[str] | None = None) -> Translation:
    return translated(
        gateway([listener(allowed_routes=ALL)]),
        service("web"),
        service("api"),
        route("app", hostnames=hostnames, rules=[rule]),
    )


@pytest.mark.parametrize(
    ("value", "field", "expected"),
    [
        ("/", "prefix", "/"),
        ("/foo", "path_separated_prefix", "/foo"),
        ("/foo/", "path_separated_prefix", "/foo"),
    ],
)
def test_path_prefix_matches_whole_segments(value: str, field: str, expected: str) -> None:
    (found,) = routes_of(single_rule({"matches": [prefix(value)], "backendRefs": [backend("web")]}))
    assert found.match.WhichOneof("path_specifier") == field
    assert getattr(found.match, field) == expected


def test_matches_headers_query_and_method() -> None:
    (found,) = routes_of(
        single_rule(
            {
                "matches": [
                    {
                        "path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"},
                        "headers": [
                            {"name": "X-Version", "value": "2"},
                            {"name": "x-tier", "type": "RegularExpression", "value": "gold|sil"},
                        ],
                        "queryParams": [{"name": "debug", "value": "1"}],
                        "method": "POST",
                    }
                ],
                "backendRefs": [backend("web")],
            }
        )
    )
    assert found.match.safe_regex.regex == "/v[0-9]+/.*"
    headers = {h.name: h.string_match for h in found.match.headers}
    assert headers["x-version"].exact == "2"
    assert headers["x-tier"].safe_regex.regex == "gold|sil"
    assert headers[":method"].exact == "POST"
    assert found.match.query_parameters[0].string_match.exact == "1"


WEB = "httproute/default/app/rule/0/backend/default/web/8080"
API = "httproute/default/app/rule/0/backend/default/api/8080"


def test_single_backend_uses_one_cluster_named_by_rule_and_destination() -> None:
    result = single_rule({"backendRefs": [backend("web")]})
    (found,) = routes_of(result)
    assert found.route.cluster == WEB
    assert [c.name for c in result.xds.clusters] == [WEB]
    cluster = result.xds.clusters[0]
    assert cluster.eds_cluster_config.service_name == cluster.name
    assert result.xds.cluster_load_assignment(cluster.name) is not None


def test_weights_become_weighted_clusters_and_zero_gets_nothing() -> None:
    result = single_rule(
        {
            "backendRefs": [
                backend("web", weight=3),
                backend("api", weight=1),
                backend("web", weight=0),
            ]
        }
    )
    (found,) = routes_of(result)
    weights = {c.name: c.weight.value for c in found.route.weighted_clusters.clusters}
    assert weights == {WEB: 3, API: 1}


def test_a_rule_that_moves_to_another_service_gets_another_cluster() -> None:
    """Named by destination, not by position: while the proxy still routes by the old rule,
    the old cluster name still leads to the old Service (make-before-break)."""
    before = single_rule({"backendRefs": [backend("web")]})
    after = single_rule({"backendRefs": [backend("api")]})
    assert {c.name for c in before.xds.clusters}.isdisjoint(c.name for c in after.xds.clusters)


def test_the_same_destination_twice_in_a_rule_gets_two_clusters() -> None:
    result = single_rule({"backendRefs": [backend("web", weight=1), backend("web", weight=2)]})
    names = [c.name for c in result.xds.clusters]
    assert names == [WEB, WEB + "/1"]


@pytest.mark.parametrize(
    "backends",
    [
        pytest.param([backend("web", weight=0), backend("api", weight=0)], id="all-zero"),
        pytest.param([backend("gone"), backend("nope")], id="all-invalid"),
        pytest.param([], id="no-backends"),
    ],
)
def test_rules_without_traffic_carrying_backends_answer_500(backends: list[dict]) -> None:
    result = single_rule({"backendRefs": backends})
    (found,) = routes_of(result)
    assert found.direct_response.status == 500
    assert result.xds.clusters == ()


def test_invalid_backend_share_answers_500_by_runtime_fraction() -> None:
    (share, main) = routes_of(
        single_rule({"backendRefs": [backend("web", weight=1), backend("gone", weight=3)]})
    )
    assert share.name == main.name + INVALID_BACKEND_ROUTE_SUFFIX
    assert share.match.path_separated_prefix == main.match.path_separated_prefix or (
        share.match.prefix == main.match.prefix
    )
    fraction = share.match.runtime_fraction.default_value
    assert (fraction.numerator, fraction.denominator) == (750_000, 2)  # 2 = MILLION
    assert share.direct_response.status == 500
    assert main.route.cluster == WEB


def test_per_backend_header_filters_ride_on_weighted_clusters() -> None:
    (found,) = routes_of(
        single_rule(
            {
                "backendRefs": [
                    backend(
                        "web",
                        filters=[
                            {
                                "type": "RequestHeaderModifier",
                                "requestHeaderModifier": {
                                    "set": [{"name": "x-backend", "value": "web"}]
                                },
                            }
                        ],
                    )
                ]
            }
        )
    )
    (weighted,) = found.route.weighted_clusters.clusters
    assert weighted.name == WEB
    assert weighted.request_headers_to_add[0].header.key == "x-backend"


def test_header_modifiers_set_add_remove() -> None:
    (found,) = routes_of(
        single_rule(
            {
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "x-set", "value": "1"}],
                            "add": [{"name": "x-add", "value": "2"}],
                            "remove": ["x-gone"],
                        },
                    },
                    {
                        "type": "ResponseHeaderModifier",
                        "responseHeaderModifier": {"add": [{"name": "x-served-by", "value": "eg"}]},
                    },
                ],
                "backendRefs": [backend("web")],
            }
        )
    )
    added = {(o.header.key, o.append_action) for o in found.request_headers_to_add}
    option = base_pb2.HeaderValueOption
    assert added == {
        ("x-set", option.OVERWRITE_IF_EXISTS_OR_ADD),
        ("x-add", option.APPEND_IF_EXISTS_OR_ADD),
    }
    assert list(found.request_headers_to_remove) == ["x-gone"]
    assert found.response_headers_to_add[0].header.key == "x-served-by"


REWRITES = [
    # (match prefix, replacePrefixMatch) -> (prefix_rewrite, regex pattern, substitution)
    pytest.param("/foo", "/xyz", ("/xyz", "", ""), id="plain"),
    pytest.param("/foo", "/xyz/", ("/xyz", "", ""), id="replacement-trailing-slash"),
    pytest.param("/foo/", "/xyz", ("/xyz", "", ""), id="match-trailing-slash"),
    pytest.param("/foo", "", ("", "^\\/foo/*", "/"), id="empty-replacement"),
    pytest.param("/foo", "/", ("", "^\\/foo/*", "/"), id="slash-replacement"),
    pytest.param("/", "/xyz", ("/xyz/", "", ""), id="match-root"),
]


@pytest.mark.parametrize(("match_prefix", "replacement", "expected"), REWRITES)
def test_url_rewrite_replace_prefix_match(
    match_prefix: str, replacement: str, expected: tuple[str, str, str]
) -> None:
    (found,) = routes_of(
        single_rule(
            {
                "matches": [prefix(match_prefix)],
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "hostname": "internal.example.com",
                            "path": {
                                "type": "ReplacePrefixMatch",
                                "replacePrefixMatch": replacement,
                            },
                        },
                    }
                ],
                "backendRefs": [backend("web")],
            }
        )
    )
    action = found.route
    assert action.host_rewrite_literal == "internal.example.com"
    got = (
        action.prefix_rewrite,
        action.regex_rewrite.pattern.regex,
        action.regex_rewrite.substitution,
    )
    assert got == expected


def test_url_rewrite_full_path_keeps_the_query() -> None:
    (found,) = routes_of(
        single_rule(
            {
                "filters": [
                    {
                        "type": "URLRewrite",
                        "urlRewrite": {
                            "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}
                        },
                    }
                ],
                "backendRefs": [backend("web")],
            }
        )
    )
    # regex_rewrite works on the path only, so the query string survives.
    assert found.route.regex_rewrite.pattern.regex == "^/.*$"
    assert found.route.regex_rewrite.substitution == "/new"


def redirect_of(
    redirect: dict[str, Any],
    port: int = 8080,
    hostnames: list[str] | None = None,
    protocol: str = "HTTP",
) -> route_components_pb2.RedirectAction:
    listeners = [
        listener(
            "web",
            port,
            protocol,
            allowed_routes=ALL,
            certificates=[{"name": "cert"}] if protocol == "HTTPS" else None,
        )
    ]
    result = translated(
        gateway(listeners),
        tls_secret("cert"),
        route(
            "app",
            hostnames=hostnames,
            rules=[{"filters": [{"type": "RequestRedirect", "requestRedirect": redirect}]}],
        ),
        bind_port_zero=True,
    )
    (found,) = routes_of(result, "infra/eg/web")
    return found.redirect


REDIRECTS = [
    # (filter, listener port, hostnames) -> (scheme, host, port) in the RedirectAction
    pytest.param({}, 8080, None, ("", "", 8080), id="listener-port-not-envoy-port"),
    pytest.param(
        {"scheme": "https"},
        8080,
        ["shop.example.com"],
        ("https", "shop.example.com", 0),
        id="scheme-well-known-port-omitted",
    ),
    pytest.param(
        {"scheme": "https"},
        8080,
        None,
        ("https", "", 443),
        id="scheme-under-wildcard-host-keeps-port",
    ),
    pytest.param(
        {"scheme": "http", "port": 8443}, 80, None, ("http", "", 8443), id="explicit-port"
    ),
    pytest.param({}, 80, ["shop.example.com"], ("", "shop.example.com", 0), id="port-80-omitted"),
    pytest.param(
        {"hostname": "other.example.com"},
        80,
        None,
        ("", "other.example.com", 0),
        id="hostname-given",
    ),
    pytest.param(
        {"hostname": "other.example.com"},
        9090,
        None,
        ("", "other.example.com", 9090),
        id="hostname-and-listener-port",
    ),
]


@pytest.mark.parametrize(("spec", "port", "hostnames", "expected"), REDIRECTS)
def test_redirect_location_port(
    spec: dict[str, Any], port: int, hostnames: list[str] | None, expected: tuple[str, str, int]
) -> None:
    action = redirect_of(spec, port, hostnames)
    assert (action.scheme_redirect, action.host_redirect, action.port_redirect) == expected


def test_redirect_status_and_path() -> None:
    action = redirect_of(
        {"statusCode": 301, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/moved"}}
    )
    assert action.response_code == route_components_pb2.RedirectAction.MOVED_PERMANENTLY
    assert action.path_redirect == "/moved"
    assert redirect_of({}).response_code == route_components_pb2.RedirectAction.FOUND


def _hcm(chain: Any) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(manager)
    return manager


def test_https_listeners_get_one_sni_filter_chain_each() -> None:
    result = translated(
        gateway(
            [
                listener("shop", 443, "HTTPS", "shop.example.com", ALL, [{"name": "cert"}]),
                listener("blog", 443, "HTTPS", "*.blog.example.com", ALL, [{"name": "cert"}]),
            ]
        ),
        tls_secret("cert"),
        service("web"),
        route("app", rules=[{"backendRefs": [backend("web")]}]),
        initial_fetch_timeout=datetime.timedelta(seconds=3),
    )
    envoy_listener = result.xds.listener("infra/eg/shop")
    assert envoy_listener is not None
    assert envoy_listener.listener_filters[0].name == "envoy.filters.listener.tls_inspector"
    chains = {chain.name: chain for chain in envoy_listener.filter_chains}
    assert set(chains) == {"infra/eg/shop", "infra/eg/blog"}
    assert list(chains["infra/eg/blog"].filter_chain_match.server_names) == ["*.blog.example.com"]
    manager = _hcm(chains["infra/eg/shop"])
    assert manager.stat_prefix == "https-443"
    assert manager.rds.route_config_name == "infra/eg/shop"
    assert manager.rds.config_source.initial_fetch_timeout.seconds == 3
    assert manager.rds.config_source.HasField("ads")
    context = tls_pb2.DownstreamTlsContext()
    chains["infra/eg/shop"].transport_socket.typed_config.Unpack(context)
    (sds,) = context.common_tls_context.tls_certificate_sds_secret_configs
    assert sds.name == "infra/cert" and sds.sds_config.HasField("ads")
    assert [s.name for s in result.xds.secrets] == ["infra/cert"]
    assert {c.name for c in result.xds.route_configurations} == {"infra/eg/shop", "infra/eg/blog"}


def test_http_listeners_on_one_port_share_a_route_configuration_with_isolation() -> None:
    result = translated(
        gateway(
            [
                listener("any", 80, allowed_routes=ALL),
                listener("wild", 80, hostname="*.example.com", allowed_routes=ALL),
                listener("other", 8080, allowed_routes=ALL),
            ]
        ),
        service("web"),
        route(
            "app",
            parents=[{"name": "eg", "namespace": "infra", "sectionName": "any"}],
            hostnames=["bar.com", "foo.example.com"],
            rules=[{"backendRefs": [backend("web")]}],
        ),
    )
    assert {item.name for item in result.xds.listeners} == {
        "infra/eg/any",
        "infra/eg/other",
        "envoy-gateway-proxy-ready-0.0.0.0-19001",
    }
    config = result.xds.route_configuration("infra/eg/any")
    assert config is not None
    assert config.validate_clusters.value and config.ignore_port_in_host_matching
    hosts = {host.name: list(host.domains) for host in config.virtual_hosts}
    # foo.example.com belongs to the *.example.com listener: dropped from "any" (isolation),
    # and the wildcard listener gets its own (empty) virtual host so it answers 404 itself.
    assert hosts == {
        "infra/eg/any/bar_com": ["bar.com"],
        "infra/eg/wild/*_example_com": ["*.example.com"],
    }


def test_listener_addresses_and_readiness() -> None:
    result = translated(
        gateway([listener("web", 8080)]),
        bind_port_zero=True,
        bind_address="127.0.0.1",
        readiness_port=0,
    )
    envoy_listener = result.xds.listener("infra/eg/web")
    assert envoy_listener is not None
    assert envoy_listener.address.socket_address.address == "127.0.0.1"
    assert envoy_listener.address.socket_address.port_value == 0
    assert _hcm(envoy_listener.default_filter_chain).stat_prefix == "http-8080"
    ready = result.xds.listener(result.xds.readiness_listener)
    assert ready is not None and ready.name == "envoy-gateway-proxy-ready-127.0.0.1-0"
    assert _hcm(ready.filter_chains[0]).HasField("route_config")


def _serialized(result: Translation) -> list[bytes]:
    return [m.SerializeToString(deterministic=True) for m in result.xds.messages()]


def test_output_is_deterministic_and_order_independent() -> None:
    documents = [
        gateway([listener(allowed_routes=ALL), listener("b", 81, allowed_routes=ALL)]),
        service("web"),
        service("api"),
        *[
            route(
                f"r{i}",
                hostnames=[f"h{i % 3}.example.com"],
                rules=[
                    {"matches": [prefix(f"/p{i}")], "backendRefs": [backend("web"), backend("api")]}
                ],
            )
            for i in range(12)
        ],
    ]
    first = translate(world(*documents))
    shuffled = list(documents)
    random.Random(7).shuffle(shuffled)
    second = translate(load_manifests(yaml.safe_dump_all(shuffled)))
    assert _serialized(first) == _serialized(second)
    assert first.ir == second.ir and first.statuses == second.statuses


def test_endpoints_come_from_resources_not_manifests() -> None:
    resources = world(
        gateway([listener(allowed_routes=ALL)]),
        service("web"),
        route("app", rules=[{"backendRefs": [backend("web")]}]),
        endpoints={("default", "web", 8080): 2},
    )
    assignment = translate(resources).xds.cluster_load_assignments[0]
    assert [
        e.endpoint.address.socket_address.port_value for e in assignment.endpoints[0].lb_endpoints
    ] == [10000, 10001]
    scaled = translate(resources.without_endpoints("default", "web", 8080))
    assert list(scaled.xds.cluster_load_assignments[0].endpoints) == []
