"""The real-Envoy driver: bootstrap, process lifecycle, admin client, Envoy in front of echo."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401  (registers the type)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,  # noqa: F401  (registers the type)
)
from google.protobuf import json_format

from harness.loopback import (
    AdminError,
    AdsServer,
    DirectResponseListener,
    EnvoyAdmin,
    EnvoyBootstrap,
    EnvoyError,
    EnvoyExitedError,
    EnvoyProcess,
    EnvoyTimeoutError,
    ListenerStatus,
    ProxyListener,
    StaticCluster,
    validate_bootstrap,
)
from harness.loopback.echo import EchoBackend, EchoReply
from harness.loopback.probe import probe
from harness.loopback.relay import TcpRelay

from .recording_ads import CLUSTER, LISTENER, ROUTE, RecordingAds

STATIC = EnvoyBootstrap(
    node_id="static-node",
    static_listeners=(DirectResponseListener("direct", status=200, body="static-ok"),),
)


def dead_port() -> int:
    """A port on which nothing listens (bound once by us, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- bootstrap values (no Envoy process) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "api_type", "node_once"), [("delta", "DELTA_GRPC", True), ("sotw", "GRPC", False)]
)
def test_ads_bootstrap_document(mode, api_type, node_once):
    bootstrap = EnvoyBootstrap(
        node_id="n1",
        node_cluster="c1",
        ads=AdsServer("127.0.0.1", 18000, mode=mode, initial_fetch_timeout=2.5),
    )
    document = bootstrap.to_dict()
    assert document["node"] == {"id": "n1", "cluster": "c1"}
    assert document["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 0,
    }
    ads = document["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == api_type
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is node_once
    (service,) = ads["grpc_services"]
    assert service["envoy_grpc"]["cluster_name"] == "xds_cluster"
    assert service["envoy_grpc"]["retry_policy"]["retry_back_off"] == {
        "base_interval": "0.05s",
        "max_interval": "0.5s",
    }
    for key in ("lds_config", "cds_config"):
        assert document["dynamic_resources"][key] == {
            "ads": {},
            "resource_api_version": "V3",
            "initial_fetch_timeout": "2.5s",
        }
    (xds_cluster,) = document["static_resources"]["clusters"]
    assert xds_cluster["name"] == "xds_cluster"
    options = xds_cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    endpoint = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18000}


def test_set_node_on_first_message_only_can_be_overridden():
    ads = AdsServer("127.0.0.1", 1, mode="sotw", set_node_on_first_message_only=True)
    document = EnvoyBootstrap(node_id="n", ads=ads).to_dict()
    assert document["dynamic_resources"]["ads_config"]["set_node_on_first_message_only"] is True
    assert "dynamic_resources" not in STATIC.to_dict()


@pytest.mark.parametrize(
    "build",
    [
        lambda: EnvoyBootstrap(node_id=""),
        lambda: EnvoyBootstrap(node_id="n"),  # neither ADS nor a static listener
        lambda: EnvoyBootstrap(node_id="n", static_listeners=(ProxyListener("p", "missing"),)),
        lambda: EnvoyBootstrap(
            node_id="n",
            static_listeners=(DirectResponseListener("a"), DirectResponseListener("a")),
        ),
        lambda: AdsServer("127.0.0.1", 70000),
        lambda: AdsServer("127.0.0.1", 1, mode="rest"),  # type: ignore[arg-type]
        lambda: AdsServer("127.0.0.1", 1, initial_fetch_timeout=-1),
        lambda: AdsServer("127.0.0.1", 1, retry_base_interval=1, retry_max_interval=0.5),
        lambda: StaticCluster("xds_cluster", (("127.0.0.1", 1),)),
        lambda: StaticCluster("c", (("127.0.0.1", 0),)),
        lambda: DirectResponseListener("d", status=99),
    ],
)
def test_invalid_bootstrap_values_are_rejected(build):
    with pytest.raises(ValueError):
        build()


# -- envoy --mode validate -------------------------------------------------------------------------


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_validates_ads_bootstrap(mode):
    bootstrap = EnvoyBootstrap(
        node_id="validate",
        ads=AdsServer("127.0.0.1", dead_port(), mode=mode),
        static_listeners=(DirectResponseListener("direct"),),
    )
    assert "OK" in validate_bootstrap(bootstrap)


@pytest.mark.envoy
def test_envoy_validate_rejects_a_bad_bootstrap():
    bootstrap = EnvoyBootstrap(node_id="validate", ads=AdsServer("not-an-ip-address", 1))
    with pytest.raises(EnvoyError, match="rejected"):
        validate_bootstrap(bootstrap)


