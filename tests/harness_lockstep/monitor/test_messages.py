"""decode() and references() on real xDS protobufs, SotW and Delta, ADS and per-type services."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from envoy.service.cluster.v3 import cds_pb2
from envoy.service.discovery.v3 import ads_pb2, discovery_pb2
from envoy.service.endpoint.v3 import eds_pb2
from envoy.service.listener.v3 import lds_pb2
from envoy.service.route.v3 import rds_pb2
from envoy.service.secret.v3 import sds_pb2
from google.protobuf import any_pb2, struct_pb2

import harness.lockstep.monitor
from harness.lockstep.monitor import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    TYPE_SHORT,
    XDS_METHODS,
    DecodeProblem,
    GrpcMessage,
    References,
    StreamKey,
    WireResource,
    XdsRequest,
    XdsResponse,
    decode,
    references,
)
from harness.lockstep.monitor.messages import _references
from harness.loopback.relay import Direction
from sut.xds import ResourceType
from tests.xds.builders import (
    cluster,
    delta_request,
    listener,
    load_assignment,
    packed,
    route_configuration,
    sotw_request,
)

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
SOTW = ADS + "StreamAggregatedResources"
DELTA = ADS + "DeltaAggregatedResources"


def grpc(method: str, direction: Direction, message: object, at: float = 1.5) -> GrpcMessage:
    return GrpcMessage(
        connection=2,
        stream=3,
        method=method,
        direction=direction,
        at=at,
        payload=message.SerializeToString(),  # type: ignore[attr-defined]
    )


def decoded(method: str, direction: Direction, message: object) -> XdsRequest | XdsResponse:
    result = decode(grpc(method, direction, message))
    assert not isinstance(result, DecodeProblem), result
    return result


def secret(name: str) -> secret_pb2.Secret:
    made = secret_pb2.Secret(name=name)
    made.generic_secret.secret.inline_string = "s3cret"
    return made


def wire(message: object, type_url: str, name: str = "", version: str = "v") -> WireResource:
    body = message.SerializeToString()  # type: ignore[attr-defined]
    return WireResource(name=name, version=version, body=body, type_url=type_url)


# -- requests --------------------------------------------------------------------------------


def test_a_sotw_request_and_a_nack():
    request = sotw_request(ResourceType.ROUTE, ["b", "a"], nonce="n-1", version="v1")
    decoded_request = decoded(SOTW, "to_server", request)
    assert decoded_request == XdsRequest(
        stream=StreamKey(2, 3),
        at=1.5,
        delta=False,
        type_url=ROUTE,
        node_id="node-1",
        version_info="v1",
        resource_names=("b", "a"),
        unsubscribe=(),
        initial_resource_versions=(),
        response_nonce="n-1",
        error_detail=None,
    )
    assert not decoded_request.is_nack and decoded_request.type_short == "RDS"
    nack = decoded(SOTW, "to_server", sotw_request(ResourceType.ROUTE, error="bad regex"))
    assert isinstance(nack, XdsRequest) and nack.error_detail == "bad regex" and nack.is_nack


def test_a_delta_request_with_initial_versions_and_node_metadata():
    request = delta_request(
        ResourceType.CLUSTER,
        ["c", "a"],
        ["gone"],
        nonce="7",
        initial={"z": "2", "a": "1"},
    )
    request.node.metadata.CopyFrom(
        struct_pb2.Struct(fields={"zone": struct_pb2.Value(string_value="z1")})
    )
    request.node.metadata.fields["count"].number_value = 3
    result = decoded(DELTA, "to_server", request)
    assert isinstance(result, XdsRequest)
    assert result.delta and result.type_url == CLUSTER and result.node_id == "node-1"
    assert result.resource_names == ("c", "a") and result.unsubscribe == ("gone",)
    assert result.initial_resource_versions == (("a", "1"), ("z", "2"))
    assert result.response_nonce == "7" and result.version_info == ""
    assert result.error_detail is None
    assert result.node_metadata == (("zone", "z1"),)
    later = delta_request(ResourceType.CLUSTER, nonce="8", error="nope")
    later.ClearField("node")  # set_node_on_first_message_only
    nack = decoded(DELTA, "to_server", later)
    assert isinstance(nack, XdsRequest) and nack.node_id == "" and nack.error_detail == "nope"


# -- responses -------------------------------------------------------------------------------

RESOURCES = {
    LISTENER: (listener("L-1", "routes-1"), "L-1"),
    ROUTE: (route_configuration("routes-1", "app"), "routes-1"),
    CLUSTER: (cluster("app"), "app"),
    ENDPOINT: (load_assignment("app", 8000), "app"),
    SECRET: (secret("cert"), "cert"),
}


@pytest.mark.parametrize("type_url", list(RESOURCES))
def test_a_sotw_response_names_each_resource_from_its_message(type_url):
    message, name = RESOURCES[type_url]
    other = type(message)()
    other.CopyFrom(message)
    setattr(other, "cluster_name" if type_url == ENDPOINT else "name", "second")
    response = discovery_pb2.DiscoveryResponse(
        type_url=type_url,
        version_info="v9",
        nonce="n-4",
        resources=[packed(message), packed(other)],
    )
    result = decoded(SOTW, "to_client", response)
    assert result == XdsResponse(
        stream=StreamKey(2, 3),
        at=1.5,
        delta=False,
        type_url=type_url,
        version_info="v9",
        nonce="n-4",
        resources=(
            WireResource(name, "v9", message.SerializeToString(), type_url),
            WireResource("second", "v9", other.SerializeToString(), type_url),
        ),
        removed=(),
    )
    assert result.type_short == TYPE_SHORT[type_url]


def test_a_delta_response_with_versions_removals_and_a_resource_without_body():
    route = route_configuration("routes-1", "app")
    response = discovery_pb2.DeltaDiscoveryResponse(
        type_url=ROUTE, system_version_info="sys-3", nonce="12", removed_resources=["old"]
    )
    response.resources.add(name="routes-1", version="h1", resource=packed(route))
    response.resources.add(name="bare", version="h2")
    result = decoded(DELTA, "to_client", response)
    assert result == XdsResponse(
        stream=StreamKey(2, 3),
        at=1.5,
        delta=True,
        type_url=ROUTE,
        version_info="sys-3",
        nonce="12",
        resources=(
            WireResource("routes-1", "h1", route.SerializeToString(), ROUTE),
            WireResource("bare", "h2", None, ROUTE),
        ),
        removed=("old",),
    )


PER_TYPE = {
    LISTENER: ("/envoy.service.listener.v3.ListenerDiscoveryService/", "Listeners"),
    ROUTE: ("/envoy.service.route.v3.RouteDiscoveryService/", "Routes"),
    CLUSTER: ("/envoy.service.cluster.v3.ClusterDiscoveryService/", "Clusters"),
    ENDPOINT: ("/envoy.service.endpoint.v3.EndpointDiscoveryService/", "Endpoints"),
    SECRET: ("/envoy.service.secret.v3.SecretDiscoveryService/", "Secrets"),
}


@pytest.mark.parametrize("type_url", list(PER_TYPE))
@pytest.mark.parametrize("delta", [False, True])
def test_per_type_services_fill_in_their_type(type_url, delta):
    service, noun = PER_TYPE[type_url]
    method = service + ("Delta" if delta else "Stream") + noun
    if delta:
        request: object = discovery_pb2.DeltaDiscoveryRequest(resource_names_subscribe=["x"])
        response: object = discovery_pb2.DeltaDiscoveryResponse(nonce="1")
    else:
        request = discovery_pb2.DiscoveryRequest(resource_names=["x"])
        message, _ = RESOURCES[type_url]
        response = discovery_pb2.DiscoveryResponse(nonce="1", resources=[packed(message)])
    got_request = decoded(method, "to_server", request)
    got_response = decoded(method, "to_client", response)
    assert isinstance(got_request, XdsRequest) and isinstance(got_response, XdsResponse)
    assert got_request.type_url == got_response.type_url == type_url
    assert got_request.delta == got_response.delta == delta
    assert got_request.resource_names == ("x",)


def test_the_method_table_matches_the_service_descriptors():
    services = [
        ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"],
        lds_pb2.DESCRIPTOR.services_by_name["ListenerDiscoveryService"],
        rds_pb2.DESCRIPTOR.services_by_name["RouteDiscoveryService"],
        cds_pb2.DESCRIPTOR.services_by_name["ClusterDiscoveryService"],
        eds_pb2.DESCRIPTOR.services_by_name["EndpointDiscoveryService"],
        sds_pb2.DESCRIPTOR.services_by_name["SecretDiscoveryService"],
    ]
    streaming = {
        f"/{service.full_name}/{method.name}": method.input_type.name.startswith("Delta")
        for service in services
        for method in service.methods
        if method.client_streaming
    }
    assert {path: method.delta for path, method in XDS_METHODS.items()} == streaming


# -- what is not xDS, or not what the response says ------------------------------------------


def problem_of(message: GrpcMessage) -> str:
    result = decode(message)
    assert isinstance(result, DecodeProblem), result
    assert result.connection == 2 and result.at == 1.5
    return result.detail


def test_a_resource_of_another_type_is_a_problem():
    response = discovery_pb2.DiscoveryResponse(type_url=ROUTE, resources=[packed(cluster("c"))])
    assert "resource in a" in problem_of(grpc(SOTW, "to_client", response))
    delta = discovery_pb2.DeltaDiscoveryResponse(type_url=ROUTE)
    delta.resources.add(name="c", resource=packed(cluster("c")))
    assert "resource in a" in problem_of(grpc(DELTA, "to_client", delta))


def test_a_resource_that_does_not_parse_is_a_problem():
    broken = any_pb2.Any(type_url=CLUSTER, value=b"\x0a\xff\xff")
    response = discovery_pb2.DiscoveryResponse(type_url=CLUSTER, resources=[broken])
    assert "does not parse" in problem_of(grpc(SOTW, "to_client", response))


@pytest.mark.parametrize("direction", ["to_server", "to_client"])
def test_garbage_and_unknown_methods_are_problems(direction):
    garbage = GrpcMessage(2, 3, SOTW, direction, 1.5, b"\xff\xff\xff")
    assert "does not parse" in problem_of(garbage)
    unknown = GrpcMessage(2, 3, "/grpc.health.v1.Health/Watch", direction, 1.5, b"")
    assert "not an xDS method" in problem_of(unknown)


# -- references ------------------------------------------------------------------------------


def tls_socket(context: object) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(
        name="envoy.transport_sockets.tls", typed_config=packed(context)
    )


def test_listener_references_its_route_configurations_and_secrets():
    built = listener("L-1", "routes-1")
    https = listener_components_pb2.FilterChain()
    https.CopyFrom(built.filter_chains[0])
    downstream = tls_pb2.DownstreamTlsContext()
    downstream.common_tls_context.tls_certificate_sds_secret_configs.add(name="cert-a")
    downstream.common_tls_context.validation_context_sds_secret_config.name = "ca"
    https.transport_socket.CopyFrom(tls_socket(downstream))
    built.filter_chains.append(https)
    fallback = listener("unused", "routes-default").filter_chains[0]
    built.default_filter_chain.CopyFrom(fallback)
    assert references(wire(built, LISTENER)) == References(
        routes=frozenset({"routes-1", "routes-default"}), secrets=frozenset({"cert-a", "ca"})
    )


def test_listener_with_inline_routes_references_their_clusters():
    inline = listener("L-inline", None)
    assert references(wire(inline, LISTENER)) == References()  # a direct response only
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="inline", route_config=route_configuration("inline", "inline-app")
    )
    inline.filter_chains[0].filters[0].typed_config.CopyFrom(packed(manager))
    assert references(wire(inline, LISTENER)) == References(clusters=frozenset({"inline-app"}))


def test_route_configuration_references_clusters_and_weighted_clusters():
    config = route_configuration("routes-1", "app", "api")
    host = config.virtual_hosts.add(name="second", domains=["b.example"])
    route = host.routes.add()
    route.match.prefix = "/"
    route.route.weighted_clusters.clusters.add(name="blue").weight.value = 1
    route.route.weighted_clusters.clusters.add(name="green").weight.value = 1
    direct = host.routes.add()
    direct.direct_response.status = 500
    assert references(wire(config, ROUTE)) == References(
        clusters=frozenset({"app", "api", "blue", "green"})
    )


def test_cluster_references_its_load_assignment_only_when_eds():
    assert references(wire(cluster("app"), CLUSTER)) == References(endpoints=frozenset({"app"}))
    unnamed = cluster("app")
    unnamed.eds_cluster_config.service_name = ""
    assert references(wire(unnamed, CLUSTER)) == References(endpoints=frozenset({"app"}))
    renamed = cluster("app")
    renamed.eds_cluster_config.service_name = "svc/app"
    assert references(wire(renamed, CLUSTER)) == References(endpoints=frozenset({"svc/app"}))
    static = cluster_pb2.Cluster(name="static", type=cluster_pb2.Cluster.STATIC)
    upstream = tls_pb2.UpstreamTlsContext()
    upstream.common_tls_context.tls_certificate_sds_secret_configs.add(name="client-cert")
    static.transport_socket.CopyFrom(tls_socket(upstream))
    assert references(wire(static, CLUSTER)) == References(secrets=frozenset({"client-cert"}))


def test_leaves_and_bodiless_resources_reference_nothing_and_answers_are_remembered():
    assert references(wire(load_assignment("app", 1), ENDPOINT)) == References()
    assert references(wire(secret("cert"), SECRET)) == References()
    assert references(WireResource("gone", "v", None, CLUSTER)) == References()
    resource = wire(route_configuration("cached", "c1"), ROUTE)
    first = references(resource)
    hits = _references.cache_info().hits
    assert references(resource) is first
    assert _references.cache_info().hits == hits + 1


def test_type_short_names():
    assert TYPE_SHORT == {
        LISTENER: "LDS",
        ROUTE: "RDS",
        CLUSTER: "CDS",
        ENDPOINT: "EDS",
        SECRET: "SDS",
    }
    assert {kind.type_url: kind.short_name for kind in ResourceType} == TYPE_SHORT


def test_the_decoding_modules_never_load_the_control_plane():
    """The monitor judges the bytes; what the server under test believes must not leak in."""
    script = (
        "import sys\n"
        "import harness.lockstep.monitor.messages, harness.lockstep.monitor.wire\n"
        "print(sorted(m for m in sys.modules if m == 'sut' or m.startswith('sut.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
    package = Path(harness.lockstep.monitor.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        imported = [
            name
            for node in ast.walk(tree)
            for name in (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        ]
        assert not [n for n in imported if n == "sut" or n.startswith("sut.")], source
