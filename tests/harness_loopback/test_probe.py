"""probe() and probe_many(): every outcome is a value, HTTPS sends the SNI we ask for, a sweep
shares one kept-alive connection per (port, SNI) and a TLS session is resumed."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.loopback.probe import ProbeRequest, ProbeResult, probe, probe_many

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


# ----------------------------------------------- h11 framing, keep-alive, TLS


@contextlib.contextmanager
def keep_alive_server(
    answer: Callable[[int, bytes], bytes | None],
    tls: ssl.SSLContext | None = None,
) -> Iterator[tuple[tuple[str, int], list[tuple[int, bytes]], list[bool]]]:
    """A server with a thread per connection that answers every request on it in turn.

    `answer(connection number, request head)` returns the raw response, or None to close the
    connection without one. Yields the address, every (connection number, request head) seen,
    and, with `tls`, whether each connection's TLS session was resumed.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[tuple[int, bytes]] = []
    resumed: list[bool] = []
    threads: list[threading.Thread] = []
    lock = threading.Lock()

    def serve(connection: socket.socket, number: int) -> None:
        with contextlib.suppress(OSError), connection:
            if tls is not None:
                connection = tls.wrap_socket(connection, server_side=True)
                with lock:
                    resumed.append(connection.session_reused)
            buffered = b""
            while True:
                while b"\r\n\r\n" not in buffered:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                with lock:
                    seen.append((number, head))
                response = answer(number, head)
                if response is None:
                    return
                connection.sendall(response)

    def accept() -> None:
        number = 0
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=serve, args=(connection, number), daemon=True)
            threads.append(thread)
            thread.start()
            number += 1

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[:2], seen, resumed
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(timeout=5)
        for thread in threads:
            thread.join(timeout=5)


def ok(body: bytes = b"ok") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def host_of(head: bytes) -> str:
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "host":
            return value.strip()
    return ""


def tls_server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS_DIR / "selfsigned.crt", TLS_DIR / "selfsigned.key")
    return context


def test_chunked_close_delimited_informational_and_head_responses_are_read_whole():
    responses = {
        "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        "/continue": b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"),
        "/head": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
    }

    def answer(connection: socket.socket) -> None:
        head = read_request(connection)
        path = head.split(b" ")[1].decode()
        if path == "/until-close":
            connection.sendall(b"HTTP/1.0 203 Whatever\r\n\r\nto the end")
        else:
            connection.sendall(responses[path])

    with one_shot_server(answer) as (address, port):
        chunked = probe(address, port, host="h", path="/chunked")
        until_close = probe(address, port, host="h", path="/until-close")
        informational = probe(address, port, host="h", path="/continue")
        head = probe(address, port, host="h", path="/head", method="HEAD")
    assert (chunked.status, chunked.body) == (200, b"abcde")
    assert (until_close.status, until_close.body) == (203, b"to the end")
    assert (informational.status, informational.body) == (200, b"after")
    assert (head.status, head.body, head.header("content-length")) == (200, b"", ("10",))


def test_a_body_cut_short_is_closed():
    def answer(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")

    with one_shot_server(answer) as (address, port):
        result = probe(address, port, host="h")
    assert (result.status, result.error_kind) == (None, "closed")


def test_garbage_instead_of_a_response_is_a_protocol_error():
    def answer(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(b"SMTP ready\r\n\r\n")

    with one_shot_server(answer) as (address, port):
        result = probe(address, port, host="h")
    assert (result.status, result.error_kind) == (None, "protocol")


def test_probe_many_shares_one_connection_per_port_and_keeps_order():
    with keep_alive_server(lambda number, head: ok(host_of(head).encode())) as (
        (address, port),
        seen,
        _,
    ):
        requests = [ProbeRequest(address, port, f"h{index % 3}", f"/{index}") for index in range(9)]
        results = probe_many(requests)
    assert [result.body for result in results] == [f"h{index % 3}".encode() for index in range(9)]
    assert {number for number, _ in seen} == {0}  # plain HTTP: any Host on one connection
    assert all(b"connection: close" not in head.lower() for _, head in seen)


def test_probe_many_keeps_https_connections_apart_by_sni_and_resumes_tls():
    with keep_alive_server(
        lambda number, head: ok(host_of(head).encode()), tls_server_context()
    ) as (
        (address, port),
        seen,
        resumed,
    ):
        hosts = ["a.routeproof.test", "b.routeproof.test"] * 3
        results = probe_many([ProbeRequest(address, port, host, scheme="https") for host in hosts])
        again = probe(address, port, host="a.routeproof.test", scheme="https")
    assert [result.body for result in results] == [host.encode() for host in hosts]
    assert again.status == 200
    connections: dict[int, set[str]] = {}
    for number, head in seen:
        connections.setdefault(number, set()).add(host_of(head))
    # one connection per SNI, never another Host on it (that would reach the 421 routes)
    assert sorted(map(sorted, connections.values())) == [
        ["a.routeproof.test"],
        ["a.routeproof.test"],
        ["b.routeproof.test"],
    ]
    assert resumed[-1] is True  # the fresh probe resumed the sweep's TLS session


def test_probe_resumes_the_tls_session_of_the_last_probe():
    with keep_alive_server(lambda number, head: ok(), tls_server_context()) as (
        (address, port),
        _,
        resumed,
    ):
        first = probe(address, port, host="c.routeproof.test", scheme="https")
        second = probe(address, port, host="c.routeproof.test", scheme="https")
    assert (first.status, second.status) == (200, 200)
    assert resumed == [False, True]


def test_probe_many_sends_again_on_a_fresh_connection_when_a_kept_one_fails():
    def answer(number: int, head: bytes) -> bytes | None:
        if number == 0 and head.startswith(b"GET /second"):
            return None  # the kept-alive connection closes instead of answering
        return ok(head.split(b" ")[1])

    with keep_alive_server(answer) as ((address, port), seen, _):
        results = probe_many(
            [ProbeRequest(address, port, "h", path) for path in ("/first", "/second", "/third")]
        )
    assert [result.body for result in results] == [b"/first", b"/second", b"/third"]
    assert [number for number, _ in seen] == [0, 0, 1, 1]


def test_probe_many_opens_a_new_connection_after_connection_close():
    def answer(number: int, head: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    with keep_alive_server(answer) as ((address, port), seen, _):
        results = probe_many([ProbeRequest(address, port, "h") for _ in range(3)])
    assert [result.status for result in results] == [200, 200, 200]
    assert [number for number, _ in seen] == [0, 1, 2]


def test_probe_many_reports_failures_as_results():
    port = free_port()
    results = probe_many([ProbeRequest("127.0.0.1", port, "h") for _ in range(2)])
    assert [result.error_kind for result in results] == ["refused", "refused"]


def test_probe_request_is_validated():
    with pytest.raises(ValueError):
        ProbeRequest("127.0.0.1", 1, "h", "no-slash")
    with pytest.raises(ValueError):
        ProbeRequest("127.0.0.1", 1, "h", scheme="ftp")  # type: ignore[arg-type]
    plain = ProbeRequest("127.0.0.1", 1, "a.example", sni="ignored")
    assert plain.connection_key == ("127.0.0.1", 1, "http", None)
    tls = ProbeRequest("127.0.0.1", 1, "a.example", scheme="https")
    assert tls.connection_key == ("127.0.0.1", 1, "https", "a.example")
    assert ProbeRequest("127.0.0.1", 1, "a", scheme="https", sni="").server_name is None
