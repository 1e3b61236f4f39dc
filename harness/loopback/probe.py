"""HTTP(S) requests through Envoy, with every outcome as a value.

Refused, reset, timed-out and TLS-failed connections are results (status None, `error` set),
never exceptions: to the harness "Envoy did not answer" is an outcome to compare with the model.

HTTP/1.1 is spoken by `h11` (sans-IO) over plain sockets: `http.client` parses each response
through the `email` package, which made the harness's probe sweep CPU-bound. Two rules keep the
answers what a fresh connection per request would get:

- `probe` opens a fresh connection per request and sends `Connection: close`: a kept-alive
  connection stays on the filter chain it was accepted on, so over time it would answer from an
  old configuration. Only the TLS session is reused (resumption skips the key exchange, and the
  filter chain is chosen from the ClientHello's SNI either way).
- `probe_many` keeps a connection alive across its requests, one per (address, port, scheme,
  SNI): an HTTPS connection is only reused for the Host it was opened for (another Host on it
  reaches the 421 routes). The caller promises the requests form one moment, with nothing
  changing in Envoy meanwhile (the sweep after a converged step). A request that fails on a
  reused connection is sent again on a fresh one, whose outcome stands.
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import h11

__all__ = [
    "ProbeRequest",
    "ProbeResult",
    "group_by_connection",
    "probe",
    "probe_many",
    "probe_request",
]

ErrorKind = Literal["refused", "reset", "timeout", "closed", "tls", "protocol", "other"]
Scheme = Literal["http", "https"]

_RECEIVE_SIZE = 65536


def _header_pairs(
    value: Mapping[str, Any] | tuple[tuple[str, tuple[str, ...]], ...],
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    merged: dict[str, list[str]] = {}
    for name, values in items:
        merged.setdefault(name.lower(), []).extend(
            [values] if isinstance(values, str) else list(values)
        )
    return tuple(sorted((name, tuple(values)) for name, values in merged.items()))


@attrs.frozen
class ProbeResult:
    """What came back: a status with headers and body, or an error and no status."""

    status: int | None
    headers: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=_header_pairs
    )
    """Lower-case header name -> values, sorted by name (a hashable stand-in for a dict)."""
    body: bytes = b""
    error: str | None = None
    error_kind: ErrorKind | None = None

    def __attrs_post_init__(self) -> None:
        if (self.status is None) == (self.error is None):
            raise ValueError("a ProbeResult has either a status or an error, not both or neither")
        if (self.error is None) != (self.error_kind is None):
            raise ValueError("error and error_kind go together")

    @property
    def header_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self.headers)

    def header(self, name: str) -> tuple[str, ...]:
        """All values of a header (case-insensitive name); empty if absent."""
        return self.header_map.get(name.lower(), ())

    def first_header(self, name: str) -> str | None:
        values = self.header(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON (raises ValueError if it is not JSON)."""
        return json.loads(self.body)


