"""Echo backends answered directly (no Envoy): fields, controls, stop semantics, the fleet."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from harness.loopback.echo import EchoBackend, EchoFleet, EchoReply, canonical_header_name
from harness.loopback.probe import probe


@pytest.fixture
def backend():
    with EchoBackend("gateway-conformance-infra", "infra-backend-v1", "abc12") as echo:
        yield echo


def test_reply_names_pod_and_request(backend):
    result = probe(
        backend.address,
        backend.port,
        host="foo.example.com:8080",
        path="/some/path?x=1&y=two",
        headers={"x-custom": "one"},
    )
    assert result.status == 200
    assert result.first_header("content-type") == "application/json"
    assert int(result.first_header("content-length") or -1) == len(result.body)
    reply = EchoReply.from_json(result.body)
    assert reply.namespace == "gateway-conformance-infra"
    assert reply.service == "infra-backend-v1"
    assert reply.pod == "infra-backend-v1-abc12"
    assert reply.path == "/some/path?x=1&y=two"
    assert reply.host == "foo.example.com:8080"
    assert reply.method == "GET"
    assert reply.proto == "HTTP/1.1"
    assert reply.header("X-Custom") == ("one",)
    assert reply.header("x-custom") == ("one",)
    assert "Host" not in dict(reply.headers)  # like echo-basic: host is its own field
    document = json.loads(result.body)
    assert set(document) == {
        "path",
        "host",
        "method",
        "proto",
        "headers",
        "namespace",
        "ingress",
        "service",
        "pod",
    }
    assert document["headers"]["X-Custom"] == ["one"]


def test_status_path_sets_status_and_keeps_the_echo_body(backend):
    result = probe(backend.address, backend.port, host="h", path="/status/503")
    assert result.status == 503
    assert EchoReply.from_json(result.body).pod == backend.pod
    assert probe(backend.address, backend.port, host="h", path="/status/404?q=1").status == 404
    assert probe(backend.address, backend.port, host="h", path="/status/abc").status == 400
    assert probe(backend.address, backend.port, host="h", path="/status/999").status == 400
    no_content = probe(backend.address, backend.port, host="h", path="/status/204")
    assert no_content.status == 204
    assert no_content.body == b""


def test_echo_set_header_adds_response_headers(backend):
    result = probe(
        backend.address,
        backend.port,
        host="h",
        headers={"X-Echo-Set-Header": "X-Foo: bar, X-Two:2,X-Foo:baz"},
    )
    assert result.status == 200
    assert result.header("x-foo") == ("bar,baz",)
    assert result.header("x-two") == ("2",)


def test_post_body_is_consumed_and_the_connection_is_reused(backend):
    connection = http.client.HTTPConnection(backend.address, backend.port, timeout=2)
    try:
        connection.request("POST", "/first", body=b"x" * 10000, headers={"Host": "a"})
        first = connection.getresponse()
        assert EchoReply.from_json(first.read()).method == "POST"
        connection.request("GET", "/second", headers={"Host": "a"})
        second = EchoReply.from_json(connection.getresponse().read())
        assert second.path == "/second"
        assert backend.requests_served == 2
    finally:
        connection.close()


def test_chunked_body_is_consumed(backend):
    connection = http.client.HTTPConnection(backend.address, backend.port, timeout=2)
    try:
        connection.request("PUT", "/c", body=iter([b"abc", b"defg"]), encode_chunked=True)
        assert EchoReply.from_json(connection.getresponse().read()).method == "PUT"
        connection.request("GET", "/after")
        assert EchoReply.from_json(connection.getresponse().read()).path == "/after"
    finally:
        connection.close()


def test_head_has_length_but_no_body(backend):
    result = probe(backend.address, backend.port, host="h", method="HEAD")
    assert result.status == 200
    assert result.body == b""
    assert int(result.first_header("content-length") or 0) > 0


def test_stop_refuses_new_connections_and_cuts_open_ones():
    backend = EchoBackend("ns", "svc", "0").start()
    connection = http.client.HTTPConnection(backend.address, backend.port, timeout=2)
    try:
        connection.request("GET", "/")
        connection.getresponse().read()
        backend.stop()
        # A kept-alive connection must not keep answering for a stopped pod.
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.request("GET", "/again")
            connection.getresponse().read()
        refused = probe(*backend.endpoint, host="h")
        assert refused.status is None
        assert refused.error_kind == "refused"
        backend.stop()  # idempotent
    finally:
        connection.close()
        backend.stop()


def test_fleet_scales_up_down_and_to_zero():
    with EchoFleet() as fleet:
        endpoints = fleet.scale("ns", "web", 3)
        assert len(set(endpoints)) == 3
        assert fleet.endpoints("ns", "web") == endpoints
        pods = [backend.pod for backend in fleet.backends("ns", "web")]
        assert pods == ["web-0", "web-1", "web-2"]
        for address, port in endpoints:
            reply = EchoReply.from_json(probe(address, port, host="h").body)
            assert (reply.namespace, reply.service) == ("ns", "web")
            assert fleet.pod_at(address, port) is not None
        assert fleet.scale("ns", "web", 1) == endpoints[:1]
        assert probe(*endpoints[2], host="h").error_kind == "refused"
        assert fleet.scale("ns", "web", 0) == ()
        assert fleet.services() == ()
        assert probe(*endpoints[0], host="h").error_kind == "refused"
        fleet.scale("ns", "web", 2)
        # Suffixes are never reused: a pod name means one backend lifetime.
        assert [b.pod for b in fleet.backends("ns", "web")] == ["web-3", "web-4"]
        fleet.scale("other", "web", 1)
        assert fleet.services() == (("ns", "web"), ("other", "web"))
        everything = list(fleet)
    assert all(not backend.running for backend in everything)


def test_fleet_runs_the_pods_it_is_told_by_name():
    """The model names pods (`<service>-<n>`, never reused); the fleet starts and stops exactly
    those, so a withdrawn pod can keep serving until the proxy stops naming it."""
    with EchoFleet() as fleet:
        fleet.start_pods("ns", "web", ["web-0", "web-1"])
        fleet.start_pods("ns", "web", ["web-1"])  # already running: nothing happens
        assert [b.pod for b in fleet.backends("ns", "web")] == ["web-0", "web-1"]
        address = fleet.endpoint_of("ns", "web-1")
        assert address is not None
        assert EchoReply.from_json(probe(*address, host="h").body).pod == "web-1"
        fleet.stop_pods(["web-1", "unknown-7"])
        assert [b.pod for b in fleet.backends("ns", "web")] == ["web-0"]
        assert fleet.endpoint_of("ns", "web-1") is None
        assert probe(*address, host="h").error_kind == "refused"
        fleet.scale("ns", "web", 2)  # names of its own continue after the given ones
        assert [b.pod for b in fleet.backends("ns", "web")] == ["web-0", "web-2"]
        with pytest.raises(ValueError, match="not named"):
            fleet.start_pods("ns", "web", ["api-0"])


def test_fleet_rejects_negative_replicas():
    with EchoFleet() as fleet, pytest.raises(ValueError):
        fleet.scale("ns", "web", -1)


def test_backend_requires_names():
    with pytest.raises(ValueError):
        EchoBackend("", "svc", "0")


def test_reply_parse_rejects_other_bodies():
    with pytest.raises(ValueError):
        EchoReply.from_json(b"no healthy upstream")
    with pytest.raises(ValueError):
        EchoReply.from_json(b'{"path": "/"}')


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("x-echo-set-header", "X-Echo-Set-Header"),
        ("X-REQUEST-ID", "X-Request-Id"),
        ("content-length", "Content-Length"),
        ("bad header", "bad header"),
    ],
)
def test_canonical_header_name(raw, canonical):
    assert canonical_header_name(raw) == canonical


def test_nagle_is_off_on_accepted_connections(backend):
    """Without TCP_NODELAY a Python backend adds ~23 ms per response (ENVOY_FACTS.md)."""
    with socket.create_connection(backend.endpoint, timeout=2) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        server = backend._server
        assert server is not None
        (accepted,) = tuple(server._open_connections)
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
