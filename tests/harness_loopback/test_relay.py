"""TcpRelay with plain TCP and with gRPC (HTTP/2) through it: forward, cut, hold, refuse."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from harness.loopback.relay import Direction, TcpRelay


class TcpServer:
    """A test-side TCP server: echoes (or records) what it receives, one thread per connection."""

    def __init__(self, *, echo: bool = True, prefix: bytes = b"") -> None:
        self.echo = echo
        self.prefix = prefix
        self.received = bytearray()
        self.received_changed = threading.Condition()
        self.eof_seen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    @property
    def endpoint(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return host, port

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                with self.received_changed:
                    self.received += chunk
                    self.received_changed.notify_all()
                if self.echo:
                    connection.sendall(self.prefix + chunk if self.prefix else chunk)
            self.eof_seen.set()
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_WR)

    def wait_received(self, size: int, timeout: float) -> bytes:
        with self.received_changed:
            self.received_changed.wait_for(lambda: len(self.received) >= size, timeout)
            return bytes(self.received)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._accept_thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def upstream() -> Iterator[TcpServer]:
    server = TcpServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def relay(upstream: TcpServer) -> Iterator[TcpRelay]:
    with TcpRelay(upstream.endpoint) as running:
        yield running


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def client(relay: TcpRelay) -> socket.socket:
    return socket.create_connection(relay.endpoint, timeout=5)


def test_round_trip(relay, upstream):
    with client(relay) as sock:
        sock.sendall(b"hello relay")
        assert recv_exactly(sock, 11) == b"hello relay"
        assert relay.connection_count == 1
    assert relay.connections_accepted == 1
    assert relay.wait_until(lambda r: r.bytes_forwarded == 22, timeout=5)
    # client closed -> FIN passed on -> upstream echoed EOF back -> relay drops the pair
    assert relay.wait_until(lambda r: r.connection_count == 0, timeout=5)
    assert upstream.eof_seen.is_set()


def test_large_transfer_arrives_in_order(upstream):
    payload = bytes(range(256)) * 8192  # 2 MiB, more than the relay's buffer limit below
    with TcpRelay(upstream.endpoint, buffer_limit=64 * 1024) as relay, client(relay) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        echoed = recv_exactly(sock, len(payload))
        sender.join()
    assert echoed == payload


def test_cut_closes_both_ways_and_a_new_connection_works(relay, upstream):
    with client(relay) as first:
        first.sendall(b"a")
        assert recv_exactly(first, 1) == b"a"
        assert relay.cut() == 1
        assert relay.connection_count == 0
        assert first.recv(10) == b""  # the client sees the close
        assert upstream.eof_seen.wait(5)  # and so does the server
    with client(relay) as second:
        second.sendall(b"b")
        assert recv_exactly(second, 1) == b"b"
    assert relay.connections_accepted == 2


def test_cut_with_reset(relay):
    with client(relay) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        relay.cut(reset=True)
        with pytest.raises(ConnectionResetError):
            sock.recv(10)


def test_hold_buffers_both_directions_and_release_delivers_in_order():
    recorder = TcpServer(echo=False)
    try:
        with TcpRelay(recorder.endpoint) as relay, client(relay) as sock:
            sock.sendall(b"before-")
            assert recorder.wait_received(7, timeout=5) == b"before-"
            relay.hold()
            sock.sendall(b"held-1,")
            sock.sendall(b"held-2")
            # Nothing may arrive while held (a negative check needs a window).
            assert recorder.wait_received(8, timeout=0.3) == b"before-"
            assert relay.connection_count == 1
            relay.release()
            assert recorder.wait_received(20, timeout=5) == b"before-held-1,held-2"
    finally:
        recorder.close()


def test_hold_stops_server_to_client_too(relay):
    with client(relay) as sock:
        sock.sendall(b"x")
        assert recv_exactly(sock, 1) == b"x"
        relay.hold()
        sock.sendall(b"yz")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        relay.release()
        sock.settimeout(5)
        assert recv_exactly(sock, 2) == b"yz"


def test_hold_also_holds_a_close(relay, upstream):
    with client(relay) as sock:
        relay.hold()
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert not upstream.eof_seen.wait(0.3)
        relay.release()
        assert upstream.eof_seen.wait(5)
        assert recv_exactly(sock, 10) == b"last words"


def test_refuse_closes_new_connections_but_keeps_open_ones(relay):
    with client(relay) as kept:
        kept.sendall(b"1")
        assert recv_exactly(kept, 1) == b"1"
        relay.refuse(True)
        with client(relay) as refused:
            assert refused.recv(10) == b""
        assert relay.connections_refused == 1
        kept.sendall(b"2")
        assert recv_exactly(kept, 1) == b"2"
        relay.refuse(False)
        with client(relay) as again:
            again.sendall(b"3")
            assert recv_exactly(again, 1) == b"3"


def test_unreachable_upstream_closes_the_client():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead = placeholder.getsockname()[:2]
    with TcpRelay(dead) as relay, client(relay) as sock:
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        assert relay.wait_until(lambda r: r.connection_count == 0, timeout=5)


def test_set_upstream_moves_new_connections():
    first, second = TcpServer(prefix=b"1:"), TcpServer(prefix=b"2:")
    try:
        with TcpRelay(first.endpoint) as relay:
            with client(relay) as sock:
                sock.sendall(b"a")
                assert recv_exactly(sock, 3) == b"1:a"
                relay.set_upstream(second.endpoint)
                sock.sendall(b"b")  # an open connection stays where it was
                assert recv_exactly(sock, 3) == b"1:b"
            with client(relay) as sock:
                sock.sendall(b"c")
                assert recv_exactly(sock, 3) == b"2:c"
            relay.set_upstream(None)
            with client(relay) as sock:
                assert sock.recv(10) == b""
    finally:
        first.close()
        second.close()


def test_stop_closes_everything_and_is_idempotent(upstream):
    relay = TcpRelay(upstream.endpoint).start()
    endpoint = relay.endpoint
    with client(relay) as sock:
        sock.sendall(b"a")
        assert recv_exactly(sock, 1) == b"a"
        relay.stop()
        assert sock.recv(10) == b""
    relay.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(endpoint, timeout=2).close()
    with pytest.raises(RuntimeError):
        relay.hold()


# -- gRPC (HTTP/2) through the relay -------------------------------------------------------------

_ECHO_METHOD = "/routeproof.test.Echo/Chat"


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield b"echo:" + request


@pytest.fixture
def grpc_echo() -> Iterator[tuple[str, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(
        "routeproof.test.Echo", {"Chat": grpc.stream_stream_rpc_method_handler(_chat)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield ("127.0.0.1", port)
    finally:
        server.stop(grace=None).wait()


class _Outbox:
    """Requests for a gRPC stream, fed one by one from the test."""

    def __init__(self) -> None:
        self._items: list[bytes | None] = []
        self._ready = threading.Condition()

    def put(self, item: bytes | None) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify_all()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._items))
                item = self._items.pop(0)
            if item is None:
                return
            yield item


def _first_stream_after_cut(chat: grpc.StreamStreamMultiCallable) -> list[bytes]:
    deadline = time.monotonic() + 10
    while True:
        try:
            return list(chat(iter([b"three"]), timeout=10, wait_for_ready=True))
        except grpc.RpcError as failure:
            if failure.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise


def test_grpc_stream_passes_through_and_is_cut(grpc_echo):
    with TcpRelay(grpc_echo) as relay:
        channel = grpc.insecure_channel(f"{relay.address}:{relay.port}")
        try:
            chat = channel.stream_stream(_ECHO_METHOD)
            outbox = _Outbox()
            replies = chat(iter(outbox), timeout=10)
            outbox.put(b"one")
            assert next(replies) == b"echo:one"
            outbox.put(b"two")
            assert next(replies) == b"echo:two"
            relay.cut()
            with pytest.raises(grpc.RpcError) as failure:
                next(replies)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            outbox.put(None)
            # The channel reconnects through the relay; a new stream works. A call started
            # before gRPC has noticed the cut can still land on the dying transport
            # ("Stream removed"), so retry until a deadline.
            assert _first_stream_after_cut(chat) == [b"echo:three"]
            assert relay.connections_accepted >= 2
        finally:
            channel.close()


# -- the tap: what the relay delivers, as a passive observer sees it --------------------------


class RawTap:
    """Records every tap call as it comes, from the relay thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.lock = threading.Lock()

    def connection_opened(self, connection: int, at: float) -> None:
        self._add("opened", connection)

    def delivered(self, connection: int, direction: Direction, data: bytes, at: float) -> None:
        self._add("delivered", connection, direction, data)

    def connection_closed(self, connection: int, at: float) -> None:
        self._add("closed", connection)

    def hold_changed(self, held: bool, at: float) -> None:
        self._add("hold", held)

    def _add(self, *call: object) -> None:
        with self.lock:
            self.calls.append(call)

    def snapshot(self) -> list[tuple[object, ...]]:
        with self.lock:
            return list(self.calls)

    def bytes_of(self, connection: int, direction: Direction) -> bytes:
        return b"".join(
            c[3]  # type: ignore[misc]
            for c in self.snapshot()
            if c[0] == "delivered" and c[1] == connection and c[2] == direction
        )


