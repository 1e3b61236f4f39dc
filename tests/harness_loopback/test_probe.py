"""probe(): every outcome is a value, HTTPS sends the SNI we ask for."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.loopback.probe import ProbeResult, probe

TLS_DIR = Path(__file__).parent / "tls"


@contextlib.contextmanager
def one_shot_server(handle) -> Iterator[tuple[str, int]]:
    """Accept connections on 127.0.0.1:0 and hand each to `handle` until the test ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                handle(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[:2]
    finally:
        stopping.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        listener.close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_connection_refused_is_a_result():
    result = probe("127.0.0.1", free_port(), host="h")
    assert result.status is None
    assert result.error_kind == "refused"
    assert result.error


def test_timeout_is_a_result():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        address, port = silent.getsockname()[:2]
        result = probe(address, port, host="h", timeout=0.2)
    assert result.status is None
    assert result.error_kind == "timeout"


def test_reset_is_a_result():
    def reset(connection: socket.socket) -> None:
        read_request(connection)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with one_shot_server(reset) as (address, port):
        result = probe(address, port, host="h")
    assert result.status is None
    assert result.error_kind in ("reset", "closed")


def test_close_without_answer_is_a_result():
    with one_shot_server(read_request) as (address, port):
        result = probe(address, port, host="h")
    assert result.status is None
    assert result.error_kind == "closed"


def test_request_line_and_headers_are_what_we_asked_for():
    seen: list[bytes] = []

    def answer(connection: socket.socket) -> None:
        seen.append(read_request(connection))
        connection.sendall(
            b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\nX-Mixed-Case: v\r\n\r\nok"
        )

    with one_shot_server(answer) as (address, port):
        result = probe(
            address, port, host="app.example", path="/p?q=1", method="DELETE", headers={"X-A": "1"}
        )
    assert result.status == 201
    assert result.body == b"ok"
    assert result.header("set-cookie") == ("a=1", "b=2")
    assert result.header("X-MIXED-CASE") == ("v",)
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "DELETE /p?q=1 HTTP/1.1"
    assert "Host: app.example" in lines
    assert "Connection: close" in lines
    assert "X-A: 1" in lines


def test_https_sends_sni_and_ignores_self_signed_certificate():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS_DIR / "selfsigned.crt", TLS_DIR / "selfsigned.key")
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)

    def answer(connection: socket.socket) -> None:
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                read_request(tls)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntls")
        except (ssl.SSLError, OSError):
            pass

    with one_shot_server(answer) as (address, port):
        by_host = probe(address, port, host="a.routeproof.test", scheme="https")
        by_sni = probe(address, port, host="a.routeproof.test", scheme="https", sni="b.other.test")
    assert (by_host.status, by_host.body) == (200, b"tls")
    assert (by_sni.status, by_sni.body) == (200, b"tls")
    assert server_names == ["a.routeproof.test", "b.other.test"]


def test_https_against_plain_http_is_a_tls_error():
    def answer(connection: socket.socket) -> None:
        connection.recv(65536)  # the ClientHello
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with one_shot_server(answer) as (address, port):
        result = probe(address, port, host="h", scheme="https", timeout=1)
    assert result.status is None
    assert result.error_kind == "tls", result


def test_probe_result_is_validated():
    with pytest.raises(ValueError):
        ProbeResult(status=None)
    with pytest.raises(ValueError):
        ProbeResult(status=200, error="x", error_kind="other")
    result = ProbeResult(status=200, headers={"A": ["1"], "a": "2"}, body=b'{"k": 1}')
    assert result.header("a") == ("1", "2")
    assert result.json() == {"k": 1}
    assert hash(result) == hash(
        ProbeResult(status=200, headers={"a": ("1", "2")}, body=b'{"k": 1}')
    )


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        probe("127.0.0.1", 1, host="h", path="no-slash")
    with pytest.raises(ValueError):
        probe("127.0.0.1", 1, host="h", scheme="ftp")  # type: ignore[arg-type]
