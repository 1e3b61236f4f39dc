"""The client against the reference server over real gRPC on loopback."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration

from sut.errors import ExtensionError
from sut.extension import (
    MARKER_HEADER,
    MISSING_CLUSTER,
    READINESS_PREFIX,
    REJECTED_HEADER,
    ClientTLS,
    ExtensionClient,
    ExtensionServer,
    ExtensionSettings,
    Fault,
    Hook,
    RetryPolicy,
    RouteContext,
    ServerTLS,
)
from sut.extension.generated import extension_pb2

from .conftest import worker_threads

ALL_HOOK_CALLS = {
    Hook.POST_ROUTE_MODIFY: lambda client, route: client.post_route_modify(route),
    Hook.POST_VIRTUAL_HOST_MODIFY: lambda client, route: client.post_virtual_host_modify(
        VirtualHost(name="vh", domains=["*"], routes=[route])
    ),
    Hook.POST_HTTP_LISTENER_MODIFY: lambda client, route: client.post_http_listener_modify(
        Listener(name="gw/http")
    ),
    Hook.POST_TRANSLATE_MODIFY: lambda client, route: client.post_translate_modify(
        [Cluster(name="c")],
        [],
        [Listener(name="gw/http")],
        [
            RouteConfiguration(
                name="gw/http", virtual_hosts=[VirtualHost(name="vh", routes=[route])]
            )
        ],
    ),
}


def _markers(route):
    return [o.header.value for o in route.response_headers_to_add if o.header.key == MARKER_HEADER]


def _client(server, **settings):
    return ExtensionClient(ExtensionSettings(server.address, **settings))


def test_healthy_route_carries_the_generation_the_harness_set(server, route):
    with _client(server) as client:
        assert _markers(client.post_route_modify(route)) == ["gen-1"]
        server.set_generation(7)
        modified = client.post_route_modify(route, RouteContext(hostnames=["www.example.com"]))
    assert _markers(modified) == ["gen-7"]
    assert modified.route.cluster == route.route.cluster
    last = server.last_request(Hook.POST_ROUTE_MODIFY)
    assert last.route == route
    assert list(last.post_route_context.hostnames) == ["www.example.com"]
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 2


def test_healthy_translate_marks_routes_but_not_the_readiness_route_configuration(server, route):
    ready = RouteConfiguration(
        name=f"{READINESS_PREFIX}-0.0.0.0-19001",
        virtual_hosts=[VirtualHost(name="ready", domains=["*"], routes=[route])],
    )
    gateway = RouteConfiguration(
        name="default/eg/https", virtual_hosts=[VirtualHost(name="vh", routes=[route])]
    )
    with _client(server) as client:
        result = client.post_translate_modify([Cluster(name="c")], [], [], [gateway, ready])
    assert [rc.name for rc in result.routes] == [gateway.name, ready.name]
    assert _markers(result.routes[0].virtual_hosts[0].routes[0]) == ["gen-1"]
    assert result.routes[1] == ready
    assert result.clusters == (Cluster(name="c"),)


def test_healthy_virtual_host_and_listener_hooks_change_nothing(server, route):
    vhost = VirtualHost(name="vh", domains=["*"], routes=[route])
    listener = Listener(name="gw/http")
    with _client(server) as client:
        assert client.post_virtual_host_modify(vhost) is vhost
        assert client.post_http_listener_modify(listener) is listener
    assert server.calls(Hook.POST_VIRTUAL_HOST_MODIFY) == 1
    assert server.calls(Hook.POST_HTTP_LISTENER_MODIFY) == 1


@pytest.mark.parametrize("hook", list(Hook))
def test_internal_is_an_error_and_is_not_retried(server, route, hook):
    server.set_fault(Fault.INTERNAL, hook)
    with _client(server) as client:
        with pytest.raises(ExtensionError) as raised:
            ALL_HOOK_CALLS[hook](client, route)
        statistics = client.statistics()
    assert (raised.value.hook, raised.value.kind) == (hook.value, "error")
    assert "INTERNAL" in raised.value.reason
    assert server.calls(hook) == 1
    assert statistics.retries == 0
    assert statistics.failures_of("error") == 1


@pytest.mark.parametrize("hook", list(Hook))
def test_hang_fails_at_the_deadline_not_at_the_hang(server, route, hook):
    server.set_fault(Fault.HANG, hook)
    with _client(server, deadline=0.2) as client:
        started = time.monotonic()
        with pytest.raises(ExtensionError) as raised:
            ALL_HOOK_CALLS[hook](client, route)
        elapsed = time.monotonic() - started
    assert raised.value.kind == "deadline"
    assert 0.2 <= elapsed < 0.2 + 0.5
    assert server.calls(hook) == 1  # DEADLINE_EXCEEDED is not retried


def test_an_unavailable_hook_is_retried_with_backoff_then_fails(server, route):
    """One hook unavailable, the others working: the server answers UNAVAILABLE for that hook."""
    server.set_fault(Fault.UNAVAILABLE, Hook.POST_ROUTE_MODIFY)
    failures = []
    with ExtensionClient(
        ExtensionSettings(server.address),
        on_failed_attempt=lambda f: failures.append((time.monotonic(), f)),
    ) as client:
        with pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route)
        assert client.post_virtual_host_modify(VirtualHost(name="vh")).name == "vh"
        statistics = client.statistics()
    assert raised.value.kind == "unavailable"
    assert server.serving
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 4
    assert [f.attempt for _, f in failures] == [1, 2, 3, 4]
    assert [f.will_retry for _, f in failures] == [True, True, True, False]
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(failures)]
    for gap, backoff in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert backoff <= gap < backoff + 0.25, gaps
    assert statistics.retries == 3
    assert statistics.attempts == 5
    assert statistics.failures_of("unavailable") == 1


def test_a_stopped_server_recovers_during_the_retries(server, route):
    """The server comes back from the callback of the first failed attempt: no timing involved."""
    server.set_fault(Fault.UNAVAILABLE)
    assert not server.serving
    first_port = server.port

    def recover(failure):
        if failure.attempt == 1:
            assert failure.error.kind == "unavailable"
            server.set_fault(Fault.HEALTHY)

    with ExtensionClient(ExtensionSettings(server.address), on_failed_attempt=recover) as client:
        modified = client.post_route_modify(route)
        statistics = client.statistics()
    assert _markers(modified) == ["gen-1"]
    assert statistics.retries == 1
    assert statistics.failures == ()
    assert server.serving
    assert server.port == first_port
    assert server.starts == 2
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 1


def test_the_first_call_after_a_restart_reaches_the_server(server, route):
    """gRPC's reconnect backoff must not outlive a recovery (the client replaces its channel)."""
    with ExtensionClient(
        ExtensionSettings(server.address, retry=RetryPolicy(max_attempts=1))
    ) as client:
        client.post_route_modify(route)
        server.set_fault(Fault.UNAVAILABLE)
        for _ in range(3):
            with pytest.raises(ExtensionError, match="unavailable"):
                client.post_route_modify(route)
        server.set_fault(Fault.HEALTHY)
        assert _markers(client.post_route_modify(route)) == ["gen-1"]


