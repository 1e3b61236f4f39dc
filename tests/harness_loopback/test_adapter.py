"""The adapter protocol end to end: the reference adapter as a real process, driven by
`AdapterClient`, its xDS server read by a real gRPC ADS client on loopback."""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Iterator

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc
from google.protobuf import any_pb2

from harness.loopback.adapter import (
    AdapterCache,
    AdapterClient,
    AdapterError,
    AdapterProcess,
    reference_command,
)
from sut.xds import ResourceType
from tests.xds.builders import delta_request, names_of, sotw_request, world

NODE = "adapter-node"
QUIET = 0.5
"""How long a stream must stay silent to count as 'got nothing' (the server answers in ms)."""


class AdsWatch:
    """One wildcard CDS subscription on an ADS stream; responses (or the stream's end) queue up."""

    def __init__(self, address: str, mode: str) -> None:
        self._delta = mode == "delta"
        self._channel = grpc.insecure_channel(address)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        self._requests: queue.Queue[object] = queue.Queue()
        self.responses: queue.Queue[object] = queue.Queue()
        if mode == "delta":
            self._call = stub.DeltaAggregatedResources(iter(self._requests.get, None))
            self._requests.put(delta_request(ResourceType.CLUSTER, node=NODE))
        else:
            self._call = stub.StreamAggregatedResources(iter(self._requests.get, None))
            self._requests.put(sotw_request(ResourceType.CLUSTER, node=NODE))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                self.responses.put(response)
            self.responses.put(EOFError("stream ended"))
        except grpc.RpcError as error:
            self.responses.put(error)

    def next(self, timeout: float = 5.0) -> object:
        """The next response, ACKed (the server keeps one in flight per type), or the end."""
        response = self.responses.get(timeout=timeout)
        if isinstance(response, grpc.RpcError | EOFError):
            return response
        nonce = response.nonce  # type: ignore[attr-defined]
        if self._delta:
            self._requests.put(delta_request(ResourceType.CLUSTER, nonce=nonce, node=NODE))
        else:
            version = response.version_info  # type: ignore[attr-defined]
            ack = sotw_request(ResourceType.CLUSTER, nonce=nonce, version=version, node=NODE)
            self._requests.put(ack)
        return response

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(5)
        self._channel.close()


@contextlib.contextmanager
def watching(address: str, mode: str = "sotw") -> Iterator[AdsWatch]:
    watch = AdsWatch(address, mode)
    try:
        yield watch
    finally:
        watch.close()


@pytest.fixture
def adapter() -> Iterator[tuple[AdapterProcess, AdapterClient]]:
    with (
        AdapterProcess.start(reference_command()) as process,
        AdapterClient.connect(process.adapter_address) as client,
    ):
        client.wait_ready(10)
        yield process, client


def test_capabilities_name_every_transport_and_the_announced_ads_address(adapter):
    process, client = adapter
    capabilities = client.capabilities()
    assert capabilities.transports == {"sotw-ads", "delta-ads", "sotw-per-type", "delta-per-type"}
    assert capabilities.clients == {"envoy", "proxyless-grpc"}
    assert capabilities.ads_addresses == (process.ads_address,)
    assert capabilities.supports("delta", "per-type")


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_a_pushed_snapshot_is_served_on_ads(adapter, mode):
    process, client = adapter
    version = client.push(NODE, world({"main": ("app", "other")}))
    assert version
    with watching(process.ads_address, mode) as watch:
        assert names_of(watch.next()) == ["app", "other"]


def test_adapter_cache_pushes_only_what_changed_and_remembers_it(adapter):
    process, client = adapter
    cache = AdapterCache(client)
    first = world({"main": ("app",)})
    assert cache.set_snapshot(NODE, first)
    assert not cache.set_snapshot(NODE, world({"main": ("app",)}))
    assert cache.get_snapshot(NODE) == first
    assert cache.versions[NODE] == first.version
    with watching(process.ads_address) as watch:
        assert names_of(watch.next()) == ["app"]
        assert cache.set_snapshot(NODE, world({"main": ("app", "b")}))
        assert names_of(watch.next()) == ["app", "b"]


def test_restart_closes_streams_and_drops_the_cache(adapter):
    process, client = adapter
    cache = AdapterCache(client)
    cache.set_snapshot(NODE, world({"main": ("app",)}))
    with watching(process.ads_address) as old:
        assert names_of(old.next()) == ["app"]
        cache.restart()
        assert isinstance(old.next(), grpc.RpcError | EOFError)
    assert cache.get_snapshot(NODE) is None
    with watching(process.ads_address) as fresh:
        with pytest.raises(queue.Empty):
            fresh.next(timeout=QUIET)
        assert cache.set_snapshot(NODE, world({"main": ("app",)}))
        assert names_of(fresh.next()) == ["app"]


def test_a_broken_resource_is_refused_clearly_and_the_last_snapshot_stays(adapter):
    process, client = adapter
    client.push(NODE, world({"main": ("app",)}))
    garbled = any_pb2.Any(type_url=ResourceType.LISTENER.type_url, value=b"\xff\xff\xff")
    with pytest.raises(AdapterError) as refused:
        client.push(NODE, [garbled])
    assert refused.value.code == "INVALID_ARGUMENT"
    assert "resource 0" in refused.value.details
    assert "does not decode as envoy.config.listener.v3.Listener" in refused.value.details
    unknown = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.Empty")
    with pytest.raises(AdapterError, match="unsupported xDS type_url"):
        client.push(NODE, [unknown])
    with pytest.raises(AdapterError, match="node_id must not be empty"):
        client.push("", world({"main": ("app",)}))
    with watching(process.ads_address) as watch:
        assert names_of(watch.next()) == ["app"]


def test_a_control_plane_mutant_is_refused_before_the_adapter_serves():
    with pytest.raises(AdapterError) as refused:
        AdapterProcess.start(reference_command(["dangling-reference"]))
    assert refused.value.code == "EXITED 2"
    assert "lives in the control-plane publishing, not in the xDS server" in refused.value.details
    assert "Traceback" not in refused.value.details


def test_sigterm_stops_the_adapter_and_its_xds_server_cleanly():
    process = AdapterProcess.start(reference_command(["nack-loop"]))
    try:
        with AdapterClient.connect(process.adapter_address) as client:
            client.wait_ready(10)
        host, port = process.ads_address.rsplit(":", 1)
    finally:
        code = process.stop()
    assert code == 0, process.stderr_text()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), 2):
        pass


def test_wait_ready_on_an_address_nobody_serves_names_the_failure():
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{placeholder.getsockname()[1]}"
    with AdapterClient.connect(address) as client, pytest.raises(AdapterError) as failed:
        client.wait_ready(0.3)
    assert failed.value.code == "DEADLINE_EXCEEDED"
    assert f"adapter Ready at {address} failed" in str(failed.value)


def test_versions_restart_with_process_makes_the_counters_start_again_at_restart():
    """The versioning mutant the server behind an adapter carries: it owns the versions."""
    process = AdapterProcess.start(reference_command(["versions-restart-with-process"]))
    try:
        with AdapterClient.connect(process.adapter_address) as client:
            client.wait_ready(10)
            first = world({"main": ("app",)})
            second = world({"main": ("app",)}, marker="changed")
            one = client.push(NODE, first)
            two = client.push(NODE, second)
            assert one != two  # the changed RouteConfiguration is at "2"
            client.restart()
            assert client.push(NODE, second) == one  # "1" again, now for other content
    finally:
        process.stop()
