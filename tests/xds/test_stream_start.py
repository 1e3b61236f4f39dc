"""Stream start and end as effects, on the sans-IO core against a fake `SnapshotSource`.

The fake stands where the cache stands in the server; the `Adapter` below carries out effects
the way the gRPC adapter must, so these tests pin down the contract between the two.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from immutables import Map

from sut.errors import RemoteProtocolError
from sut.xds import (
    AdsStream,
    DeltaStream,
    ResourceType,
    Send,
    Snapshot,
    SnapshotSource,
    SnapshotWatcher,
    SotwStream,
    Unwatch,
    Watch,
)
from tests.xds.builders import NODE, delta_request, names_of, sotw_request, type_of, world

CDS, EDS = ResourceType.CLUSTER, ResourceType.ENDPOINT


class FakeSource:
    """Snapshots per node and their watchers, in memory; counts lookups."""

    def __init__(self) -> None:
        self.snapshots: dict[str, Snapshot] = {}
        self.watchers: dict[str, list[SnapshotWatcher]] = {}
        self.lookups: list[str] = []

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        self.lookups.append(node_id)
        return self.snapshots.get(node_id)

    def watch(self, node_id: str, notify: SnapshotWatcher) -> Callable[[], None]:
        self.watchers.setdefault(node_id, []).append(notify)
        return lambda: self.watchers[node_id].remove(notify)

    def publish(self, node_id: str, snapshot: Snapshot) -> None:
        self.snapshots[node_id] = snapshot
        for notify in list(self.watchers.get(node_id, ())):
            notify(snapshot)


class Adapter:
    """Carries out a core's effects as a server adapter must; collects what it sends."""

    def __init__(self, core: AdsStream, source: SnapshotSource) -> None:
        self.core, self.source = core, source
        self.sent: list[object] = []
        self.effects: list[object] = []
        self._unwatch: Callable[[], None] | None = None
        self._arrived: list[Snapshot] = []

    def request(self, request: object) -> list[object]:
        before = len(self.sent)
        self.carry_out(self.core.receive_effects(request, self.source))
        return self.sent[before:]

    def snapshots_arrived(self) -> list[object]:
        before = len(self.sent)
        while self._arrived:
            self.carry_out(self.core.on_snapshot_effects(self._arrived.pop(0)))
        return self.sent[before:]

    def carry_out(self, effects: list) -> None:
        for effect in effects:
            self.effects.append(effect)
            if isinstance(effect, Send):
                self.sent.append(effect.message)
            elif isinstance(effect, Watch):
                self._unwatch = self.source.watch(effect.node_id, self._arrived.append)
                current = self.source.get_snapshot(effect.node_id)
                if current is not None:
                    self._arrived.append(current)
            elif isinstance(effect, Unwatch):
                assert self._unwatch is not None
                self._unwatch()
                self._unwatch = None


def test_the_fake_source_is_a_snapshot_source():
    source: SnapshotSource = FakeSource()  # mypy checks the Protocol here
    assert source.get_snapshot(NODE) is None


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_the_first_request_is_answered_from_the_snapshot_current_at_start(mode):
    source = FakeSource()
    source.publish(NODE, world({"r1": ("c1",)}))
    core = DeltaStream() if mode == "delta" else SotwStream()
    adapter = Adapter(core, source)
    assert core.open() == []
    request = delta_request(CDS) if mode == "delta" else sotw_request(CDS)
    (cds,) = adapter.request(request)
    assert names_of(cds) == ["c1"]
    assert [type(e) for e in adapter.effects] == [Send, Watch]
    assert adapter.effects[-1] == Watch(NODE)
    assert len(source.watchers[NODE]) == 1
    # The snapshot the watch starts with is the one already held: nothing more to send.
    assert adapter.snapshots_arrived() == []


def test_a_node_without_a_snapshot_is_answered_once_one_is_published():
    source = FakeSource()
    core = SotwStream()
    adapter = Adapter(core, source)
    assert adapter.request(sotw_request(CDS)) == []
    assert adapter.effects == [Watch(NODE)]
    source.publish(NODE, world({"r1": ("c1", "c2")}))
    (cds,) = adapter.snapshots_arrived()
    assert names_of(cds) == ["c1", "c2"]