def test_fail_open_answers_no_change_and_counts_the_failure(server, route):
    server.set_fault(Fault.INTERNAL)
    with _client(server, fail_open=True) as client:
        assert client.post_route_modify(route) is route
        sent = ([Cluster(name="c")], [], [Listener(name="l")], [RouteConfiguration(name="rc")])
        result = client.post_translate_modify(*sent)
        client.set_fail_open(False)
        with pytest.raises(ExtensionError):
            client.post_route_modify(route)
        statistics = client.statistics()
    assert (list(result.clusters), list(result.routes)) == (sent[0], sent[3])
    assert statistics.fail_open_passes == 2
    assert statistics.failures_of("error") == 3
    assert statistics.last_error is not None and statistics.last_error.kind == "error"


def test_invalid_faults_reach_the_caller_unvalidated(server, route):
    """The client only checks structure; what Envoy would refuse is the runner's to catch."""
    with _client(server) as client:
        server.set_fault(Fault.INVALID_REJECT)
        rejected = client.post_route_modify(route)
        server.set_fault(Fault.INVALID_DANGLING)
        dangling = client.post_route_modify(route)
    assert REJECTED_HEADER in [o.header.key for o in rejected.response_headers_to_add]
    assert dangling.route.cluster == MISSING_CLUSTER