# -- the process ---------------------------------------------------------------------------------


@pytest.mark.envoy
def test_static_envoy_start_ready_probe_stop():
    envoy = EnvoyProcess(STATIC)
    try:
        envoy.start()
        envoy.wait_ready(timeout=10)
        pid, workdir = envoy.pid, envoy.workdir
        assert envoy.admin.ready_state() == "LIVE"
        ((address, port),) = envoy.admin.listener_ports()["direct"]
        result = probe(address, port, host="anything.example")
        assert (result.status, result.body) == (200, b"static-ok")
        assert envoy.wait_for_log("starting main dispatch loop", timeout=5)
    finally:
        envoy.stop()
    assert process_gone(pid)
    assert not workdir.exists()
    assert envoy.returncode == 0  # SIGTERM is a clean shutdown for Envoy
    assert "exiting" in envoy.log_tail(5)  # the tail outlives the directory
    assert envoy.stop() == 0  # idempotent
    assert probe(address, port, host="h").error_kind == "refused"


@pytest.mark.envoy
def test_restart_is_a_new_process_with_the_same_bootstrap():
    with EnvoyProcess(STATIC) as envoy:
        envoy.wait_ready()
        first_pid, first_workdir = envoy.pid, envoy.workdir
        envoy.restart()
        envoy.wait_ready()
        assert envoy.pid != first_pid
        assert process_gone(first_pid)
        assert not first_workdir.exists()
        assert envoy.admin.ready_state() == "LIVE"
        ((address, port),) = envoy.admin.listener_ports()["direct"]
        assert probe(address, port, host="h").body == b"static-ok"
        second_pid = envoy.pid
    assert process_gone(second_pid)


@pytest.mark.envoy
def test_envoy_exiting_at_startup_raises_with_the_log_tail():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bootstrap = EnvoyBootstrap(
            node_id="clash", static_listeners=(DirectResponseListener("clash", port=port),)
        )
        envoy = EnvoyProcess(bootstrap)
        try:
            with pytest.raises(EnvoyExitedError, match=r"(?i)address already in use"):
                envoy.start()
                envoy.wait_ready(timeout=10)
        finally:
            envoy.stop()


@pytest.mark.envoy
def test_unreachable_xds_server_never_ready_and_wait_ready_says_why():
    bootstrap = EnvoyBootstrap(
        node_id="orphan",
        ads=AdsServer("127.0.0.1", dead_port(), initial_fetch_timeout=30),
    )
    with EnvoyProcess(bootstrap) as envoy:
        began = time.monotonic()
        with pytest.raises(EnvoyTimeoutError) as failure:
            envoy.wait_ready(timeout=1.0)
        assert time.monotonic() - began < 3.0
        message = str(failure.value)
        assert "PRE_INITIALIZING" in message
        assert "[config]" in message or "[main]" in message  # the log tail is attached
        assert envoy.running


# -- Envoy in front of an echo backend -------------------------------------------------------------


@pytest.fixture
def envoy_with_echo() -> Iterator[tuple[EnvoyProcess, EchoBackend]]:
    with EchoBackend("infra", "backend-v1", "0") as echo:
        bootstrap = EnvoyBootstrap(
            node_id="with-echo",
            static_listeners=(
                DirectResponseListener("direct", body="static-ok"),
                ProxyListener("proxy", "echo"),
            ),
            static_clusters=(StaticCluster("echo", (echo.endpoint,)),),
        )
        with EnvoyProcess(bootstrap) as envoy:
            envoy.wait_ready()
            yield envoy, echo


@pytest.mark.envoy
def test_echo_reply_through_envoy(envoy_with_echo):
    envoy, _ = envoy_with_echo
    ((address, port),) = envoy.admin.listener_ports()["proxy"]
    result = probe(address, port, host="foo.example.com", path="/a/b?c=d", headers={"X-In": "1"})
    assert result.status == 200
    assert result.first_header("server") == "envoy"
    reply = EchoReply.from_json(result.body)
    assert (reply.namespace, reply.service, reply.pod) == ("infra", "backend-v1", "backend-v1-0")
    assert (reply.path, reply.host, reply.method) == ("/a/b?c=d", "foo.example.com", "GET")
    assert reply.header("X-In") == ("1",)
    assert reply.header("X-Forwarded-Proto") == ("http",)
    assert len(reply.header("X-Request-Id")) == 1


