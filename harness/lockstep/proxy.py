"""One Envoy replica of the Gateway: its process, its own xDS connection, the monitor of that
connection, and the counters the invariants keep about it.

Replicas of one Gateway share a node id, so the control plane serves them all one snapshot; each
has its own connection (through its own relay), so holds, cuts and restarts are per replica, and
its own monitor, which alone says what its streams are. Each Envoy carries its instance id in its
node metadata (`proxy-<i>`).

With the per-type transport, each type's bootstrap cluster (`PER_TYPE_CLUSTERS`) reaches the
server through a relay of its own, so one type's streams can be cut while the others flow; all
of them tap the replica's one monitor (`RelayMux` keeps their connections apart).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from harness.lockstep.envoy_state import EnvoyView, read_envoy_view
from harness.lockstep.invariants import EnvoyCounters, FetchTimeouts, Violation, counters
from harness.lockstep.invariants import subscriptions as fetch_timeouts
from harness.lockstep.monitor.messages import StreamKey
from harness.lockstep.monitor.monitor import ProtocolMonitor
from harness.lockstep.relay_mux import RelayMux
from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess, XdsMode
from harness.loopback.bootstrap import PER_TYPE_CLUSTERS, XdsTransport
from harness.loopback.relay import TcpRelay
from harness.loopback.spares import SpareEnvoys
from sut.xds import ResourceType, Snapshot

__all__ = ["INSTANCE_KEY", "Proxy", "instance_name"]

INSTANCE_KEY = "instance"
"""The node metadata key naming a replica."""
_ENVOY_STATS = f"{counters.STATS_FILTER}|{fetch_timeouts.STATS_FILTER}"
"""Every counter the invariants read, fetched in one admin call per check."""

Ports = Mapping[str, tuple[tuple[str, int], ...]]


def instance_name(index: int) -> str:
    return f"proxy-{index}"


def _reconnected(relay: TcpRelay, accepted: int, forwarded: int, timeout: float) -> bool:
    """Wait for a new connection through `relay` to deliver bytes (counts were as given)."""
    return relay.wait_until(
        lambda r: r.connections_accepted > accepted and r.bytes_forwarded > forwarded, timeout
    )


class Proxy:
    """Replica `index`: create, `start_relay`, `launch` (then `wait_ready`), always `stop()`."""

    def __init__(
        self,
        index: int,
        *,
        node_id: str,
        mode: XdsMode,
        initial_fetch_timeout: float,
        transport: XdsTransport = "ads",
    ) -> None:
        self.index = index
        self.instance = instance_name(index)
        self.node_id = node_id
        self.mode: XdsMode = mode
        self.initial_fetch_timeout = initial_fetch_timeout
        self.monitor = ProtocolMonitor(
            answer_bound=0.5 * initial_fetch_timeout, client_versions=self._client_versions
        )
        """The independent judge of this replica's xDS exchange: it sees its relay's bytes."""
        self.transport: XdsTransport = transport
        types = tuple(PER_TYPE_CLUSTERS) if transport == "per-type" else ("ADS",)
        mux = RelayMux(self.monitor.recorder, len(types))
        self.relays: dict[str, TcpRelay] = {
            short: TcpRelay(tap=mux.tap(i)) for i, short in enumerate(types)
        }
        """The relay of each xDS connection: "ADS", or one per type ("LDS", "RDS", ...)."""
        self.relay = next(iter(self.relays.values()))
        """The ADS relay (with per-type, the LDS one)."""
        self.envoy: EnvoyProcess | None = None
        self.starts = 0
        self.reconnect_pending = False
        """The connection was cut: the next convergence allows for the reconnect."""
        self.counters = EnvoyCounters()
        self.fetch_timeouts = FetchTimeouts()
        self.trail_from = 0
        """Index of the publication this Envoy held at its last counters check."""
        self.rejections_checked = 0
        """Rejections the harness had made this replica make at its last counters check."""

    # ------------------------------------------------------------- lifecycle

    def start_relay(self, upstream: tuple[str, int]) -> None:
        for relay in self.relays.values():
            relay.start()
            relay.set_upstream(upstream)

    def launch(self, spares: SpareEnvoys | None) -> None:
        """A new Envoy process for this replica (a parked one from `spares` if one fits), up to
        its admin endpoint; `wait_ready` waits for its configuration."""
        ads = AdsServer(
            "127.0.0.1",
            self.relay.port,
            mode=self.mode,
            initial_fetch_timeout=self.initial_fetch_timeout,
            transport=self.transport,
            type_ports={
                short: relay.port for short, relay in self.relays.items() if short != "ADS"
            },
        )
        bootstrap = EnvoyBootstrap(
            node_id=self.node_id, ads=ads, node_metadata={INSTANCE_KEY: self.instance}
        )
        self.envoy = EnvoyProcess(bootstrap)
        parked = spares.take(self.envoy.options) if spares is not None else None
        self.envoy.start(parked=parked)
        self.starts += 1

    def wait_ready(self) -> None:
        assert self.envoy is not None
        self.envoy.wait_ready(10 + 2 * self.initial_fetch_timeout)

    def stop_envoy(self) -> None:
        if self.envoy is not None:
            self.envoy.stop()

    def stop(self) -> None:
        """Stop this replica's Envoy and relay; safe to call twice, or after a failed start."""
        try:
            self.stop_envoy()
        finally:
            for relay in self.relays.values():
                relay.stop()

    def envoy_started(self, *, counting: bool) -> None:
        """A new Envoy: its fetch-timeout counters start over (with `counting` False, nothing was
        published when it started, so its first fetches time out by design)."""
        assert self.envoy is not None
        self.fetch_timeouts.reset(self.envoy, counting=counting)

    # ------------------------------------------------------------ xDS link

    def stream_ids(self, kind: str | None = None) -> set[StreamKey]:
        """The live streams of this replica, as its monitor sees them on the wire (`kind`: only
        those serving that type, e.g. "RDS")."""
        return self.monitor.live_streams(kind)

    def cut(self, kind: str | None = None, timeout: float = 2.0) -> None:
        """Close the xDS connections (`kind`: with per-type, only that type's, e.g. "RDS");
        returns once the monitor has seen those streams end, so the next convergence waits
        for the new streams rather than trusting the dead ones."""
        if kind is not None and kind not in self.relays:
            raise ValueError(f"{self.instance} has no {kind} connection of its own")
        before = self.stream_ids(kind)
        for short, relay in self.relays.items():
            if kind is None or short == kind:
                relay.cut()
        self.monitor.wait_until(lambda: not before & self.stream_ids(), timeout)
        self.reconnect_pending = True

    def hold(self) -> None:
        """Hold every connection of this replica (the model holds the whole proxy's link)."""
        for relay in self.relays.values():
            relay.hold()

    def release(self) -> None:
        for relay in self.relays.values():
            relay.release()

    def redirect(self, upstream: tuple[str, int]) -> Callable[[float], bool]:
        """Point every relay at a new server and cut their connections; returns a wait
        (seconds -> whether it happened) for Envoy's new connections to deliver their first
        bytes (with per-type, the LDS and CDS ones: the others come once those name them)."""
        relays = [relay for short, relay in self.relays.items() if short in ("ADS", "LDS", "CDS")]
        marks = [(relay.connections_accepted, relay.bytes_forwarded) for relay in relays]
        for relay in self.relays.values():
            relay.set_upstream(upstream)
            relay.cut()
        self.reconnect_pending = True

        def wait(timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            return all(
                _reconnected(relay, accepted, forwarded, max(deadline - time.monotonic(), 0.0))
                for relay, (accepted, forwarded) in zip(relays, marks, strict=True)
            )

        return wait

    # ---------------------------------------------------------- observation

    def envoy_view(self, expected_resources: int = 0) -> EnvoyView:
        """What this Envoy holds now (admin timeouts grow with `expected_resources`)."""
        assert self.envoy is not None
        return read_envoy_view(self.envoy.admin, expected_resources)

    def listener_ports(self, view: EnvoyView | None = None) -> Ports:
        """Where each *active* listener is bound. A draining listener is left out: its port
        may already belong to a new listener (the OS reuses freed ports). `view`: what Envoy
        holds now, if just read (saves reading the listener states again)."""
        assert self.envoy is not None
        ports = self.envoy.admin.listener_ports()
        states: dict[str, set[str]] = {}
        if view is None:
            for status in self.envoy.admin.dynamic_listeners():
                states.setdefault(status.name, set()).add(status.state)
        else:
            for state, names in (
                ("active", view.active_listeners),
                ("warming", view.warming_listeners),
                ("draining", view.draining_listeners),
            ):
                for name in names:
                    states.setdefault(name, set()).add(state)
        return {
            name: bound
            for name, bound in ports.items()
            if name not in states or "active" in states[name]
        }

    def init_fetch_timeouts(self) -> dict[str, int]:
        """Envoy counters of subscriptions that timed out waiting for the server (non-zero only)."""
        return self._stats("init_fetch_timeout")

    def update_rejections(self) -> dict[str, int]:
        return self._stats("update_rejected")

    def _stats(self, pattern: str) -> dict[str, int]:
        assert self.envoy is not None
        stats = self.envoy.admin.stats(filter=pattern)
        return {name: value for name, value in stats.items() if value}

    def counter_violations(
        self, publications: Sequence[Snapshot], rejections_made: int
    ) -> list[Violation]:
        """Envoy's own counters (`invariants.counters`, `invariants.subscriptions`) since this
        replica's last check: `publications` is every snapshot published so far, in order;
        `rejections_made` how many updates the harness made it reject so far."""
        assert self.envoy is not None
        trail = list(publications[self.trail_from :])
        self.trail_from = max(len(publications) - 1, 0)
        made = rejections_made - self.rejections_checked
        self.rejections_checked = rejections_made
        stats = self.envoy.admin.stats(filter=_ENVOY_STATS)
        return self.counters.check(self.envoy, stats, trail, made) + (
            self.fetch_timeouts.check(self.envoy, stats)
        )

    def _client_versions(self, type_url: str) -> Mapping[str, str]:
        """The version of each dynamic Listener or Cluster this Envoy holds (its config_dump,
        only the names and versions of that type)."""
        if self.envoy is None:
            return {}
        admin = self.envoy.admin
        versions: dict[str, str] = {}
        if type_url == ResourceType.LISTENER.type_url:
            for status in admin.dynamic_listeners():
                if status.state == "active":
                    versions[status.name] = status.version_info
        elif type_url == ResourceType.CLUSTER.type_url:
            dump = admin.config_dump(
                resource="dynamic_active_clusters", mask="version_info,cluster.name"
            )
            for item in dump.get("configs", ()):
                versions[item["cluster"]["name"]] = item.get("version_info", "")
        return versions

    def __repr__(self) -> str:
        return f"Proxy({self.instance}, {self.envoy!r})"