def test_tap_sees_exactly_what_each_side_received_through_hold_release_and_cut(upstream):
    tap = RawTap()
    with TcpRelay(upstream.endpoint, tap=tap) as relay:
        with socket.create_connection(relay.endpoint, timeout=5) as sock:
            sock.sendall(b"hello")
            assert upstream.wait_received(5, 5) == b"hello"
            assert recv_exactly(sock, 5) == b"hello"
            relay.hold()
            relay.hold()  # no change, no call
            sock.sendall(b"held")
            relay.release()
            assert upstream.wait_received(9, 5) == b"helloheld"
            assert recv_exactly(sock, 4) == b"held"
            relay.hold()
            sock.sendall(b"lost")
            assert relay.cut() == 1
            assert sock.recv(10) == b""
        relay.release()
        assert relay.wait_until(lambda r: r.connection_count == 0, 5)
        with socket.create_connection(relay.endpoint, timeout=5) as second:
            second.sendall(b"again")
            assert recv_exactly(second, 5) == b"again"
            assert relay.wait_until(lambda r: tap.bytes_of(2, "to_client") == b"again", 5)
    calls = tap.snapshot()
    assert upstream.wait_received(14, 5) == b"helloheldagain"
    assert tap.bytes_of(1, "to_server") == b"helloheld"  # "lost" was held, then cut
    assert tap.bytes_of(1, "to_client") == b"helloheld"
    assert tap.bytes_of(2, "to_server") == b"again"
    kinds = [c for c in calls if c[0] != "delivered"]
    assert kinds == [
        ("opened", 1),
        ("hold", True),
        ("hold", False),
        ("hold", True),
        ("closed", 1),
        ("hold", False),
        ("opened", 2),
        ("closed", 2),
    ]
    # Held bytes count when released: "held" is delivered after the release.
    released = calls.index(("hold", False))
    assert ("delivered", 1, "to_server", b"held") in calls[released:]