@pytest.mark.envoy
def test_status_and_set_header_through_envoy(envoy_with_echo):
    envoy, echo = envoy_with_echo
    ((address, port),) = envoy.admin.listener_ports()["proxy"]
    failed = probe(address, port, host="h", path="/status/503")
    assert failed.status == 503
    assert EchoReply.from_json(failed.body).pod == echo.pod  # the backend's 503, not Envoy's
    headed = probe(address, port, host="h", headers={"X-Echo-Set-Header": "X-Marker:v7,X-B:2"})
    assert headed.status == 200
    assert headed.header("x-marker") == ("v7",)
    assert headed.header("x-b") == ("2",)


@pytest.mark.envoy
def test_admin_client_parses_ports_stats_clusters(envoy_with_echo):
    envoy, echo = envoy_with_echo
    admin = envoy.admin
    ports = admin.listener_ports()
    assert set(ports) == {"direct", "proxy"}
    assert ports["direct"] != ports["proxy"]
    ((direct_address, direct_port),) = ports["direct"]
    ((proxy_address, proxy_port),) = ports["proxy"]
    for _ in range(3):
        assert probe(direct_address, direct_port, host="h").body == b"static-ok"
    assert probe(proxy_address, proxy_port, host="h").status == 200
    stats = admin.stats()
    assert stats["http.direct.downstream_rq_2xx"] == 3
    assert stats["http.proxy.downstream_rq_2xx"] == 1
    assert stats["listener_manager.total_listeners_active"] == 2
    assert stats["cluster.echo.upstream_rq_total"] == 1
    assert all(isinstance(value, int) for value in stats.values())
    filtered = admin.stats(filter=r"^http\.direct\.")
    assert filtered and all(name.startswith("http.direct.") for name in filtered)
    (echo_cluster,) = [cluster for cluster in admin.clusters() if cluster.name == "echo"]
    assert not echo_cluster.added_via_api
    assert [(h.address, h.port, h.health) for h in echo_cluster.hosts] == [
        (echo.address, echo.port, "HEALTHY")
    ]
    assert admin.server_info()["state"] == "LIVE"
    dump = admin.config_dump(resource="static_listeners")
    assert sorted(c["listener"]["name"] for c in dump["configs"]) == ["direct", "proxy"]
    assert admin.dynamic_listeners() == ()
    status, _ = admin.request("GET", "/no-such-admin-path")
    assert status == 404


# -- ADS through the relay, against a recording endpoint ------------------------------------


def _listener_with_rds(name: str, route_config: str) -> listener_pb2.Listener:
    return json_format.ParseDict(
        {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.network"
                                ".http_connection_manager.v3.HttpConnectionManager",
                                "stat_prefix": name,
                                "rds": {
                                    "route_config_name": route_config,
                                    "config_source": {
                                        "ads": {},
                                        "resource_api_version": "V3",
                                        "initial_fetch_timeout": "0s",
                                    },
                                },
                                "http_filters": [
                                    {
                                        "name": "envoy.filters.http.router",
                                        "typed_config": {
                                            "@type": "type.googleapis.com/envoy.extensions"
                                            ".filters.http.router.v3.Router"
                                        },
                                    }
                                ],
                            },
                        }
                    ]
                }
            ],
        },
        listener_pb2.Listener(),
    )


def _direct_route(name: str, body: str) -> route_pb2.RouteConfiguration:
    return json_format.ParseDict(
        {
            "name": name,
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": body}},
                        }
                    ],
                }
            ],
        },
        route_pb2.RouteConfiguration(),
    )


def _respond(ads: RecordingAds, mode: str, stream: int, *, type_url: str, version: str, resources):
    if mode == "delta":
        ads.send(stream, ads.delta_response(type_url, version, {r.name: r for r in resources}))
    else:
        ads.send(stream, ads.sotw_response(type_url, version, version, list(resources)))


