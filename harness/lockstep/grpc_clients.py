"""Proxyless gRPC clients beside the Envoy proxies: gRPC's own xDS client as a second kind of
real xDS client of the same control plane (`StackSettings.grpc_clients`).

Each client is a `ProxylessClient` process on the proxyless node id, reaching the xDS server
through a relay of its own that a `ProtocolMonitor` taps, as each Envoy's does. Its node metadata
names it (`grpc-<i>`). gRPC subscribes by name and only to what its channels need, so a client
opens no xDS stream until its first call. Nothing holds or cuts their connections; a
control-plane restart re-points their relays like the proxies'.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.lockstep.monitor.monitor import ProtocolMonitor, Published
from harness.lockstep.proxy import INSTANCE_KEY
from harness.loopback.proxyless import ProxylessClient
from harness.loopback.relay import TcpRelay
from sut.xds import Snapshot

__all__ = ["GrpcClient", "GrpcFleet", "grpc_instance"]

ANSWER_BOUND = 0.5
"""Seconds the server has to answer a gRPC client's request (the Envoys' bound, at the default
initial fetch timeout)."""


def grpc_instance(index: int) -> str:
    return f"grpc-{index}"


class GrpcClient:
    """Client `index`: `start(upstream)`, ask `client`, always `stop()`."""

    def __init__(self, index: int, node_id: str) -> None:
        self.index = index
        self.instance = grpc_instance(index)
        self.node_id = node_id
        self.monitor = ProtocolMonitor(answer_bound=ANSWER_BOUND)
        """The judge of this client's xDS exchange: it sees its relay's bytes."""
        self.relay = TcpRelay(tap=self.monitor.recorder)
        self.client: ProxylessClient | None = None

    def start(self, upstream: tuple[str, int]) -> None:
        self.relay.start()
        self.relay.set_upstream(upstream)
        self.client = ProxylessClient(
            f"127.0.0.1:{self.relay.port}", self.node_id, {INSTANCE_KEY: self.instance}
        ).start()

    def redirect(self, upstream: tuple[str, int]) -> None:
        """Point the relay at a new server and cut the connection; gRPC reconnects by itself."""
        self.relay.set_upstream(upstream)
        self.relay.cut()

    def stop(self) -> None:
        """Safe to call twice, or after a failed start."""
        try:
            if self.client is not None:
                self.client.stop()
        finally:
            self.relay.stop()


class GrpcFleet:
    """Every proxyless client of the stack, and what the harness tells their monitors."""

    def __init__(self, count: int, node_id: str) -> None:
        self.node_id = node_id
        self.clients = tuple(GrpcClient(index, node_id) for index in range(count))
        self._last: tuple[int, str] | None = None
        """(lifetime, version) of the last proxyless snapshot the monitors were told of."""
        self.held: Snapshot | None = None
        """What converged clients hold: the last proxyless snapshot published. A restarted
        control plane with nothing to publish leaves it: gRPC keeps cached resources across a
        reconnect (model rule 8)."""

    def __len__(self) -> int:
        return len(self.clients)

    def start(self, upstream: tuple[str, int]) -> None:
        for client in self.clients:
            client.start(upstream)

    def redirect(self, upstream: tuple[str, int]) -> None:
        for client in self.clients:
            client.redirect(upstream)

    def stop(self) -> None:
        for client in self.clients:
            client.stop()

    def control_plane_started(self) -> None:
        for client in self.clients:
            client.monitor.control_plane_started()

    def observe(self, snapshot: Snapshot | None, lifetime: int, clock: Callable[[], float]) -> None:
        """The proxyless snapshot in the cache after a control-plane action: the monitors learn
        of each new one (what the clients may be sent from then on)."""
        if snapshot is None or self._last == (lifetime, snapshot.version):
            return
        self._last = (lifetime, snapshot.version)
        self.held = snapshot
        self.published(snapshot, lifetime, clock())

    def published(self, snapshot: Snapshot, lifetime: int, at: float) -> None:
        published = Published(
            at,
            lifetime,
            {(item.type.type_url, item.name): item.body for item in snapshot.resources},
        )
        for client in self.clients:
            client.monitor.published(published)
