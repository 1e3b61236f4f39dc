"""Incremental (Delta) ADS stream: subscriptions, differences and removals.

Rules (on top of those in `stream.py`):
- The first request for a type with no names, or with "*", is a wildcard subscription.
- `initial_resource_versions` is allowed only on the first request for a type on a stream; it
  seeds what the client holds, so unchanged resources are not sent again after a reconnect.
- A subscribe is answered with the resource even if the server believes the client has its latest
  version; a name that does not exist is answered in `removed_resources`.
- An unsubscribe forgets the client's version, so a later re-subscribe is answered.
- Subscription changes are honoured even when the request's nonce is stale; only the ACK/NACK
  meaning of a stale nonce is ignored.
- Responses carry only what changed; `system_version_info` is the snapshot version, for humans.
"""

from __future__ import annotations

from typing import Any

from envoy.service.discovery.v3 import discovery_pb2

from sut.errors import RemoteProtocolError
from sut.xds.resources import ADS_ORDER, References, Resource, ResourceType
from sut.xds.snapshot import Snapshot
from sut.xds.stream import AdsStream, Outgoing, _TypeState

__all__ = ["DeltaStream"]


class DeltaStream(AdsStream):
    mode = "delta"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._seen: dict[ResourceType, set[str]] = {kind: set() for kind in ADS_ORDER}
        """Names of each type in any snapshot the stream processed and not since removed; only
        the `removals-unscoped` mutant computes removals from it."""

    def attach(self, snapshot: Snapshot) -> None:
        super().attach(snapshot)
        for kind in ADS_ORDER:
            self._seen[kind].update(snapshot.of_type(kind))

    def receive(self, request: object) -> list[object]:
        assert isinstance(request, discovery_pb2.DeltaDiscoveryRequest)
        self._adopt_node(request.node.id)
        state = self._state(request.type_url)
        first = not state.opened
        if request.initial_resource_versions and not first:
            raise RemoteProtocolError(
                f"{state.type.short_name}: initial_resource_versions is only allowed on the"
                " first request for a type on a stream"
            )
        nonce = request.response_nonce
        error = request.error_detail.message if request.HasField("error_detail") else None
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)

        outcome = self._classify(state, nonce, error)
        self.record(
            direction="request",
            type_short=state.type.short_name,
            nonce=nonce,
            version="",
            names=tuple(sorted(subscribe)),
            unsubscribed=tuple(sorted(unsubscribe)),
            note=outcome,
            error_detail=error or "",
        )
        if outcome == "stale" and "stale-nonce-drops-subscription" in self.mutants:
            return []

        state.opened = True
        if first and (not subscribe or "*" in subscribe):
            state.wildcard = True
            state.must_answer = True
        if "*" in subscribe:
            state.wildcard = True
        if "*" in unsubscribe:
            state.wildcard = False
        initial = dict(request.initial_resource_versions)
        for name, version in initial.items():
            state.known[name] = self._held(state, name, version)

        ignore_resubscribe = "resubscribe-ignored" in self.mutants
        for name in unsubscribe:
            if name == "*":
                continue
            state.subscribed.discard(name)
            if not ignore_resubscribe:
                self._forget(state, [name])
        for name in subscribe:
            if name == "*":
                continue
            state.subscribed.add(name)
            if name not in initial and not ignore_resubscribe:
                state.resend.add(name)
        return self._flush()

    def _held(self, state: _TypeState, name: str, version: str) -> Resource:
        """What the client says it holds; content unknown unless the snapshot has that version."""
        current = self._existing(state.type).get(name) if self.snapshot else None
        if current is not None and "initial-versions-trusted" in self.mutants:
            return current  # The bug: the name is trusted, the version never compared.
        if current is not None and current.version == version:
            return current
        return Resource(state.type, name, b"", version, References())

    def _removals(self, state: _TypeState) -> list[str]:
        if self.snapshot is None or not state.opened:
            return []
        existing = self._existing(state.type)
        candidates = set(state.known) | state.resend
        if "removals-unscoped" in self.mutants:
            # The bug: every name the server has seen for the node counts (on this stream or on
            # an earlier one), held or asked for or not.
            candidates |= self._node_seen(state.type)
        elif not state.wildcard:
            candidates &= state.subscribed
        return sorted(name for name in candidates if name not in existing)

    def _compose(self, state: _TypeState, updates: list[Resource], removals: list[str]) -> Outgoing:
        assert self.snapshot is not None
        return Outgoing(
            type=state.type,
            nonce=self._response_nonce(self.snapshot.version),
            version=self.snapshot.version,
            resources=tuple(self._carried(state, updates)),
            removed=tuple(removals),
        )

    def _node_seen(self, resource_type: ResourceType) -> set[str]:
        """The mutant's memory: this stream's names, and the node's from earlier streams."""
        if self.served is None or not self.node_id:
            return self._seen[resource_type]
        shared = self.served.names_seen(self.node_id, resource_type)
        shared |= self._seen[resource_type]
        return shared

    def _commit(self, state: _TypeState, outgoing: Outgoing) -> object:
        self._seen[state.type].difference_update(outgoing.removed)
        if "removals-unscoped" in self.mutants:
            self._node_seen(state.type).difference_update(outgoing.removed)
        return super()._commit(state, outgoing)

    def _to_proto(self, outgoing: Outgoing) -> discovery_pb2.DeltaDiscoveryResponse:
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=outgoing.version,
            type_url=outgoing.type.type_url,
            nonce=outgoing.nonce,
            resources=[
                discovery_pb2.Resource(
                    name=resource.name, version=resource.version, resource=resource.to_any()
                )
                for resource in outgoing.resources
            ],
            removed_resources=list(outgoing.removed),
        )