def test_refused_connections_are_not_reported_and_a_failing_tap_breaks_nothing(upstream, caplog):
    class Failing(RawTap):
        def delivered(self, connection: int, direction: Direction, data: bytes, at: float) -> None:
            super().delivered(connection, direction, data, at)
            raise RuntimeError("tap broke")

    tap = Failing()
    with TcpRelay(upstream.endpoint) as relay:
        relay.refuse()
        with socket.create_connection(relay.endpoint, timeout=5) as refused:
            assert refused.recv(10) == b""
        relay.refuse(False)
        relay.hold()
        relay.set_tap(tap)  # a tap set while held is told so
        relay.release()
        with socket.create_connection(relay.endpoint, timeout=5) as sock:
            sock.sendall(b"ping")
            assert recv_exactly(sock, 4) == b"ping"
        assert relay.wait_until(lambda r: r.connection_count == 0, 5)
        assert relay.connections_refused == 1
    calls = tap.snapshot()
    assert [c for c in calls if c[0] != "delivered"] == [
        ("hold", True),
        ("hold", False),
        ("opened", 1),  # serials count forwarded connections only: the refused one had none
        ("closed", 1),
    ]
    assert tap.bytes_of(1, "to_server") == b"ping"
    assert tap.bytes_of(1, "to_client") == b"ping"
    assert "relay tap failed" in caplog.text
