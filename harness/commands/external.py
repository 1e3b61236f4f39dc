"""`check --adapter ADDR [--xds-server ADDR]` and `--adapter reference`: what the commands need to
put an xDS server they did not build under test.

The server's Capabilities decide which variants run: a variant whose transport (`<mode>-<ads|
per-type>`) or client kinds (Envoy, proxyless gRPC) the server lacks is skipped, and the skip is
reported (on stderr, in the `--json` report). With `--adapter reference` the command starts
routeproof's reference adapter itself (`server_under_test.reference_adapter`, server-side
mutants as its flags) and stops it at the end.
"""

from __future__ import annotations

from harness.lockstep.server_under_test import (
    REFERENCE,
    ExternalServer,
    reference_adapter,
    stop_reference_adapter,
)
from harness.lockstep.stack import StackSettings
from harness.loopback.adapter import AdapterClient, Capabilities
from harness.loopback.adapter.reference import split_mutants

__all__ = [
    "capabilities_of",
    "check_foreign",
    "external_server",
    "lacking",
    "stop_reference_adapter",
]


def capabilities_of(settings: StackSettings) -> Capabilities:
    """What the server under test of `settings` supports (it must be external); raises
    `AdapterError` if its adapter does not answer."""
    external = settings.external
    assert external is not None
    address = external.adapter
    if address == REFERENCE:
        address = reference_adapter(split_mutants(settings.mutants)[0]).adapter_address
    with AdapterClient.connect(address) as client:
        client.wait_ready(10.0)
        return client.capabilities()


def lacking(settings: StackSettings, capabilities: Capabilities) -> str | None:
    """Why the server cannot run this variant (None: it can)."""
    missing = []
    if not capabilities.supports(settings.mode, settings.transport):
        missing.append(f"the {settings.mode}-{settings.transport} transport")
    if "envoy" not in capabilities.clients:
        missing.append("Envoy clients")
    if settings.grpc_clients and "proxyless-grpc" not in capabilities.clients:
        missing.append("proxyless gRPC clients")
    if not missing:
        return None
    server = f" ({capabilities.server})" if capabilities.server else ""
    return f"the server{server} lacks " + ", ".join(missing)


def external_server(adapter: str | None, xds_server: str | None) -> ExternalServer | None:
    """The options as settings; ValueError for an address that is not host:port."""
    if adapter is None:
        if xds_server is not None:
            raise ValueError("--xds-server needs --adapter (the harness pushes through it)")
        return None
    for option, value in (("--adapter", adapter), ("--xds-server", xds_server)):
        if value is None or (option == "--adapter" and value == REFERENCE):
            continue
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{option} {value!r}: expected HOST:PORT")
    return ExternalServer(adapter, xds_server)


def check_foreign(settings: StackSettings, workers: int) -> None:
    """ValueError for what a server the harness did not start cannot do: run several examples
    at once (each starts with its Restart), or carry routeproof's server-side mutants."""
    external = settings.external
    if external is None or external.adapter == REFERENCE:
        return
    if workers > 1:
        raise ValueError("--adapter HOST:PORT runs on one worker (--workers 1)")
    server_side = sorted(name.value for name in split_mutants(settings.mutants)[0].names)
    if server_side:
        raise ValueError(
            f"mutants {', '.join(server_side)} live in the xDS server: only --adapter reference"
            " can switch them on"
        )
