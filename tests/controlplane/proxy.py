"""A proxy played on the sans-IO stream cores, for control-plane tests without Envoy.

It subscribes like Envoy (LDS and CDS as wildcards, every other name it knows), ACKs every
response, and keeps what it was told, so a test can say what a proxy would hold after the
control plane published something.
"""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from sut.mutants import Mutants
from sut.xds import ADS_ORDER, AdsStream, DeltaStream, ResourceType, Snapshot, SotwStream
from tests.xds.builders import delta_request, sotw_request, type_of

__all__ = ["Proxy"]


class Proxy:
    """One proxy on one stream; `holding` is what it kept from a previous control plane."""

    def __init__(
        self, mode: str, *, mutants: Mutants = Mutants(), holding: Snapshot | None = None
    ) -> None:
        self.mode = mode
        self.stream: AdsStream = (DeltaStream if mode == "delta" else SotwStream)(mutants=mutants)
        self.holding = holding
        self.config: dict[ResourceType, dict[str, bytes]] = {
            kind: {name: r.body for name, r in holding.of_type(kind).items()} if holding else {}
            for kind in ADS_ORDER
        }
        """What the proxy holds: per type, name -> serialized content."""
        self._names: dict[ResourceType, list[str]] = {}

    def connect(self, snapshot: Snapshot) -> list[object]:
        """Open every type on a new stream whose server holds `snapshot`; ACK until quiet."""
        self.stream.attach(snapshot)
        responses: list[object] = []
        for kind in ADS_ORDER:
            known = self.holding if self.holding is not None else snapshot
            self._names[kind] = [] if kind.is_wildcard_type else sorted(known.of_type(kind))
            responses += self.stream.receive(self._first_request(kind))
        return self._settle(responses)

    def update(self, snapshot: Snapshot) -> list[object]:
        """The server's snapshot changes; returns every response until the stream is quiet."""
        return self._settle(self.stream.on_snapshot(snapshot))

    def holds(self, snapshot: Snapshot, kind: ResourceType) -> bool:
        """The proxy holds exactly the content `snapshot` has of `kind`."""
        return self.config[kind] == {name: r.body for name, r in snapshot.of_type(kind).items()}

    def _first_request(self, kind: ResourceType) -> object:
        names = self._names[kind]
        if self.mode == "delta":
            initial = (
                {name: r.version for name, r in self.holding.of_type(kind).items()}
                if self.holding is not None
                else {}
            )
            return delta_request(kind, names, initial=initial)
        version = self.holding.type_version(kind) if self.holding is not None else ""
        return sotw_request(kind, names, version=version)

    def _settle(self, responses: list[object]) -> list[object]:
        pending, seen = list(responses), []
        while pending:
            response = pending.pop(0)
            seen.append(response)
            self._apply(response)
            pending += self.stream.receive(self._ack(response))
        return seen

    def _ack(self, response: object) -> object:
        kind = type_of(response)
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            return delta_request(kind, nonce=response.nonce)
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        return sotw_request(
            kind, self._names[kind], nonce=response.nonce, version=response.version_info
        )

    def _apply(self, response: object) -> None:
        kind = type_of(response)
        held = self.config[kind]
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            for resource in response.resources:
                held[resource.name] = resource.resource.value
            for name in response.removed_resources:
                held.pop(name, None)
            return
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        if kind.is_wildcard_type:
            held.clear()  # a full state of the world: absence deletes
        for packed in response.resources:
            message = kind.message_class()
            packed.Unpack(message)
            name = message.cluster_name if kind is ResourceType.ENDPOINT else message.name
            held[name] = packed.value
