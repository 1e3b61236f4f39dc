"""The xDS server under test, as the stack sees it: where the control-plane runner publishes,
where the relays point, and what a control-plane restart does to it.

- `InProcessServer`: routeproof's own `SnapshotCache` and `XdsServer` in this process (the
  default); a restart is a new cache and a new server on a new port.
- `AdapterServer`: any server behind the adapter protocol (`harness.loopback.adapter`); the
  runner publishes through an `AdapterCache` (Push per node), the relays point at its ADS
  address (`--xds-server`, or the first one Capabilities names), a restart is the adapter's
  Restart and Ready. Each stack starts with a Restart, so an example meets a fresh server.

Either way the harness judges from the wire, Envoy and the probes, never from the server's own
introspection (`convergence`). With `adapter="reference"` this process starts routeproof's
reference adapter itself (`reference_adapter`): one per process, reused by its stacks, and
replaced when a stack needs other server-side mutants.
"""

from __future__ import annotations

import atexit
import threading
from typing import Protocol

import attrs

from harness.loopback.adapter import (
    AdapterCache,
    AdapterClient,
    AdapterError,
    AdapterProcess,
    Capabilities,
    reference_command,
)
from harness.loopback.adapter.reference import split_mutants
from sut.mutants import Mutants
from sut.xds import Snapshot, SnapshotCache, XdsServer

__all__ = [
    "REFERENCE",
    "AdapterServer",
    "Cache",
    "ExternalServer",
    "InProcessServer",
    "ServerUnderTest",
    "reference_adapter",
    "server_under_test",
    "stop_reference_adapter",
]

REFERENCE = "reference"
"""`--adapter reference`: the harness starts routeproof's reference adapter process itself."""
READY_TIMEOUT = 10.0


class Cache(Protocol):
    """What the runner and the harness ask of the cache they publish into."""

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> bool: ...

    def get_snapshot(self, node_id: str) -> Snapshot | None: ...


@attrs.frozen
class ExternalServer:
    """An xDS server the harness did not build, driven through an adapter."""

    adapter: str
    """The adapter's address (host:port), or `REFERENCE`."""
    xds_server: str | None = None
    """Its ADS address (host:port); None: the first one its Capabilities name."""

    def describe(self) -> str:
        server = f", xDS server {self.xds_server}" if self.xds_server else ""
        return f"adapter {self.adapter}{server}"


class ServerUnderTest(Protocol):
    cache: Cache
    runner_mutants: Mutants
    """The mutants the control-plane runner carries (the rest live in the server)."""

    @property
    def ads_address(self) -> tuple[str, int]: ...

    def start(self) -> None: ...

    def restart(self) -> None:
        """Every stream closed, every snapshot dropped; returns once streams are accepted."""

    def stop(self) -> None: ...


def server_under_test(external: ExternalServer | None, mutants: Mutants) -> ServerUnderTest:
    if external is None:
        return InProcessServer(mutants)
    return AdapterServer(external, mutants)


class InProcessServer:
    """routeproof's own cache and xDS server, in this process."""

    def __init__(self, mutants: Mutants) -> None:
        self.mutants = mutants
        self.runner_mutants = mutants
        self.cache: Cache = SnapshotCache()
        self.xds: XdsServer | None = None
        """The server itself: tests may look inside; the harness's judging never does."""

    @property
    def ads_address(self) -> tuple[str, int]:
        assert self.xds is not None
        return ("127.0.0.1", self.xds.port)

    def start(self) -> None:
        cache = SnapshotCache()
        self.cache = cache
        self.xds = XdsServer(cache, mutants=self.mutants).start()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.xds is not None:
            self.xds.stop()


class AdapterServer:
    """A server behind the adapter protocol; `capabilities` say what it supports."""

    def __init__(self, external: ExternalServer, mutants: Mutants) -> None:
        self.external = external
        address = external.adapter
        ads = external.xds_server
        if address == REFERENCE:
            server_side, self.runner_mutants = split_mutants(mutants)
            process = reference_adapter(server_side)
            address = process.adapter_address
            ads = ads or process.ads_address
        else:
            self.runner_mutants = mutants
        self.client = AdapterClient.connect(address)
        self._adapter_cache = AdapterCache(self.client)
        self.cache: Cache = self._adapter_cache
        try:
            self.client.wait_ready(READY_TIMEOUT)
            self.capabilities: Capabilities = self.client.capabilities()
        except AdapterError:
            self.client.close()
            raise
        ads = ads or next(iter(self.capabilities.ads_addresses), None)
        if ads is None:
            self.client.close()
            raise AdapterError("Capabilities", address, "NO_ADS", "names no ADS address")
        host, _, port = ads.rpartition(":")
        self._ads = (host or "127.0.0.1", int(port))

    @property
    def ads_address(self) -> tuple[str, int]:
        return self._ads

    def start(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._adapter_cache.restart()
        self.client.wait_ready(READY_TIMEOUT)

    def stop(self) -> None:
        self.client.close()


# ------------------------------------------------------------- the reference adapter

_lock = threading.Lock()
_running: list[tuple[frozenset[str], AdapterProcess]] = []
"""This process's reference adapter and the server-side mutants it carries (at most one)."""


def reference_adapter(mutants: Mutants) -> AdapterProcess:
    """This process's reference adapter carrying exactly `mutants` (server-side ones), started
    if none runs or the running one carries others; stopped at exit."""
    names = frozenset(name.value for name in mutants.names)
    with _lock:
        if _running:
            carried, process = _running[0]
            if carried == names and process.process.poll() is None:
                return process
            _running.clear()
            process.stop()
        else:
            atexit.register(stop_reference_adapter)
        started = AdapterProcess.start(reference_command(sorted(names)))
        _running.append((names, started))
        return started


def stop_reference_adapter() -> None:
    """Stop this process's reference adapter, if one runs."""
    with _lock:
        while _running:
            _, process = _running.pop()
            process.stop()
