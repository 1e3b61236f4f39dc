"""Hundreds of ADS streams on one server, from Envoy-like clients in another process.

The server used to run a thread per stream (and one more to read it) in a pool of 64: the 65th
stream got nothing, silently. Now every stream is a coroutine on one event loop, so the server's
threads stay flat as streams grow and every stream converges.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sut.xds import ResourceType, SnapshotCache, XdsServer
from tests.xds.builders import resource, route_configuration, sotw_request, world
from tests.xds.fleet import command

ROOT = Path(__file__).resolve().parents[2]
NODE = "fleet"
MARKER = "moved-7c1d"
ROUTES: dict[str, tuple[str, ...]] = {
    f"routes-{i}": (f"cluster-{i}", f"cluster-{i + 1}") for i in range(4)
}

pytestmark = pytest.mark.slow


def _os_threads() -> int:
    """Threads of this process as the kernel counts them, gRPC's own C threads included."""
    return len(os.listdir("/proc/self/task"))


class Fleet:
    """A `tests.xds.fleet` process; reads its lines with a deadline, stops it on exit."""

    def __init__(self, address: str, mode: str, streams: int) -> None:
        self.process = subprocess.Popen(
            command(address, NODE, mode, streams, MARKER),
            cwd=ROOT,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._buffer = b""

    def expect(self, word: str, timeout: float) -> str:
        """The rest of the next line, which must start with `word`."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {word!r} from the fleet within {timeout} s"
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self.process.stdout.fileno(), 4096)
                assert chunk, f"the fleet exited before {word!r}"
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        key, _, rest = line.decode().partition(" ")
        assert key == word, line.decode()
        return rest

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_three_hundred_streams_converge_on_flat_threads(mode: str) -> None:
    cache = SnapshotCache()
    cache.set_snapshot(NODE, world(ROUTES))
    fleets: list[Fleet] = []
    with XdsServer(cache) as server:
        try:
            fleets.append(Fleet(server.address, mode, 10))
            fleets[0].expect("ready", 15)
            os_threads, py_threads = _os_threads(), threading.active_count()

            fleets.append(Fleet(server.address, mode, 290))
            fleets[1].expect("ready", 20)
            assert len(server.stream_statuses(NODE)) == 300
            assert threading.active_count() == py_threads
            # gRPC's own pollers may add a few threads under load; a thread per stream adds 290.
            assert _os_threads() - os_threads <= 8, (os_threads, _os_threads())

            moved = world(ROUTES, marker=MARKER)
            cache.set_snapshot(NODE, moved)
            for fleet in fleets:
                fleet.expect("converged", 20)
            assert server.wait_converged(NODE, moved.version, 10)
            assert len(server.stream_statuses(NODE)) == 300
        finally:
            for fleet in fleets:
                fleet.stop()
        assert server.wait_for(lambda: not server.stream_statuses(NODE), 10)


def test_a_stream_that_never_reads_delays_neither_the_cache_nor_the_others() -> None:
    clusters = tuple(f"cluster-{i:04d}-{'x' * 80}" for i in range(3000))
    first = world({"routes": clusters})
    versions = [
        first.replacing(resource(route_configuration("routes", *clusters, marker=marker)))
        for marker in [*(f"v{i}" for i in range(19)), MARKER]
    ]
    cache = SnapshotCache()
    cache.set_snapshot(NODE, first)
    stop_sending = threading.Event()

    def requests() -> Iterator[discovery_pb2.DiscoveryRequest]:
        yield sotw_request(ResourceType.CLUSTER, node=NODE)  # ~400 kB, never read
        stop_sending.wait(30)

    # Without BDP probing the client's window stays small, so the server's write really waits.
    options = [("grpc.http2.bdp_probe", 0)]
    with (
        XdsServer(cache) as server,
        grpc.insecure_channel(server.address, options=options) as channel,
    ):
        slow = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            requests()
        )
        fleet: Fleet | None = None
        try:
            assert server.wait_for(lambda: len(server.stream_statuses(NODE)) == 1, 10)
            (slow_status,) = server.stream_statuses(NODE)
            fleet = Fleet(server.address, "sotw", 3)
            fleet.expect("ready", 20)

            began = time.monotonic()
            for snapshot in versions:
                cache.set_snapshot(NODE, snapshot)
            assert time.monotonic() - began < 1.0  # the watch callbacks never wait for a stream

            fleet.expect("converged", 20)

            def healthy_converged() -> bool:
                others = [
                    s for s in server.stream_statuses(NODE) if s.stream_id != slow_status.stream_id
                ]
                return len(others) == 3 and all(
                    s.converged and s.snapshot_version == versions[-1].version for s in others
                )

            assert server.wait_for(healthy_converged, 10)
            (still_slow,) = [
                s for s in server.stream_statuses(NODE) if s.stream_id == slow_status.stream_id
            ]
            assert not still_slow.converged
            # Its writer is still waiting for the client, so it has not even taken a snapshot:
            # once it can, it takes only the newest.
            assert still_slow.snapshot_version == first.version
        finally:
            stop_sending.set()
            slow.cancel()
            if fleet is not None:
                fleet.stop()
