"""Incremental (Delta) ADS: subscriptions, differences and removals.

Rules (on top of those in `stream.py` and `subscription.py`):
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

import attrs
from envoy.service.discovery.v3 import discovery_pb2
from immutables import Map

from sut.mutants import Mutant
from sut.xds.policy import ClientRequest, Outgoing, StreamPolicy
from sut.xds.resources import ADS_ORDER, References, Resource, ResourceType
from sut.xds.snapshot import Snapshot
from sut.xds.stream import AdsStream
from sut.xds.subscription import Subscription

__all__ = ["DeltaPolicy", "DeltaStream"]


class DeltaPolicy:
    """The `StreamPolicy` of incremental streams."""

    mode = "delta"

    def __init__(self) -> None:
        self._seen: dict[ResourceType, set[str]] = {kind: set() for kind in ADS_ORDER}
        """Names of each type in any snapshot the stream processed and not since removed; only
        the `removals-unscoped` mutant computes removals from it."""

    def read(self, request: object) -> ClientRequest:
        assert isinstance(request, discovery_pb2.DeltaDiscoveryRequest)
        return ClientRequest(
            type_url=request.type_url,
            node=request.node,
            nonce=request.response_nonce,
            error=request.error_detail.message if request.HasField("error_detail") else None,
            names=tuple(request.resource_names_subscribe),
            unsubscribed=tuple(request.resource_names_unsubscribe),
            initial=Map(dict(request.initial_resource_versions)),
        )

    def attached(self, stream: AdsStream, snapshot: Snapshot) -> None:
        for kind in ADS_ORDER:
            self._seen[kind].update(snapshot.of_type(kind))

    def subscribe(
        self, stream: AdsStream, subscription: Subscription, request: ClientRequest, *, first: bool
    ) -> Subscription:
        subscribe, unsubscribe = set(request.names), set(request.unsubscribed)
        wildcard, must_answer = subscription.wildcard, subscription.must_answer
        if first and (not subscribe or "*" in subscribe):
            wildcard = must_answer = True
        if "*" in subscribe:
            wildcard = True
        if "*" in unsubscribe:
            wildcard = False
        subscribe.discard("*")
        unsubscribe.discard("*")
        if request.initial:
            held = {
                name: self._held(stream, subscription, name, version)
                for name, version in request.initial.items()
            }
            subscription = attrs.evolve(subscription, known=subscription.known.update(held))
        ignore_resubscribe = Mutant.RESUBSCRIBE_IGNORED in stream.mutants
        if not ignore_resubscribe:
            subscription = subscription.forgetting(unsubscribe)
        resend = subscription.resend
        if not ignore_resubscribe:
            resend |= subscribe - set(request.initial)
        return attrs.evolve(
            subscription,
            wildcard=wildcard,
            must_answer=must_answer,
            subscribed=(subscription.subscribed - unsubscribe) | subscribe,
            resend=resend,
        )

    @staticmethod
    def _held(stream: AdsStream, subscription: Subscription, name: str, version: str) -> Resource:
        """What the client says it holds; content unknown unless the snapshot has that version."""
        kind = subscription.type
        current = stream.existing(kind).get(name) if stream.snapshot else None
        if current is not None and Mutant.INITIAL_VERSIONS_TRUSTED in stream.mutants:
            return current  # The bug: the name is trusted, the version never compared.
        if current is not None and current.version == version:
            return current
        return Resource(kind, name, b"", version, References())

    def pending(
        self, stream: AdsStream, subscription: Subscription, updates: list[Resource]
    ) -> list[Resource]:
        return updates

    def removals(self, stream: AdsStream, subscription: Subscription) -> list[str]:
        if stream.snapshot is None or not subscription.opened:
            return []
        existing = stream.existing(subscription.type)
        candidates = set(subscription.known) | subscription.resend
        if Mutant.REMOVALS_UNSCOPED in stream.mutants:
            # The bug: every name the server has seen for the node counts (on this stream or on
            # an earlier one), held or asked for or not.
            candidates |= self._node_seen(stream, subscription.type)
        elif not subscription.wildcard:
            candidates &= subscription.subscribed
        return sorted(name for name in candidates if name not in existing)

    def compose(
        self,
        stream: AdsStream,
        subscription: Subscription,
        updates: list[Resource],
        removals: list[str],
    ) -> Outgoing:
        assert stream.snapshot is not None
        return Outgoing(
            type=subscription.type,
            nonce=stream.response_nonce(stream.snapshot.version),
            version=stream.snapshot.version,
            resources=tuple(stream.carried(subscription, updates)),
            removed=tuple(removals),
        )

    def _node_seen(self, stream: AdsStream, resource_type: ResourceType) -> set[str]:
        """The mutant's memory: this stream's names, and the node's from earlier streams."""
        if stream.served is None or not stream.node_id:
            return self._seen[resource_type]
        shared = stream.served.names_seen(stream.node_id, resource_type)
        shared |= self._seen[resource_type]
        return shared

    def committed(self, stream: AdsStream, outgoing: Outgoing) -> None:
        self._seen[outgoing.type].difference_update(outgoing.removed)
        if Mutant.REMOVALS_UNSCOPED in stream.mutants:
            self._node_seen(stream, outgoing.type).difference_update(outgoing.removed)

    def to_proto(self, outgoing: Outgoing) -> discovery_pb2.DeltaDiscoveryResponse:
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


class DeltaStream(AdsStream):
    """An incremental stream core: `AdsStream` with the Delta policy."""

    def __init__(self, **options: Any) -> None:
        policy: StreamPolicy = DeltaPolicy()
        super().__init__(policy, **options)
