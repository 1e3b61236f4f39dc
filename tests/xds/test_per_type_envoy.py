"""Real Envoy on per-type xDS streams (no ADS), straight to the server, in both modes.

The bootstrap's LDS and CDS and the translator's RDS, EDS and SDS sources each name their own
cluster (`PER_TYPE_CLUSTERS`); here every one of them reaches the server directly. Envoy must
converge on a small translated world (HTTP and HTTPS, so all five types flow), hold exactly the
snapshot in its `/config_dump`, and serve requests through it.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator

import attrs
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from harness.lockstep.envoy_state import read_envoy_view, snapshot_differences
from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess
from harness.loopback.echo import EchoBackend, EchoReply
from harness.loopback.probe import ProbeResult, probe
from sut.gatewayapi import Endpoint, Resources, ServiceEndpoints
from sut.translate import TranslateOptions, translate
from sut.xds import (
    ADS_ORDER,
    Resource,
    ResourceType,
    Snapshot,
    SnapshotCache,
    StreamStatus,
    XdsServer,
)
from tests.translate.worlds import backend, gateway, listener, route, service, tls_secret, world

pytestmark = pytest.mark.envoy

NODE = "per-type-test"
HOST = "shop.example.com"
TIMEOUT = 10.0
PROMPT = 2.5
"""Seconds for "at once": half the 5 s initial_fetch_timeout a warming Cluster would wait."""
CLUSTER, ROUTE = ResourceType.CLUSTER, ResourceType.ROUTE
ALL = {"namespaces": {"from": "All"}}


def resources(echo: EchoBackend, path: str = "/") -> Resources:
    cert = {"kind": "Secret", "name": "shop-cert"}
    documents = world(
        gateway(
            [
                listener("http", 80, allowed_routes=ALL),
                listener("https", 443, "HTTPS", HOST, allowed_routes=ALL, certificates=[cert]),
            ]
        ),
        tls_secret("shop-cert"),
        service("app"),
        route(
            "app",
            parents=[{"name": "eg", "namespace": "infra"}],
            hostnames=[HOST],
            rules=[
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": path}}],
                    "backendRefs": [backend("app")],
                }
            ],
        ),
    )
    address, port = echo.endpoint
    return documents.with_endpoints(
        ServiceEndpoints("default", "app", 8080, (Endpoint(address, port),))
    )


def options(mode: str) -> TranslateOptions:
    return TranslateOptions(
        bind_address="127.0.0.1",
        bind_port_zero=True,
        loopback_per_listener=True,
        readiness_port=0,
        initial_fetch_timeout=datetime.timedelta(seconds=5),
        connect_timeout=datetime.timedelta(seconds=0.25),
        transport="per-type",
        per_type_mode=mode,
    )


@attrs.define
class Rig:
    mode: str
    cache: SnapshotCache
    server: XdsServer
    envoy: EnvoyProcess
    echo: EchoBackend

    def publish(self, path: str = "/") -> Snapshot:
        translation = translate(resources(self.echo, path), options(self.mode))
        snapshot = Snapshot.from_messages(translation.xds.messages())
        self.cache.set_snapshot(NODE, snapshot)
        assert self.server.wait_converged(NODE, snapshot.version, TIMEOUT), self.describe()
        return snapshot

    def get(self, listener_suffix: str, path: str, **tls: str) -> ProbeResult:
        ports = self.envoy.admin.listener_ports()
        (name,) = [name for name in ports if name.endswith(listener_suffix)]
        address, port = ports[name][0]
        return probe(address, port, HOST, path, **tls)  # type: ignore[arg-type]

    def describe(self) -> str:
        statuses = "\n".join(repr(s) for s in self.server.stream_statuses(NODE))
        log = "\n".join(e.describe() for e in self.server.exchange_log()[-30:])
        return f"{statuses}\n{log}"


@contextlib.contextmanager
def start_rig(mode: str) -> Iterator[Rig]:
    cache = SnapshotCache()
    with XdsServer(cache) as server, EchoBackend("default", "app", "0") as echo:
        ads = AdsServer("127.0.0.1", server.port, mode=mode, transport="per-type")  # type: ignore[arg-type]
        with EnvoyProcess(EnvoyBootstrap(node_id=NODE, ads=ads)) as envoy:
            rig = Rig(mode, cache, server, envoy, echo)
            rig.publish()
            envoy.wait_ready(TIMEOUT)
            yield rig


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_converges_on_per_type_streams_and_serves(mode: str) -> None:
    with start_rig(mode) as rig:
        snapshot = rig.publish()
        statuses = rig.server.stream_statuses(NODE)
        assert all(not s.aggregated and len(s.serves) == 1 for s in statuses), rig.describe()
        assert all(s.mode == mode for s in statuses)
        served = {kind for s in statuses for kind in s.serves}
        assert served == {kind.short_name for kind in ADS_ORDER}, rig.describe()
        # Envoy opens a stream per subscription: one per RouteConfiguration, Cluster's
        # endpoints and Secret, each asking for its one name (the mutant table relies on it).
        by_name = [s for s in statuses if s.serves & {"RDS", "EDS", "SDS"}]
        assert all(len(s.types[0].subscribed) == 1 for s in by_name), rig.describe()
        assert sum(s.serves == {"RDS"} for s in statuses) == len(snapshot.of_type(ROUTE))

        def holds_snapshot() -> bool:
            return snapshot_differences(read_envoy_view(rig.envoy.admin), snapshot) == []

        assert rig.server.wait_for(holds_snapshot, TIMEOUT), snapshot_differences(
            read_envoy_view(rig.envoy.admin), snapshot
        )
        reply = rig.get("/http", "/x")
        assert reply.status == 200, reply
        assert EchoReply.from_json(reply.body).pod == "app-0"
        secure = rig.get("/https", "/x", scheme="https", sni=HOST)
        assert secure.status == 200, secure

        # An update flows on the streams already open: only /v2 is routed now.
        updated = rig.publish("/v2")
        assert rig.server.wait_for(
            lambda: snapshot_differences(read_envoy_view(rig.envoy.admin), updated) == [],
            TIMEOUT,
        ), rig.describe()
        assert rig.get("/http", "/x").status == 404
        assert rig.get("/http", "/v2/x").status == 200


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_an_updated_cluster_gets_its_endpoints_on_a_stream_of_its_own(mode: str) -> None:
    """Per type there is no cross-type resend: Envoy's updated Cluster subscribes anew."""
    with start_rig(mode) as rig:
        snapshot = rig.publish()

        def eds_streams(live_only: bool = False) -> list[StreamStatus]:
            statuses = rig.server.stream_statuses(NODE, live_only=live_only)
            return [s for s in statuses if s.serves == {"EDS"}]

        assert len(eds_streams()) == 1
        (name,) = snapshot.of_type(CLUSTER)
        message = cluster_pb2.Cluster()
        message.CopyFrom(snapshot.of_type(CLUSTER)[name].message())
        message.connect_timeout.FromMilliseconds(900)
        updated = snapshot.replacing(Resource.from_message(message))
        rig.cache.set_snapshot(NODE, updated)
        # Well within the 5 s initial_fetch_timeout: the Cluster did not warm waiting for EDS.
        assert rig.server.wait_for(
            lambda: snapshot_differences(read_envoy_view(rig.envoy.admin), updated) == [],
            PROMPT,
        ), rig.describe()
        assert rig.server.wait_converged(NODE, updated.version, TIMEOUT), rig.describe()
        # The new Cluster's EDS came on a new stream; the old Cluster's stream closed.
        assert rig.server.wait_for(
            lambda: (len(eds_streams(live_only=True)), len(eds_streams())) == (1, 2), TIMEOUT
        ), rig.describe()
        stats = rig.envoy.admin.stats(filter="init_fetch_timeout")
        assert not any(stats.values()), stats
        assert rig.get("/http", "/x").status == 200
