"""One HTTP(S) request through Envoy, with every outcome as a value.

Each probe opens a fresh connection and sends `Connection: close`: a kept-alive connection stays
on the filter chain it was accepted on, so it would keep answering from an old configuration.
Refused, reset, timed-out and TLS-failed connections are results (status None, `error` set),
never exceptions: to the harness "Envoy did not answer" is an outcome to compare with the model.
"""

from __future__ import annotations

import functools
import http.client
import json
import socket
import ssl
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["ProbeResult", "probe"]

ErrorKind = Literal["refused", "reset", "timeout", "closed", "tls", "protocol", "other"]


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


@functools.cache
def _client_context() -> ssl.SSLContext:
    """One shared context that verifies nothing: probes test routing, not certificates.

    Built once: loading the system's CA store for every probe cost ~25 ms a request.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _SNIConnection(http.client.HTTPSConnection):
    """HTTPS to a literal address while sending an arbitrary SNI (http.client uses the host)."""

    def __init__(self, address: str, port: int, *, sni: str, timeout: float) -> None:
        context = _client_context()
        super().__init__(address, port, timeout=timeout, context=context)
        self._sni = sni
        self._context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.host, self.port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self._sni or None)
        except BaseException:
            raw.close()
            raise


class _PlainConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _classify(error: BaseException) -> ErrorKind:
    # RemoteDisconnected is also a ConnectionResetError: test it first.
    if isinstance(error, http.client.RemoteDisconnected | http.client.IncompleteRead):
        return "closed"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ssl.SSLError):
        return "tls"
    if isinstance(error, http.client.HTTPException):
        return "protocol"
    return "other"


def probe(
    address: str,
    port: int,
    host: str,
    path: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    scheme: Literal["http", "https"] = "http",
    sni: str | None = None,
    timeout: float = 2.0,
    body: bytes | None = None,
) -> ProbeResult:
    """Send one request on a new connection; `host` is the Host header and (https) the SNI."""
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be 'http' or 'https', not {scheme!r}")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/': {path!r}")
    connection: http.client.HTTPConnection
    if scheme == "https":
        connection = _SNIConnection(
            address, port, sni=sni if sni is not None else host, timeout=timeout
        )
    else:
        connection = _PlainConnection(address, port, timeout=timeout)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        connection.putheader("Connection", "close")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        payload = response.read()
        pairs: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            pairs.setdefault(name.lower(), []).append(value)
        return ProbeResult(
            status=response.status,
            headers=tuple((name, tuple(values)) for name, values in pairs.items()),
            body=payload,
        )
    except (OSError, http.client.HTTPException) as error:
        return ProbeResult(
            status=None,
            error=f"{type(error).__name__}: {error}",
            error_kind=_classify(error),
        )
    finally:
        connection.close()
