"""The gRPC adapter's own duties, over real gRPC on loopback: refusing a stream that breaks the
protocol (with a log line), forgetting closed streams, binding and stopping cleanly."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sut.xds import ResourceType, SnapshotCache, XdsServer
from tests.xds.builders import NODE, names_of, sotw_request, world


def _cache() -> SnapshotCache:
    cache = SnapshotCache()
    cache.set_snapshot(NODE, world({"routes": ("web",)}))
    return cache


def _first_cds_response(address: str) -> discovery_pb2.DiscoveryResponse:
    with grpc.insecure_channel(address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        responses = stub.StreamAggregatedResources(iter([sotw_request(ResourceType.CLUSTER)]))
        try:
            return next(responses)
        finally:
            responses.cancel()


def test_a_stream_that_breaks_the_protocol_is_refused_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sut.xds.server")
    with XdsServer(_cache()) as server, grpc.insecure_channel(server.address) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        no_node = discovery_pb2.DiscoveryRequest(type_url=ResourceType.CLUSTER.type_url)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.StreamAggregatedResources(iter([no_node])))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "node id" in refused.value.details()
        assert any("node id" in error for error in server.protocol_errors)
        assert any(
            record.levelno == logging.WARNING and "refused" in record.getMessage()
            for record in caplog.records
        ), caplog.text
        assert names_of(_first_cds_response(server.address)) == ["web"]


def test_closed_streams_leave_a_bounded_history_of_statuses() -> None:
    with XdsServer(_cache(), closed_history=3) as server:
        for _ in range(6):
            assert names_of(_first_cds_response(server.address)) == ["web"]
        assert server.wait_for(lambda: not server.stream_statuses(), 10)
        closed = server.stream_statuses(live_only=False)
        assert len(closed) == 3
        assert [s.stream_id for s in closed] == sorted(s.stream_id for s in closed)
        assert all(s.node_id == NODE for s in closed)
        assert server.stream_statuses("another-node", live_only=False) == []


def test_stop_is_idempotent_and_ends_the_servers_thread() -> None:
    before = threading.active_count()
    server = XdsServer(_cache()).start()
    assert names_of(_first_cds_response(server.address)) == ["web"]
    server.stop()
    server.stop()
    assert threading.active_count() == before


def test_a_port_in_use_is_a_clear_error() -> None:
    with XdsServer(_cache()) as server, pytest.raises(OSError, match="could not bind"):
        XdsServer(_cache(), port=server.port).start()
