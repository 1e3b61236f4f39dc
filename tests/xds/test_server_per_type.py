"""The per-type discovery services (CDS, EDS, LDS, RDS, SDS; SotW and Delta) over real gRPC.

Each client stream runs on a sync gRPC call whose responses a reader thread puts on a queue, so
every wait has a deadline; the call is cancelled and the thread joined even on failure.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

import grpc
import pytest
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.endpoint.v3 import eds_pb2_grpc
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc

from sut.xds import Resource, ResourceType, Snapshot, SnapshotCache, XdsServer
from tests.xds.builders import NODE, delta_request, names_of, sotw_request, world

LDS, RDS, CDS, EDS, SDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
    ResourceType.SECRET,
)
MODES = ["delta", "sotw"]
TIMEOUT = 10.0

_STUBS: dict[ResourceType, tuple[Callable[[grpc.Channel], object], str]] = {
    CDS: (cds_pb2_grpc.ClusterDiscoveryServiceStub, "Clusters"),
    EDS: (eds_pb2_grpc.EndpointDiscoveryServiceStub, "Endpoints"),
    LDS: (lds_pb2_grpc.ListenerDiscoveryServiceStub, "Listeners"),
    RDS: (rds_pb2_grpc.RouteDiscoveryServiceStub, "Routes"),
    SDS: (sds_pb2_grpc.SecretDiscoveryServiceStub, "Secrets"),
}

_END = object()


class PerTypeClient:
    """One client stream on the per-type service of `service`, in `mode`."""

    def __init__(self, channel: grpc.Channel, service: ResourceType, mode: str) -> None:
        stub_class, plural = _STUBS[service]
        method = getattr(stub_class(channel), f"{'Delta' if mode == 'delta' else 'Stream'}{plural}")
        self.mode = mode
        self._requests: queue.Queue[object] = queue.Queue()
        self.call = method(iter(self._requests.get, _END))
        self._responses: queue.Queue[object] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self._responses.put(response)
        except grpc.RpcError as error:
            self._responses.put(error)
        self._responses.put(_END)

    def send(self, kind: ResourceType, names: tuple[str, ...] = (), nonce: str = "") -> None:
        if self.mode == "delta":
            self._requests.put(delta_request(kind, () if nonce else names, nonce=nonce))
        else:
            self._requests.put(sotw_request(kind, names, nonce=nonce))

    def receive(self) -> object:
        """The next response, or the RpcError that ended the call."""
        return self._responses.get(timeout=TIMEOUT)

    def close(self) -> None:
        self._requests.put(_END)
        self.call.cancel()  # type: ignore[attr-defined]
        self._reader.join(TIMEOUT)
        assert not self._reader.is_alive()


@contextlib.contextmanager
def serving(snapshot: Snapshot) -> Iterator[tuple[SnapshotCache, XdsServer, grpc.Channel]]:
    cache = SnapshotCache()
    cache.set_snapshot(NODE, snapshot)
    with XdsServer(cache) as server, grpc.insecure_channel(server.address) as channel:
        yield cache, server, channel


@contextlib.contextmanager
def client(channel: grpc.Channel, service: ResourceType, mode: str) -> Iterator[PerTypeClient]:
    opened = PerTypeClient(channel, service, mode)
    try:
        yield opened
    finally:
        opened.close()


def tls_world() -> Snapshot:
    """A small world plus one Secret (nothing names it: SDS serves by name regardless)."""
    secret = secret_pb2.Secret(name="cert")
    secret.tls_certificate.certificate_chain.inline_string = "chain"
    return Snapshot(world({"web": ("a",)}).resources | {Resource.from_message(secret)})


NAMES = {CDS: ("a",), EDS: ("a",), LDS: ("L-web",), RDS: ("web",), SDS: ("cert",)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", [CDS, EDS, LDS, RDS, SDS], ids=lambda k: k.short_name)
def test_each_per_type_service_serves_its_type(kind: ResourceType, mode: str) -> None:
    snapshot = tls_world()
    with serving(snapshot) as (_, server, channel), client(channel, kind, mode) as stream:
        wildcard = kind in (CDS, LDS)
        stream.send(kind, () if wildcard else NAMES[kind])
        response = stream.receive()
        assert ResourceType.from_type_url(response.type_url) is kind  # type: ignore[attr-defined]
        assert names_of(response) == list(NAMES[kind])
        stream.send(kind, () if wildcard else NAMES[kind], nonce=response.nonce)  # type: ignore[attr-defined]
        assert server.wait_converged(NODE, snapshot.version, TIMEOUT)
        (status,) = server.stream_statuses(NODE)
        assert status.serves == frozenset({kind.short_name})
        assert not status.aggregated
        assert status.mode == mode


@pytest.mark.parametrize("mode", MODES)
def test_another_type_on_a_per_type_stream_is_refused(mode: str) -> None:
    with serving(world({"web": ("a",)})) as (_, server, channel):
        with client(channel, CDS, mode) as stream:
            stream.send(LDS)
            refused = stream.receive()
        assert isinstance(refused, grpc.RpcError)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "LDS request on a CDS stream" in refused.details()  # type: ignore[attr-defined]
        assert any("LDS request on a CDS stream" in e for e in server.protocol_errors)


@pytest.mark.parametrize("mode", MODES)
def test_wait_converged_covers_every_stream_of_the_node(mode: str) -> None:
    first = world({"web": ("a",)})
    with (
        serving(first) as (cache, server, channel),
        client(channel, CDS, mode) as cds,
        client(channel, RDS, mode) as rds,
    ):
        cds.send(CDS)
        rds.send(RDS, ("web",))
        cds_response, rds_response = cds.receive(), rds.receive()
        cds.send(CDS, nonce=cds_response.nonce)  # type: ignore[attr-defined]
        rds.send(RDS, ("web",), nonce=rds_response.nonce)  # type: ignore[attr-defined]
        assert server.wait_converged(NODE, first.version, TIMEOUT)
        assert {s.serves for s in server.stream_statuses(NODE)} == {
            frozenset({"CDS"}),
            frozenset({"RDS"}),
        }
        second = world({"web": ("a", "b")})
        cache.set_snapshot(NODE, second)
        cds_update, rds_update = cds.receive(), rds.receive()
        assert "b" in names_of(cds_update)  # Delta sends what changed, SotW the full set
        assert names_of(rds_update) == ["web"]
        cds.send(CDS, nonce=cds_update.nonce)  # type: ignore[attr-defined]
        # The RDS stream has not ACKed: the node is not converged, whatever CDS did.
        assert server.wait_for(
            lambda: any(s.converged for s in server.stream_statuses(NODE)), TIMEOUT
        )
        assert not server.wait_converged(NODE, second.version, 0)
        rds.send(RDS, ("web",), nonce=rds_update.nonce)  # type: ignore[attr-defined]
        assert server.wait_converged(NODE, second.version, TIMEOUT)


def test_unary_fetch_is_unimplemented() -> None:
    with serving(world({"web": ("a",)})) as (_, _server, channel):
        stub = cds_pb2_grpc.ClusterDiscoveryServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.FetchClusters(sotw_request(CDS), timeout=TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
