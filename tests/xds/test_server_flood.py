"""A client that floods requests and never reads cannot grow the server without bound.

Every request is logged with its resource names. The server-wide exchange log used to be capped
at 20,000 entries, so long name lists grew it by over a hundred megabytes, and it stayed after
the stream closed. Now the log is capped in bytes and a closed stream leaves only its status.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from collections.abc import Iterator

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sut.xds import ResourceType, SnapshotCache, XdsServer
from sut.xds.exchange_log import approximate_size
from tests.xds.builders import NODE, sotw_request, world

LOG_BYTES = 1024 * 1024
NAMES = [f"{'endpoints-that-do-not-exist-' * 3}{i:03d}" for i in range(40)]
MB = 1024 * 1024


def _flood(count: int, sent: threading.Event) -> Iterator[discovery_pb2.DiscoveryRequest]:
    yield sotw_request(ResourceType.CLUSTER)  # answered; the client never reads the answer
    for _ in range(count):
        yield sotw_request(ResourceType.ENDPOINT, NAMES)
    sent.set()


@pytest.mark.slow
def test_a_flood_that_is_never_read_stays_bounded_and_is_released_on_close() -> None:
    cache = SnapshotCache()
    cache.set_snapshot(NODE, world({"routes": ("web",)}))
    with XdsServer(cache, exchange_log_bytes=LOG_BYTES) as server:
        count = 8000
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            sent = threading.Event()
            with grpc.insecure_channel(server.address) as channel:
                stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
                call = stub.StreamAggregatedResources(_flood(count, sent))
                try:
                    # Logged: the stream opening, the CDS request and its answer, the flood.
                    assert server.wait_for(lambda: server.last_seq() >= count + 3, 60)
                    assert sent.is_set()
                    entry = approximate_size(server.exchange_log()[-1])
                    assert count * entry > 2 * LOG_BYTES  # the flood is over twice the log's cap
                    assert server.exchanges.approximate_bytes <= LOG_BYTES
                    assert len(server.exchanges) < count / 2
                    during = tracemalloc.get_traced_memory()[1] - baseline
                finally:
                    call.cancel()
            assert server.wait_for(lambda: not server.stream_statuses(), 10)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
    # Keeping every request would take count * entry, about 48 MB (the stream's own log keeps
    # its newest 5,000, about 30 MB, until it closes).
    assert during < 40 * MB, f"peak {during / MB:.1f} MB during the flood"
    assert after < LOG_BYTES + 4 * MB, f"{after / MB:.1f} MB kept after the stream closed"