def test_a_snapshot_published_between_lookup_and_watch_is_not_lost():
    source = FakeSource()
    source.publish(NODE, world({"r1": ("c1",)}))
    core = SotwStream()
    adapter = Adapter(core, source)
    effects = core.receive_effects(sotw_request(CDS), source)
    # The control plane publishes before the adapter carries out the Watch.
    newer = world({"r1": ("c1", "c2")})
    source.publish(NODE, newer)
    adapter.carry_out(effects)
    assert adapter.snapshots_arrived() == []  # CDS is in flight: the change waits for its ACK
    assert core.snapshot == newer
    (first,) = [m for m in adapter.sent if type_of(m) is CDS]
    ack = sotw_request(CDS, nonce=first.nonce, version=first.version_info)
    (update,) = adapter.request(ack)
    assert names_of(update) == ["c1", "c2"]


def test_only_the_first_request_looks_up_and_watches():
    source = FakeSource()
    source.publish(NODE, world({"r1": ("c1",)}))
    adapter = Adapter(SotwStream(), source)
    adapter.request(sotw_request(CDS))
    adapter.snapshots_arrived()
    adapter.request(sotw_request(EDS, ["c1"]))
    assert source.lookups == [NODE, NODE]  # the core's lookup, then the Watch's
    assert [e for e in adapter.effects if isinstance(e, Watch)] == [Watch(NODE)]


def test_close_stops_the_watch_once():
    source = FakeSource()
    core = DeltaStream()
    adapter = Adapter(core, source)
    adapter.request(delta_request(CDS))
    adapter.carry_out(core.close("client closed the stream"))
    assert source.watchers[NODE] == []
    assert core.close("again") == []
    assert core.exchanges[-2].note == "stream closed: client closed the stream"


def test_a_stream_closed_before_any_request_watched_nothing():
    core = SotwStream()
    assert core.open() == []
    assert core.close("cancelled") == []
    assert [e.note for e in core.exchanges] == ["sotw stream opened", "stream closed: cancelled"]


def test_a_protocol_violation_at_start_is_the_clients_and_nothing_is_watched():
    source = FakeSource()
    core = SotwStream()
    with pytest.raises(RemoteProtocolError, match="node id"):
        core.receive_effects(sotw_request(CDS, node=""), source)
    assert source.watchers == {}
    assert core.close("protocol violation") == []


def test_the_status_carries_the_node_metadata_so_proxies_sharing_a_node_differ():
    metadata = {"instance": "proxy-a", "labels": {"zone": "z1"}, "ports": [1, 2]}
    first = SotwStream()
    first.receive(sotw_request(CDS, metadata=metadata))
    second = SotwStream()
    second.receive(sotw_request(CDS, metadata={"instance": "proxy-b"}))
    a, b = first.status(), second.status()
    assert a.node_id == b.node_id == NODE
    assert a.node_metadata["instance"] == "proxy-a"
    assert b.node_metadata["instance"] == "proxy-b"
    assert a.node_metadata["labels"] == Map({"zone": "z1"})
    assert a.node_metadata["ports"] == (1.0, 2.0)  # a Struct's numbers are doubles
    assert hash(a) != hash(b)  # a status is still a hashable value
    # Later requests (Envoy sends the node only once) do not change it.
    first.receive(sotw_request(EDS, ["c1"], metadata={"instance": "other"}))
    assert first.status().node_metadata["instance"] == "proxy-a"


def test_a_stream_without_node_metadata_has_none():
    stream = DeltaStream()
    stream.receive(delta_request(CDS))
    assert stream.status().node_metadata == Map()


def test_effects_are_values():
    message = discovery_pb2.DiscoveryResponse(nonce="1")
    assert Send(message) == Send(discovery_pb2.DiscoveryResponse(nonce="1"))
    assert Watch(NODE) == Watch(NODE)
    with pytest.raises(ValueError, match="node id"):
        Watch("")
