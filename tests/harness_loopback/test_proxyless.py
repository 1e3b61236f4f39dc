"""The proxyless gRPC client process against the real xDS server and real gRPC echo pods: it
routes by what it got over xDS, and its CSDS view says what it ACKed, NACKed or lacks."""

from __future__ import annotations

import time

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from harness.loopback.grpc_echo import GrpcEchoPod, GrpcEchoReply
from harness.loopback.proxyless import CsdsResource, ProxylessClient
from sut.xds import Snapshot, SnapshotCache, XdsServer
from tests.xds.builders import ads_source, packed

NODE = "proxyless-gw"


def _api_listener(host: str, route_config: str) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=host)
    manager.rds.route_config_name = route_config
    manager.rds.config_source.CopyFrom(ads_source())
    manager.http_filters.add(
        name="envoy.filters.http.router", typed_config=packed(router_pb2.Router())
    )
    return listener_pb2.Listener(
        name=host, api_listener=api_listener_pb2.ApiListener(api_listener=packed(manager))
    )


def _world(
    pods: dict[str, tuple[int, ...]], route_to: str, policy: int = cluster_pb2.Cluster.ROUND_ROBIN
) -> Snapshot:
    routes = route_pb2.RouteConfiguration(name="rc")
    host = routes.virtual_hosts.add(name="echo", domains=["echo.test"])
    route = host.routes.add()
    route.match.prefix = "/"
    route.route.cluster = route_to
    messages: list[object] = [_api_listener("echo.test", "rc"), routes]
    for name, ports in pods.items():
        cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS, lb_policy=policy)
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
        messages.append(cluster)
        assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        locality = assignment.endpoints.add()
        locality.locality.zone = "zone-a"  # gRPC rejects a locality without one
        locality.load_balancing_weight.value = 1  # and ignores one without a weight
        for port in ports:
            locality.lb_endpoints.add().endpoint.address.socket_address.CopyFrom(
                address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
            )
        messages.append(assignment)
    return Snapshot.from_messages(messages)  # type: ignore[arg-type]


def _until(predicate, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def pods():
    with (
        GrpcEchoPod("default", "svc-a", "svc-a-0") as a,
        GrpcEchoPod("default", "svc-b", "svc-b-0") as b,
    ):
        yield a, b


def test_a_grpc_echo_reply_names_the_pod_and_a_status_method_fails(pods):
    import grpc

    a, _ = pods
    with grpc.insecure_channel("{}:{}".format(*a.endpoint)) as channel:
        body = channel.unary_unary("/routeproof.Echo/Call")(b"", timeout=5)
        reply = GrpcEchoReply.from_bytes(body)
        assert (reply.pod, reply.service) == ("svc-a-0", "svc-a")
        assert reply.method == "/routeproof.Echo/Call"
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary("/routeproof.Echo/Status14")(b"", timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_client_follows_xds_and_csds_shows_what_it_holds(pods):
    a, b = pods
    cache = SnapshotCache()
    ports = {"svc-a": (a.endpoint[1],), "svc-b": (b.endpoint[1],)}
    cache.set_snapshot(NODE, _world(ports, "svc-a"))
    with (
        XdsServer(cache) as server,
        ProxylessClient(server.address, NODE, {"instance": "client-1"}) as client,
    ):
        first = client.call("echo.test", timeout=5.0)
        assert (first.code, first.pod) == ("OK", "svc-a-0")
        held = {(r.type_name, r.name): r for r in client.csds()}
        assert {status.status for status in held.values()} == {"ACKED"}
        assert set(held) == {
            ("Listener", "echo.test"),
            ("RouteConfiguration", "rc"),
            ("Cluster", "svc-a"),
            ("ClusterLoadAssignment", "svc-a"),
        }  # by name, only what the chosen route uses

        cache.set_snapshot(
            NODE, _world({"svc-a": (a.endpoint[1],), "svc-b": (b.endpoint[1],)}, "svc-b")
        )
        _until(lambda: client.call("echo.test").pod == "svc-b-0", "the route moved to svc-b")

        # A policy gRPC does not implement is NACKed; the last good config keeps serving.
        cache.set_snapshot(
            NODE,
            _world(
                {"svc-a": (a.endpoint[1],), "svc-b": (b.endpoint[1],)},
                "svc-b",
                policy=cluster_pb2.Cluster.LEAST_REQUEST,
            ),
        )

        def nacked() -> CsdsResource | None:
            for resource in client.csds():
                if resource.type_name == "Cluster" and resource.status == "NACKED":
                    return resource
            return None

        rejected = _until(nacked, "the LEAST_REQUEST cluster NACKed")
        assert rejected.name == "svc-b" and rejected.error
        assert client.call("echo.test").pod == "svc-b-0"


def test_a_hostname_that_is_not_published_is_requested_not_served():
    cache = SnapshotCache()
    cache.set_snapshot(NODE, Snapshot.empty())
    with XdsServer(cache) as server, ProxylessClient(server.address, NODE) as client:
        outcome = client.call("nowhere.test", timeout=0.5)
        assert outcome.code in {"DEADLINE_EXCEEDED", "UNAVAILABLE"}
        statuses = {(r.type_name, r.name): r.status for r in client.csds()}
        assert statuses.get(("Listener", "nowhere.test")) in {"REQUESTED", "DOES_NOT_EXIST"}


def test_a_client_that_dies_is_reported_with_its_stderr():
    client = ProxylessClient("127.0.0.1:1", NODE).start()
    try:
        assert client.running
        client._process.kill()  # type: ignore[union-attr]
        with pytest.raises(Exception, match="proxyless client"):
            client.csds()
    finally:
        client.stop()
    assert not client.running


def test_a_batch_of_calls_goes_out_side_by_side_and_names_each_method(pods):
    a, _ = pods
    cache = SnapshotCache()
    cache.set_snapshot(NODE, _world({"svc-a": (a.endpoint[1],)}, "svc-a"))
    with (
        XdsServer(cache) as server,
        ProxylessClient(server.address, NODE) as client,
    ):
        assert client.call("echo.test", timeout=5.0, method="/x.Y/Z").pod == "svc-a-0"
        started = time.monotonic()
        outcomes = client.calls(
            [
                ("echo.test", "/routeproof.Echo/Call", 5.0),
                ("echo.test", "/routeproof.Echo/Status14", 5.0),
                *[(f"absent-{n}.test", "/routeproof.Echo/Call", 0.3) for n in range(4)],
            ]
        )
        seconds = time.monotonic() - started
        assert [outcome.code for outcome in outcomes] == ["OK", "UNAVAILABLE"] + [
            "DEADLINE_EXCEEDED"
        ] * 4
        assert outcomes[0].pod == "svc-a-0"
        assert seconds < 4 * 0.3  # side by side: about the longest deadline, not the sum
        assert client.calls([]) == ()
