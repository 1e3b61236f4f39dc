"""A TCP relay between Envoy and the xDS server that the harness can cut, hold or refuse.

Envoy's bootstrap names the relay (127.0.0.1, port chosen by the OS), never the server, so the
harness can inject transport faults without touching either side:

- `cut()`     closes every current connection both ways; Envoy reconnects through the relay.
- `hold()`    stops forwarding in both directions: bytes (and FINs) are buffered, the
              connections stay open. `release()` delivers the buffered bytes in order.
- `refuse()`  accepts new connections and closes them at once (the control plane is "down").
- `set_upstream()` points new connections at another server address (a restarted control
              plane binds a new port).

Rules of this module: one selector thread owns every socket; the public methods hand it a
command and wait until it has been carried out, so when `cut()` returns the connections are
closed. Bytes pass through untouched (HTTP/2 gRPC included); each direction buffers at most
`buffer_limit` bytes and stops reading from its source while full.

A `RelayTap` (optional, `tap=` or `set_tap()`) observes what the relay actually does, called in
the relay thread in the order things happen:

- `connection_opened` when a connection is accepted and forwarded (ids are a per-relay serial
  1, 2, ...; refused connections are not reported);
- `delivered` with exactly the bytes a sink accepted, so held bytes count when released and
  bytes lost on a cut never count;
- `connection_closed` whenever the relay closes a connection (cut, both sides finished, a socket
  error, stop), once per connection;
- `hold_changed` when `hold()` / `release()` change the state (a repeated call changes nothing).

Times are `time.monotonic()`. A tap only records (it must be cheap: decoding happens elsewhere);
an exception from it is logged and dropped, never allowed to break forwarding. A tap set while
connections are open sees only what happens on them afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, Protocol, TypeVar

__all__ = ["Direction", "RelayTap", "TcpRelay"]

_T = TypeVar("_T")
_READ_SIZE = 65536
_log = logging.getLogger(__name__)

Direction = Literal["to_server", "to_client"]
"""`to_server`: client (Envoy) -> upstream (xDS server); `to_client`: the way back."""


class RelayTap(Protocol):
    """Observes what the relay delivers; called in the relay thread, so it must only record."""

    def connection_opened(self, connection: int, at: float) -> None: ...

    def delivered(self, connection: int, direction: Direction, data: bytes, at: float) -> None: ...

    def connection_closed(self, connection: int, at: float) -> None: ...

    def hold_changed(self, held: bool, at: float) -> None: ...


class _Direction:
    """Bytes flowing from one socket to the other, with what is not yet delivered."""

    def __init__(self, source: socket.socket, sink: socket.socket, name: Direction) -> None:
        self.name: Direction = name
        self.source = source
        self.sink = sink
        self.buffer = bytearray()
        self.source_finished = False  # source sent FIN
        self.sink_shut = False  # FIN passed on to sink


class _Connection:
    def __init__(self, serial: int, client: socket.socket, upstream: socket.socket) -> None:
        self.serial = serial
        self.client = client
        self.upstream = upstream
        self.connected = False
        self.to_upstream = _Direction(client, upstream, "to_server")
        self.to_client = _Direction(upstream, client, "to_client")

    @property
    def finished(self) -> bool:
        return self.to_upstream.sink_shut and self.to_client.sink_shut


class TcpRelay:
    """Forwards 127.0.0.1:<port> to an upstream address, under the harness's control."""

    def __init__(
        self,
        upstream: tuple[str, int] | None = None,
        *,
        buffer_limit: int = 4 * 1024 * 1024,
        tap: RelayTap | None = None,
    ) -> None:
        if buffer_limit <= 0:
            raise ValueError("buffer_limit must be positive")
        self._upstream = upstream
        self._tap = tap
        self._serials = 0
        self._buffer_limit = buffer_limit
        self._held = False
        self._refusing = False
        self._connections: list[_Connection] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._interest: dict[socket.socket, int] = {}
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._changed = threading.Condition()
        self._stopping = False
        self.connections_accepted = 0
        """Connections forwarded to the upstream (refused ones are not counted)."""
        self.connections_refused = 0
        self.bytes_forwarded = 0
        """Bytes delivered to either side."""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> TcpRelay:
        if self._thread is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="routeproof-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join the thread. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._wake()
        thread.join()
        self._thread = None

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what callers see ------------------------------------------------------------------

    @property
    def endpoint(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("relay not started")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def address(self) -> str:
        return self.endpoint[0]

    @property
    def port(self) -> int:
        return self.endpoint[1]

    @property
    def upstream(self) -> tuple[str, int] | None:
        return self._upstream

    @property
    def held(self) -> bool:
        return self._held

    @property
    def refusing(self) -> bool:
        return self._refusing

    @property
    def connection_count(self) -> int:
        """Connections currently open through the relay."""
        return len(self._connections)

    def set_upstream(self, upstream: tuple[str, int] | None) -> None:
        """New connections go to `upstream`; None refuses them. Open ones are left alone."""
        self._call(lambda: setattr(self, "_upstream", upstream))

    def cut(self, *, reset: bool = False) -> int:
        """Close every open connection both ways (with RST if `reset`); return how many."""
        return self._call(lambda: self._close_all(reset=reset))

    def hold(self) -> None:
        """Stop forwarding both ways; keep reading into the buffers; keep connections open."""
        self._call(lambda: self._set_held(True))

    def release(self) -> None:
        """Resume forwarding; buffered bytes are delivered first, in order."""
        self._call(lambda: self._set_held(False))

    def set_tap(self, tap: RelayTap | None) -> None:
        """Observe the relay from now on with `tap` (None: stop observing).

        While running, the change takes effect between two relay events; a new tap is told at
        once if the relay is held.
        """
        if self._thread is None:
            self._tap = tap
            return
        self._call(lambda: self._replace_tap(tap))

    def refuse(self, refusing: bool = True) -> None:
        """While refusing, new connections are accepted and closed at once."""
        self._call(lambda: setattr(self, "_refusing", refusing))

    def wait_until(self, predicate: Callable[[TcpRelay], bool], timeout: float) -> bool:
        """Wait until `predicate(self)` holds (checked after each relay event); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    # -- the selector thread ---------------------------------------------------------------

    def _set_held(self, held: bool) -> None:
        if self._held == held:
            return
        self._held = held
        if self._tap is not None:
            self._tell_tap(self._tap.hold_changed, held)

    def _replace_tap(self, tap: RelayTap | None) -> None:
        self._tap = tap
        if tap is not None and self._held:
            self._tell_tap(tap.hold_changed, True)

    def _tell_tap(self, call: Callable[..., None], *arguments: object) -> None:
        """`call(*arguments, now)`; a failing tap is logged, never allowed to stop the relay."""
        try:
            call(*arguments, time.monotonic())
        except Exception:
            _log.exception("relay tap failed in %s; forwarding goes on", call)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"!")

    def _call(self, command: Callable[[], _T], timeout: float = 5.0) -> _T:
        if self._thread is None:
            raise RuntimeError("relay not started")
        if threading.current_thread() is self._thread:
            return command()
        done = threading.Event()
        outcome: list[_T] = []
        failure: list[BaseException] = []

        def run() -> None:
            try:
                outcome.append(command())
            except BaseException as error:
                failure.append(error)
            finally:
                done.set()

        self._commands.put(run)
        self._wake()
        if not done.wait(timeout):
            raise TimeoutError("relay thread did not carry out the command")
        if failure:
            raise failure[0]
        return outcome[0]

    def _run(self) -> None:
        assert self._selector is not None
        try:
            while not self._stopping:
                for key, events in self._selector.select():
                    self._dispatch(key.fileobj, events)  # type: ignore[arg-type]
                while True:
                    try:
                        command = self._commands.get_nowait()
                    except queue.Empty:
                        break
                    command()
                self._pump_all()
                self._update_interest()
                with self._changed:
                    self._changed.notify_all()
        finally:
            self._close_all(reset=False)
            while True:  # nobody will run them now; let waiters go
                try:
                    self._commands.get_nowait()()
                except queue.Empty:
                    break
            self._selector.close()
            if self._listener is not None:
                self._listener.close()
            self._wake_reader.close()
            self._wake_writer.close()
            with self._changed:
                self._changed.notify_all()

    def _dispatch(self, sock: socket.socket, events: int) -> None:
        if sock is self._wake_reader:
            with contextlib.suppress(BlockingIOError):
                self._wake_reader.recv(4096)
            return
        if sock is self._listener:
            self._accept()
            return
        connection = self._owner(sock)
        if connection is None:
            return
        if sock is connection.upstream and not connection.connected:
            if events & selectors.EVENT_WRITE:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self._close(connection, reset=False)
                    return
                connection.connected = True
            if not events & selectors.EVENT_READ:
                return
        if events & selectors.EVENT_READ:
            direction = (
                connection.to_upstream if sock is connection.client else connection.to_client
            )
            self._read(connection, direction)

    def _owner(self, sock: socket.socket) -> _Connection | None:
        for connection in self._connections:
            if sock is connection.client or sock is connection.upstream:
                return connection
        return None

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            upstream_address = self._upstream
            if self._refusing or upstream_address is None:
                self.connections_refused += 1
                client.close()
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = upstream.connect_ex(upstream_address)
            self._serials += 1
            connection = _Connection(self._serials, client, upstream)
            self._connections.append(connection)
            self.connections_accepted += 1
            if self._tap is not None:
                self._tell_tap(self._tap.connection_opened, connection.serial)
            if code == 0:
                connection.connected = True
            elif code not in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self._close(connection, reset=False)

    def _read(self, connection: _Connection, direction: _Direction) -> None:
        try:
            chunk = direction.source.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(connection, reset=True)
            return
        if chunk:
            direction.buffer += chunk
        else:
            direction.source_finished = True

    def _pump_all(self) -> None:
        if self._held:
            return
        for connection in list(self._connections):
            if not connection.connected:
                continue
            for direction in (connection.to_upstream, connection.to_client):
                if not self._pump(connection, direction):
                    break
            if connection.finished and connection in self._connections:
                self._close(connection, reset=False)

    def _pump(self, connection: _Connection, direction: _Direction) -> bool:
        """Write what the sink takes now; pass a FIN on once drained. False if closed."""
        if direction.buffer:
            try:
                sent = direction.sink.send(direction.buffer)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._close(connection, reset=True)
                return False
            if self._tap is not None and sent:
                with memoryview(direction.buffer) as view, view[:sent] as accepted:
                    data = bytes(accepted)
                self._tell_tap(self._tap.delivered, connection.serial, direction.name, data)
            del direction.buffer[:sent]
            self.bytes_forwarded += sent
        if direction.source_finished and not direction.buffer and not direction.sink_shut:
            direction.sink_shut = True
            with contextlib.suppress(OSError):
                direction.sink.shutdown(socket.SHUT_WR)
        return True

    def _update_interest(self) -> None:
        assert self._selector is not None
        wanted: dict[socket.socket, int] = {}
        for connection in self._connections:
            for sock in (connection.client, connection.upstream):
                wanted[sock] = 0
            if not connection.connected:
                wanted[connection.upstream] |= selectors.EVENT_WRITE
            for direction in (connection.to_upstream, connection.to_client):
                if not direction.source_finished and len(direction.buffer) < self._buffer_limit:
                    wanted[direction.source] |= selectors.EVENT_READ
                if connection.connected and not self._held and direction.buffer:
                    wanted[direction.sink] |= selectors.EVENT_WRITE
        for sock in list(self._interest):
            if wanted.get(sock, 0) == 0:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                del self._interest[sock]
        for sock, mask in wanted.items():
            if mask == 0:
                continue
            if sock not in self._interest:
                self._selector.register(sock, mask)
            elif self._interest[sock] != mask:
                self._selector.modify(sock, mask)
            self._interest[sock] = mask

    def _close(self, connection: _Connection, *, reset: bool) -> None:
        assert self._selector is not None
        if connection in self._connections:
            self._connections.remove(connection)
            if self._tap is not None:
                self._tell_tap(self._tap.connection_closed, connection.serial)
        for sock in (connection.client, connection.upstream):
            if sock in self._interest:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(sock)
                del self._interest[sock]
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _close_all(self, *, reset: bool) -> int:
        connections = list(self._connections)
        for connection in connections:
            self._close(connection, reset=reset)
        return len(connections)