def test_a_hang_ends_when_the_fault_changes_and_the_new_behaviour_answers(server, route):
    server.set_fault(Fault.HANG)
    outcome = {}
    with _client(server, deadline=30.0) as client:
        caller = threading.Thread(
            target=lambda: outcome.update(route=client.post_route_modify(route))
        )
        caller.start()
        try:
            assert server.wait_for_hanging(Hook.POST_ROUTE_MODIFY, 1, timeout=10)
            server.set_generation(3)  # still hanging: a generation change alone re-evaluates
            server.set_fault(Fault.HEALTHY)
        finally:
            caller.join(timeout=10)
    assert not caller.is_alive()
    assert _markers(outcome["route"]) == ["gen-3"]


def test_stopping_the_server_during_a_hang_frees_threads_and_caller(route):
    server = ExtensionServer()
    server.start()
    outcome = {}

    def call():
        try:
            client.post_route_modify(route)
        except ExtensionError as error:
            outcome["error"] = error

    client = ExtensionClient(ExtensionSettings(server.address, deadline=30.0))
    caller = threading.Thread(target=call)
    try:
        server.set_fault(Fault.HANG)
        caller.start()
        assert server.wait_for_hanging(Hook.POST_ROUTE_MODIFY, 1, timeout=10)
        started = time.monotonic()
        server.close()
        closed_after = time.monotonic() - started
        caller.join(timeout=10)
        assert not caller.is_alive()
        assert closed_after < 2.0
        assert worker_threads() == []
        assert outcome["error"].kind == "unavailable"
    finally:
        server.close()
        client.close()
        caller.join(timeout=10)


def test_stopping_for_unavailable_during_a_hang_then_recovering(server, route):
    server.set_fault(Fault.HANG)
    errors = []
    with ExtensionClient(
        ExtensionSettings(server.address, deadline=30.0, retry=RetryPolicy(max_attempts=1))
    ) as client:

        def call():
            try:
                client.post_route_modify(route)
            except ExtensionError as error:
                errors.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        try:
            assert server.wait_for_hanging(Hook.POST_ROUTE_MODIFY, 1, timeout=10)
            server.set_fault(Fault.UNAVAILABLE)
            assert not server.serving
        finally:
            caller.join(timeout=10)
        assert not caller.is_alive()
        assert [e.kind for e in errors] == ["unavailable"]
        server.set_fault(Fault.HEALTHY)
        assert _markers(client.post_route_modify(route)) == ["gen-1"]


def test_tls_round_trip(tls_files, route):
    tls = ServerTLS(tls_files["server.crt"], tls_files["server.key"])
    with ExtensionServer(tls=tls, generation=4) as server:
        secure = ExtensionSettings(server.address, tls=ClientTLS(tls_files["ca.crt"]))
        with ExtensionClient(secure) as client:
            assert _markers(client.post_route_modify(route)) == ["gen-4"]
        untrusted = ExtensionSettings(
            server.address,
            tls=ClientTLS(tls_files["other.crt"]),
            retry=RetryPolicy(max_attempts=1),
        )
        with ExtensionClient(untrusted) as client, pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route)
        assert raised.value.kind == "unavailable"
        plaintext = ExtensionSettings(server.address, retry=RetryPolicy(max_attempts=1))
        with ExtensionClient(plaintext) as client, pytest.raises(ExtensionError):
            client.post_route_modify(route)
        assert server.calls(Hook.POST_ROUTE_MODIFY) == 1


