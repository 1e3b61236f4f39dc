"""End-to-end helpers: one stack per manifest file, requests in the manifests' own terms.

`Served` wraps a converged `harness.commands.serve.serving` stack and answers requests the way
`python -m harness probe` does (same code path), as `Reply` values that tests assert on.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from harness.commands.serve import ProbeRequest, ServedListener, answer, served_listeners, serving
from harness.lockstep.stack import Stack
from sut.gatewayapi import ObjectKey, Resources, Statuses, load_manifests

__all__ = ["MANIFESTS", "Reply", "Served", "served_manifest"]

MANIFESTS = Path(__file__).parent / "manifests"


@attrs.frozen
class Reply:
    """What came back through Envoy for one request."""

    status: int | None
    headers: Mapping[str, Any]
    echo: Mapping[str, Any] | None
    error: str | None

    @property
    def service(self) -> str | None:
        """The Service whose echo pod answered (None when Envoy answered by itself)."""
        return None if self.echo is None else str(self.echo["service"])

    @property
    def backend(self) -> str | None:
        """`namespace/service` of the echo pod that answered."""
        return None if self.echo is None else f"{self.echo['namespace']}/{self.echo['service']}"

    def header(self, name: str) -> str | None:
        """A response header, multiple values joined with ',' as HTTP allows."""
        value = self.headers.get(name.lower())
        if value is None:
            return None
        return value if isinstance(value, str) else ",".join(value)

    def request_header(self, name: str) -> str | None:
        """A request header as the backend received it (multiple values joined with ',')."""
        assert self.echo is not None, f"no echo reply (status {self.status}, error {self.error})"
        wanted = name.lower()
        for key, values in self.echo["headers"].items():
            if key.lower() == wanted:
                return ",".join(values)
        return None


class Served:
    """A converged stack serving one manifest file."""

    def __init__(self, stack: Stack, resources: Resources) -> None:
        self.stack = stack
        self.resources = resources
        self.listeners: tuple[ServedListener, ...] = served_listeners(stack)

    @property
    def statuses(self) -> Statuses:
        assert self.stack.control_plane is not None
        statuses = self.stack.control_plane.statuses
        assert statuses is not None
        return statuses

    def get(
        self,
        gateway: str,
        port: int,
        host: str,
        path: str,
        *,
        scheme: str = "http",
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        sni: str | None = None,
    ) -> Reply:
        namespace, _, name = gateway.rpartition("/")
        request = ProbeRequest(
            gateway=ObjectKey(namespace or "default", name),
            port=port,
            scheme="https" if scheme == "https" else "http",
            host=host,
            path=path,
            method=method,
            headers=dict(headers or {}),
            sni=sni,
        )
        output = answer(self.listeners, request)
        return Reply(
            status=output["status"],
            headers=output["response_headers"],
            echo=output["echo"],
            error=output.get("error"),
        )

    def address(self, gateway: str, port: int) -> tuple[str, int]:
        namespace, _, name = gateway.rpartition("/")
        key = ObjectKey(namespace or "default", name)
        for listener in self.listeners:
            if listener.gateway == key and listener.port == port and listener.address:
                return listener.address
        raise LookupError(f"{gateway} port {port} is not served")

    def peer_certificate(self, gateway: str, port: int, sni: str | None) -> bytes | None:
        """The DER certificate Envoy presents for `sni`, or None if the handshake fails."""
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        address = self.address(gateway, port)
        with socket.create_connection(address, timeout=5) as raw:
            try:
                with context.wrap_socket(raw, server_hostname=sni) as tls:
                    return tls.getpeercert(binary_form=True)
            except (ssl.SSLError, ConnectionResetError):
                return None


@contextlib.contextmanager
def served_manifest(name: str, *, gateway_class: str | None = None) -> Iterator[Served]:
    """Serve `tests/e2e/manifests/<name>` for the duration of the block."""
    resources = load_manifests(MANIFESTS / name)
    with serving(resources, gateway_class=gateway_class) as stack:
        yield Served(stack, resources)