def _names(received) -> list[str]:
    request = received.request
    if received.kind == "delta":
        return list(request.resource_names_subscribe)
    return list(request.resource_names)


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_ads_stream_through_relay_warming_listener_and_reconnect(mode):
    with RecordingAds() as ads, TcpRelay(("127.0.0.1", ads.port)) as relay:
        bootstrap = EnvoyBootstrap(
            node_id=f"ads-{mode}",
            ads=AdsServer(relay.address, relay.port, mode=mode, initial_fetch_timeout=30),
        )
        with EnvoyProcess(bootstrap) as envoy:
            first = ads.wait_for(lambda r: r.request.type_url == CLUSTER, timeout=10)
            assert first.kind == mode
            assert first.request.node.id == f"ads-{mode}"
            assert first.request.node.cluster == "routeproof"
            assert envoy.admin.ready_state() == "PRE_INITIALIZING"
            _respond(ads, mode, first.stream, type_url=CLUSTER, version="c1", resources=[])

            lds = ads.wait_for(lambda r: r.request.type_url == LISTENER, timeout=10)
            # set_node_on_first_message_only: True for delta, False for sotw (the defaults)
            assert (lds.request.node.id == "") is (mode == "delta")
            _respond(
                ads,
                mode,
                lds.stream,
                type_url=LISTENER,
                version="l1",
                resources=[_listener_with_rds("l1", "r1")],
            )

            rds = ads.wait_for(
                lambda r: r.request.type_url == ROUTE and "r1" in _names(r), timeout=10
            )
            # The listener waits for its RouteConfiguration (initial_fetch_timeout 0: forever).
            assert ListenerStatus("l1", "warming", "l1") in envoy.admin.dynamic_listeners()
            # A warming listener already has its port bound (and listed) but does not accept.
            ((warm_address, warm_port),) = envoy.admin.listener_ports()["l1"]
            assert probe(warm_address, warm_port, host="h").error_kind == "refused"
            _respond(
                ads,
                mode,
                rds.stream,
                type_url=ROUTE,
                version="r1",
                resources=[_direct_route("r1", "from-xds")],
            )

            envoy.wait_ready(timeout=10)
            deadline = time.monotonic() + 10
            while ListenerStatus("l1", "active", "l1") not in envoy.admin.dynamic_listeners():
                assert time.monotonic() < deadline, envoy.admin.dynamic_listeners()
                time.sleep(0.005)
            ((address, port),) = envoy.admin.listener_ports()["l1"]
            assert (address, port) == (warm_address, warm_port)  # same socket once active
            assert probe(address, port, host="h").body == b"from-xds"

            # Cut the xDS connection: Envoy reconnects through the relay on a new stream,
            # quickly thanks to the retry_policy back-off (base 50 ms).
            cut_at = time.monotonic()
            assert relay.cut() == 1
            again = ads.wait_for(lambda r: r.stream > first.stream, timeout=5)
            assert time.monotonic() - cut_at < 2.0
            assert again.request.node.id == f"ads-{mode}"  # a new stream names the node again
            assert relay.connections_accepted == 2
            # The listener keeps serving while the control plane is away.
            assert probe(address, port, host="h").body == b"from-xds"


# -- admin client failure modes (no Envoy needed) ------------------------------------------------


@pytest.fixture
def json_server() -> Iterator[tuple[list[bytes], int]]:
    """A tiny HTTP server answering every GET with the next canned body."""
    import http.server
    import threading

    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.pop(0) if bodies else b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bodies, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_admin_failures_are_admin_errors(json_server):
    bodies, port = json_server
    admin = EnvoyAdmin("127.0.0.1", port)
    bodies.append(b"not json")
    with pytest.raises(AdminError, match="invalid JSON"):
        admin.server_info()
    bodies.append(b'{"listener_statuses": [{"no_name": 1}]}')
    with pytest.raises(AdminError, match="unexpected JSON shape"):
        admin.listener_ports()
    bodies.append(b'{"cluster_statuses": [{"host_statuses": []}]}')
    with pytest.raises(AdminError, match="unexpected JSON shape"):
        admin.clusters()
    with pytest.raises(AdminError, match="failed"):
        EnvoyAdmin("127.0.0.1", dead_port(), timeout=0.5).ready_state()


@pytest.mark.envoy
def test_retry_policy_keeps_reconnects_fast_while_the_server_is_down():
    """With Envoy's default back-off (0.5 s doubling to 30 s) a control plane that was down for
    a few seconds is noticed many seconds late; the bootstrap's retry_policy caps it at 0.5 s."""
    with RecordingAds() as ads, TcpRelay(("127.0.0.1", ads.port)) as relay:
        bootstrap = EnvoyBootstrap(
            node_id="retry", ads=AdsServer(relay.address, relay.port, initial_fetch_timeout=30)
        )
        with EnvoyProcess(bootstrap):
            first = ads.wait_for(lambda r: r.request.type_url == CLUSTER, timeout=10)
            relay.refuse(True)
            relay.cut()
            # Several failed attempts in a short time: the back-off stays small.
            assert relay.wait_until(lambda r: r.connections_refused >= 5, timeout=3.0)
            relay.refuse(False)
            back_at = time.monotonic()
            ads.wait_for(lambda r: r.stream > first.stream, timeout=5)
            assert time.monotonic() - back_at < 1.5
