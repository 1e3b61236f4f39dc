"""The gRPC adapter against real Envoy, in both modes: the rules that only a real client shows.

Each scenario also runs against the mutant that breaks the rule it guards, to prove the test
can fail.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import attrs
import pytest

from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess
from harness.loopback.echo import EchoBackend
from harness.loopback.probe import ProbeResult, probe
from sut.mutants import Mutants
from sut.xds import Resource, ResourceType, Snapshot, SnapshotCache, XdsServer
from tests.xds.builders import cluster, listener, load_assignment, route_configuration

pytestmark = pytest.mark.envoy

NODE = "adapter-test"
INITIAL_FETCH_TIMEOUT = 4.0
PROMPT = 1.0  # "well within initial_fetch_timeout"


@attrs.define
class Rig:
    mode: str
    cache: SnapshotCache
    server: XdsServer
    envoy: EnvoyProcess
    backend: EchoBackend

    def publish(self, snapshot: Snapshot, timeout: float = 5.0) -> None:
        self.cache.set_snapshot(NODE, snapshot)
        assert self.server.wait_converged(NODE, snapshot.version, timeout), self.describe()

    def get(self, path: str, listener_name: str = "L-main") -> ProbeResult:
        ports = self.envoy.admin.listener_ports()
        address, port = ports[listener_name][0]
        return probe(address, port, "example.com", path)

    def poll_status(self, path: str, status: int, timeout: float) -> float | None:
        """Seconds until a fresh request answers `status`, or None at the deadline."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.get(path).status == status:
                return time.monotonic() - start
            time.sleep(0.01)
        return None

    def describe(self) -> str:
        return "\n".join(e.describe() for e in self.server.exchange_log()[-30:])


def snapshot_with(
    backend: EchoBackend, *, inline: bool = False, timeout_ms: int = 250, marker: str = ""
) -> Snapshot:
    port = backend.port
    return Snapshot.from_messages(
        [
            listener("L-main", None if inline else "main"),
            route_configuration("main", "app", marker=marker),
            cluster("app", connect_timeout_ms=timeout_ms),
            load_assignment("app", port),
        ]
    )


@contextlib.contextmanager
def start_rig(mode: str, mutants: Mutants) -> Iterator[Rig]:
    cache = SnapshotCache()
    with XdsServer(cache, mutants=mutants) as server, EchoBackend("default", "app", "0") as backend:
        cache.set_snapshot(NODE, snapshot_with(backend))
        ads = AdsServer(
            "127.0.0.1", server.port, mode=mode, initial_fetch_timeout=INITIAL_FETCH_TIMEOUT
        )
        with EnvoyProcess(EnvoyBootstrap(node_id=NODE, ads=ads)) as envoy:
            envoy.wait_ready(10)
            rig = Rig(mode, cache, server, envoy, backend)
            assert rig.server.wait_converged(NODE, cache.get_snapshot(NODE).version, 5)
            assert rig.get("/app").status == 200
            yield rig


@pytest.fixture(params=["delta", "sotw"])
def rig(request) -> Iterator[Rig]:
    with start_rig(request.param, Mutants()) as started:
        yield started


def rds_inline_rds(rig: Rig) -> float | None:
    rig.publish(snapshot_with(rig.backend, inline=True))
    assert rig.poll_status("/app", 500, PROMPT) is not None
    rig.cache.set_snapshot(NODE, snapshot_with(rig.backend))
    return rig.poll_status("/app", 200, INITIAL_FETCH_TIMEOUT / 2)


def test_rds_to_inline_to_rds_with_unchanged_route_config_serves_again_promptly(rig):
    elapsed = rds_inline_rds(rig)
    assert elapsed is not None and elapsed < PROMPT, rig.describe()
    stats = rig.envoy.admin.stats(filter="init_fetch_timeout")
    assert not any(stats.values()), stats


@pytest.mark.parametrize(
    ("mode", "mutant"), [("delta", "resubscribe-ignored"), ("sotw", "sotw-new-names-ignored")]
)
def test_rds_inline_rds_catches_the_resubscribe_mutants(mode, mutant):
    with start_rig(mode, Mutants.of([mutant])) as rig:
        assert rds_inline_rds(rig) is None


def cluster_update_ack_seconds(rig: Rig) -> float:
    updated = snapshot_with(rig.backend, timeout_ms=900)
    start = time.monotonic()
    rig.cache.set_snapshot(NODE, updated)

    def cds_acked() -> bool:
        return any(
            s.of_type(ResourceType.CLUSTER).acked_snapshot_version == updated.version
            for s in rig.server.stream_statuses(NODE)
        )

    rig.server.wait_for(cds_acked, INITIAL_FETCH_TIMEOUT * 2)
    return time.monotonic() - start


def test_cluster_update_with_unchanged_endpoints_is_acked_promptly(rig):
    assert cluster_update_ack_seconds(rig) < PROMPT, rig.describe()
    assert rig.get("/app").status == 200


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_cluster_update_catches_the_eds_mutant(mode):
    with start_rig(mode, Mutants.of(["eds-not-resent-on-cds"])) as rig:
        assert cluster_update_ack_seconds(rig) >= PROMPT


def invalid_route_config(backend: EchoBackend) -> Snapshot:
    good = snapshot_with(backend)
    rejected = route_configuration("main", "app")
    # A regex RE2 refuses: Envoy NACKs the whole RouteConfiguration.
    rejected.virtual_hosts[0].routes[0].match.ClearField("prefix")
    rejected.virtual_hosts[0].routes[0].match.safe_regex.regex = "(?=lookahead)"
    return good.replacing(Resource.from_message(rejected))


def test_invalid_resource_is_nacked_previous_config_keeps_serving_and_no_loop(rig):
    bad = invalid_route_config(rig.backend)
    rig.cache.set_snapshot(NODE, bad)

    def nacked() -> bool:
        return any(s.of_type(ResourceType.ROUTE).nacks for s in rig.server.stream_statuses(NODE))

    assert rig.server.wait_for(nacked, 5), rig.describe()
    assert rig.get("/app").status == 200
    # Give a loop every chance to show: later traffic on the stream (an unrelated update).
    rig.publish(bad.replacing(Resource.from_message(cluster("app", connect_timeout_ms=300))))
    (status,) = rig.server.stream_statuses(NODE)
    rds = status.of_type(ResourceType.ROUTE)
    assert len(rds.nacks) == 1, rig.describe()
    assert rds.responses_sent == 1 + 1  # the initial RouteConfiguration, then the rejected one
    assert rig.envoy.admin.stats(filter="rds.main.update_rejected")
    assert rig.get("/app").status == 200
    # A valid update after the NACK is applied.
    rig.publish(snapshot_with(rig.backend, marker="fixed"))
    assert rig.get("/app").first_header("x-marker") == "fixed"


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_nack_scenario_catches_the_nack_loop_mutant(mode):
    with start_rig(mode, Mutants.of(["nack-loop"])) as rig:
        rig.cache.set_snapshot(NODE, invalid_route_config(rig.backend))

        def looping() -> bool:
            return any(
                len(s.of_type(ResourceType.ROUTE).nacks) >= 5
                for s in rig.server.stream_statuses(NODE)
            )

        assert rig.server.wait_for(looping, 5)