def _check_scheme(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in ("http", "https"):
        raise ValueError(f"scheme must be 'http' or 'https', not {value!r}")


def _check_path(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"path must start with '/': {value!r}")


def _header_items(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    return tuple(value.items() if isinstance(value, Mapping) else value)


@attrs.frozen
class ProbeRequest:
    """One request to send: where to, and what; `host` is the Host header and (https) the SNI."""

    address: str
    port: int
    host: str
    path: str = attrs.field(default="/", validator=_check_path)
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_header_items)
    scheme: Scheme = attrs.field(default="http", validator=_check_scheme)
    sni: str | None = None
    """The TLS server name if not `host` ("" sends none)."""
    timeout: float = 2.0
    """Seconds any one socket operation (connect, send, receive) may take."""
    body: bytes | None = None

    @property
    def server_name(self) -> str | None:
        if self.scheme != "https":
            return None
        return (self.sni if self.sni is not None else self.host) or None

    @property
    def connection_key(self) -> tuple[str, int, str, str | None]:
        """Requests with the same key may share a kept-alive connection."""
        return (self.address, self.port, self.scheme, self.server_name)


def _client_context() -> ssl.SSLContext:
    """A context that verifies nothing: probes test routing, not certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_CLIENT_CONTEXT = _client_context()
"""The one context of every probe, built at import: loading the system's CA store for every
probe cost ~25 ms a request, and a TLS session can only be resumed by the context that made it
(built lazily, threads racing on the first probes each made their own)."""


class _TlsSessions:
    """The last TLS session each (address, port, server name) gave: offered on the next
    handshake there. A server that no longer knows it (a new filter chain, a new Envoy) just does
    a full handshake."""

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        self._sessions: collections.OrderedDict[tuple[str, int, str | None], ssl.SSLSession] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, str | None]) -> ssl.SSLSession | None:
        with self._lock:
            return self._sessions.get(key)

    def put(self, key: tuple[str, int, str | None], session: ssl.SSLSession) -> None:
        with self._lock:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self._capacity:
                self._sessions.popitem(last=False)


_tls_sessions = _TlsSessions()


class _PeerClosed(Exception):
    """The peer closed the connection before the response was complete."""


class _Connection:
    """One TCP (and TLS) connection with an h11 client state machine on it.

    Raises what the socket, ssl and h11 raise; `_failure` turns that into a ProbeResult.
    """

    def __init__(self, request: ProbeRequest) -> None:
        self._tls_key = (request.address, request.port, request.server_name)
        raw = socket.create_connection((request.address, request.port), request.timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if request.scheme == "https":
                self.sock: socket.socket = _CLIENT_CONTEXT.wrap_socket(
                    raw,
                    server_hostname=request.server_name,
                    session=_tls_sessions.get(self._tls_key),
                )
            else:
                self.sock = raw
        except BaseException:
            raw.close()
            raise
        self._h11 = h11.Connection(h11.CLIENT)
        self._tls_saved = False

    @property
    def reusable(self) -> bool:
        return self._h11.our_state is h11.IDLE and self._h11.their_state is h11.IDLE

    def exchange(self, request: ProbeRequest, *, keep_alive: bool) -> ProbeResult:
        self.sock.settimeout(request.timeout)
        headers = [("Host", request.host)]
        if not keep_alive:
            headers.append(("Connection", "close"))
        headers += request.headers
        if request.body is not None:
            headers.append(("Content-Length", str(len(request.body))))
        out = self._h11.send(
            h11.Request(method=request.method, target=request.path, headers=headers)
        )
        if request.body:
            out = (out or b"") + (self._h11.send(h11.Data(data=request.body)) or b"")
        out = (out or b"") + (self._h11.send(h11.EndOfMessage()) or b"")
        self.sock.sendall(out)
        status, pairs, body = self._receive()
        self._save_tls_session()
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
        return ProbeResult(status=status, headers=pairs, body=body)

    def _receive(self) -> tuple[int, tuple[tuple[str, tuple[str, ...]], ...], bytes]:
        status: int | None = None
        merged: dict[str, list[str]] = {}
        chunks: list[bytes] = []
        closed = False
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                if closed:
                    raise _PeerClosed(str(error)) from error
                raise
            if event is h11.NEED_DATA:
                data = self.sock.recv(_RECEIVE_SIZE)
                closed = not data
                self._h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    merged.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert status is not None
                pairs = tuple((name, tuple(values)) for name, values in merged.items())
                return status, pairs, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise _PeerClosed("connection closed without a response")
            elif event is h11.PAUSED:  # a protocol switch: nothing a probe asks for
                raise h11.RemoteProtocolError("the server switched protocols")
            # an InformationalResponse (1xx): read on to the final response

    def _save_tls_session(self) -> None:
        """Keep the session for the next connection, once a response brought its ticket (TLS
        1.3 sends it after the handshake). A resumed session is kept already: Envoy accepts a
        ticket more than once, and reading `session` costs about as much as a handshake saves."""
        if self._tls_saved or not isinstance(self.sock, ssl.SSLSocket):
            return
        self._tls_saved = True
        if not self.sock.session_reused:
            session = self.sock.session
            if session is not None:
                _tls_sessions.put(self._tls_key, session)

    def close(self) -> None:
        self.sock.close()


def _classify(error: BaseException) -> ErrorKind:
    if isinstance(error, _PeerClosed):
        return "closed"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, h11.ProtocolError):
        return "protocol"
    return "other"


_FAILURES = (OSError, h11.RemoteProtocolError, _PeerClosed)
"""Every failure of the network or of the peer: a result, never an exception (an
h11.LocalProtocolError is a request we should not have built, and raises)."""


def _failure(error: BaseException) -> ProbeResult:
    return ProbeResult(
        status=None, error=f"{type(error).__name__}: {error}", error_kind=_classify(error)
    )


def probe_request(request: ProbeRequest) -> ProbeResult:
    """Send one request on a new connection (`Connection: close`)."""
    connection: _Connection | None = None
    try:
        connection = _Connection(request)
        return connection.exchange(request, keep_alive=False)
    except _FAILURES as error:
        return _failure(error)
    finally:
        if connection is not None:
            connection.close()


def probe(
    address: str,
    port: int,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    scheme: Scheme = "http",
    sni: str | None = None,
    timeout: float = 2.0,
    body: bytes | None = None,
) -> ProbeResult:
    """Send one request on a new connection; `host` is the Host header and (https) the SNI."""
    return probe_request(
        ProbeRequest(
            address,
            port,
            host,
            path,
            method=method,
            headers=tuple((headers or {}).items()),
            scheme=scheme,
            sni=sni,
            timeout=timeout,
            body=body,
        )
    )


def probe_many(requests: Iterable[ProbeRequest]) -> list[ProbeResult]:
    """Send `requests` in order, one kept-alive connection per `connection_key`.

    Only for requests that form one moment: nothing may change in Envoy while they run (a
    kept-alive connection stays on the filter chain it was accepted on).
    """
    open_connections: dict[tuple[str, int, str, str | None], _Connection] = {}
    results: list[ProbeResult] = []
    try:
        for request in requests:
            results.append(_send_kept_alive(request, open_connections))
    finally:
        for connection in open_connections.values():
            connection.close()
    return results


def _send_kept_alive(
    request: ProbeRequest, open_connections: dict[tuple[str, int, str, str | None], _Connection]
) -> ProbeResult:
    key = request.connection_key
    reused = open_connections.pop(key, None)
    if reused is not None:
        if reused.reusable:
            try:
                result = reused.exchange(request, keep_alive=True)
            except _FAILURES:
                reused.close()  # e.g. closed while idle: what a fresh connection gets stands
            else:
                _keep(key, reused, open_connections)
                return result
        else:
            reused.close()
    try:
        connection = _Connection(request)
    except _FAILURES as error:
        return _failure(error)
    try:
        result = connection.exchange(request, keep_alive=True)
    except _FAILURES as error:
        connection.close()
        return _failure(error)
    _keep(key, connection, open_connections)
    return result


def _keep(
    key: tuple[str, int, str, str | None],
    connection: _Connection,
    open_connections: dict[tuple[str, int, str, str | None], _Connection],
) -> None:
    if connection.reusable:
        open_connections[key] = connection
    else:
        connection.close()


def group_by_connection(requests: Sequence[ProbeRequest]) -> list[list[int]]:
    """Indexes of `requests` grouped by the connection `probe_many` would share among them."""
    groups: dict[tuple[str, int, str, str | None], list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.connection_key, []).append(index)
    return list(groups.values())