class _RawReplies:
    """A stand-in server answering every rpc with fixed bytes, to test what the client accepts."""

    def __init__(self, reply: bytes) -> None:
        handlers = {
            hook.value: grpc.unary_unary_rpc_method_handler(lambda request, context: reply)
            for hook in Hook
        }
        self._executor = futures.ThreadPoolExecutor(max_workers=2)
        self._server = grpc.server(self._executor)
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "envoygateway.extension.EnvoyGatewayExtension", handlers
                ),
            )
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc):
        self._server.stop(None).wait()
        self._executor.shutdown(wait=True)


@pytest.mark.parametrize(
    ("reply", "call"),
    [
        (b"\xff\xff\xff\xff", lambda client, route: client.post_route_modify(route)),
        (
            extension_pb2.PostTranslateModifyResponse(
                listeners=[Listener(name="dup"), Listener(name="dup")]
            ).SerializeToString(),
            ALL_HOOK_CALLS[Hook.POST_TRANSLATE_MODIFY],
        ),
        (
            extension_pb2.PostHTTPListenerModifyResponse(listener=Listener()).SerializeToString(),
            ALL_HOOK_CALLS[Hook.POST_HTTP_LISTENER_MODIFY],
        ),
    ],
    ids=["unparseable", "duplicate-listeners", "unnamed-listener"],
)
def test_structurally_broken_replies_are_invalid_output(route, reply, call):
    with _RawReplies(reply) as fake:
        settings = ExtensionSettings(f"127.0.0.1:{fake.port}")
        with ExtensionClient(settings) as client:
            with pytest.raises(ExtensionError) as raised:
                call(client, route)
            assert client.statistics().retries == 0
    assert raised.value.kind == "invalid-output"


def test_the_cli_prints_its_address_and_serves(route):
    process = subprocess.Popen(
        [sys.executable, "-m", "sut.extension.server", "--port", "0", "--generation", "9"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        address = process.stdout.readline().strip()
        with ExtensionClient(ExtensionSettings(address)) as client:
            assert _markers(client.post_route_modify(route)) == ["gen-9"]
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()


def test_settings_reject_nonsense():
    with pytest.raises(ValueError):
        ExtensionSettings("no-port")
    with pytest.raises(ValueError):
        ExtensionSettings("127.0.0.1:1", deadline=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert [RetryPolicy().backoff(k) for k in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]


def test_a_hang_gives_up_after_the_hang_limit_even_if_the_caller_waits(route):
    with ExtensionServer(hang_limit=0.2) as server:
        server.set_fault(Fault.HANG)
        settings = ExtensionSettings(
            server.address, deadline=30.0, retry=RetryPolicy(max_attempts=1)
        )
        with ExtensionClient(settings) as client:
            started = time.monotonic()
            with pytest.raises(ExtensionError) as raised:
                client.post_route_modify(route)
            elapsed = time.monotonic() - started
        assert server.hanging(Hook.POST_ROUTE_MODIFY) == 0
    assert raised.value.kind == "unavailable"
    assert 0.2 <= elapsed < 5.0
    assert worker_threads() == []


def test_connect_waits_for_the_channel_and_says_when_no_server_answers(server):
    with ExtensionClient(ExtensionSettings(address=server.address)) as client:
        assert client.connect(timeout=5.0)
    # A port nothing listens on (the server's, once it is closed): no connection in time.
    closed = ExtensionServer(generation=1)
    closed.start()
    address = closed.address
    closed.close()
    with ExtensionClient(ExtensionSettings(address=address)) as client:
        started = time.monotonic()
        assert not client.connect(timeout=0.3)
        assert time.monotonic() - started < 2.0
