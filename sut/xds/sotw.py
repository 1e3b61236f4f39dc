"""State-of-the-world ADS: what a `DiscoveryRequest` means, and full-set responses.

Rules (on top of those in `stream.py` and `subscription.py`):
- A request whose nonce is the one in flight is an ACK, or a NACK when it carries error_detail.
- A request with a stale nonce is neither; its resource names are still honoured.
- LDS and CDS are wildcard while no request has named anything (legacy wildcard), or when a
  request names "*". Otherwise they are by name, like RDS and EDS: an empty list wants nothing.
- The first request for a type on a stream is always answered with everything it asks for.
- A name newly added to `resource_names` is answered even if unchanged and sent before.
- LDS/CDS responses carry the full set the client subscribes to: every Listener or Cluster by
  wildcard, else every requested one that exists (absence deletes, and tells a by-name client the
  name does not exist, so a request that adds names is answered even when none exists). RDS/EDS
  responses carry the requested resources that changed or must be answered, and never delete.
  Requested names that do not exist yet are remembered and sent when they appear.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
from envoy.service.discovery.v3 import discovery_pb2
from immutables import Map

from sut.mutants import Mutant
from sut.xds.policy import ClientRequest, Outgoing, StreamPolicy
from sut.xds.resources import Resource
from sut.xds.snapshot import Snapshot
from sut.xds.stream import AdsStream
from sut.xds.subscription import Subscription

__all__ = ["SotwPolicy", "SotwStream"]


class SotwPolicy:
    """The `StreamPolicy` of state-of-the-world streams."""

    mode = "sotw"

    def read(self, request: object) -> ClientRequest:
        assert isinstance(request, discovery_pb2.DiscoveryRequest)
        return ClientRequest(
            type_url=request.type_url,
            node=request.node,
            nonce=request.response_nonce,
            error=request.error_detail.message if request.HasField("error_detail") else None,
            version=request.version_info,
            names=tuple(sorted(set(request.resource_names))),
        )

    def subscribe(
        self, stream: AdsStream, subscription: Subscription, request: ClientRequest, *, first: bool
    ) -> Subscription:
        kind = subscription.type
        names = set(request.names)
        wildcard = subscription.wildcard
        if kind.is_wildcard_type:
            wildcard = "*" in names or (not names and not subscription.named)
        named = subscription.named or bool(names)
        names.discard("*")
        added = names - subscription.subscribed
        # The bug (mutant): the stream's bookkeeping ignores changes of resource names, so a
        # dropped name is still believed held and a re-added one is not answered.
        names_ignored = Mutant.SOTW_NEW_NAMES_IGNORED in stream.mutants
        if not names_ignored:
            subscription = subscription.forgetting(subscription.subscribed - names)
        subscription = attrs.evolve(
            subscription, wildcard=wildcard, named=named, subscribed=frozenset(names)
        )
        if first and request.version and stream.served is not None:
            # A reconnecting client holds what that version carried; it is answered anyway,
            # but what it holds decides what may be removed when (rule 5).
            held = stream.served.lookup(stream.node_id, kind, request.version)
            known = Map({name: held[name] for name in held if wildcard or name in names})
            subscription = attrs.evolve(subscription, known=known)
        if first or not request.nonce:
            # A (re)opened subscription gets an answer, whatever the server thinks it holds.
            answer = stream.desired_names(subscription) if stream.snapshot else names
            subscription = attrs.evolve(
                subscription,
                resend=subscription.resend | set(answer),
                must_answer=kind.is_wildcard_type,  # LDS/CDS: absence answers too
            )
        elif not names_ignored:
            # A full-state type answers new names even when none exists: absence says so.
            must_answer = subscription.must_answer or (kind.is_wildcard_type and bool(added))
            subscription = attrs.evolve(
                subscription, resend=subscription.resend | added, must_answer=must_answer
            )
        if Mutant.REQUEST_VERSION_TRUSTED in stream.mutants and self._is_current(
            stream, subscription, request
        ):
            subscription = self._trust_request_version(stream, subscription)
        return subscription

    @staticmethod
    def _is_current(stream: AdsStream, subscription: Subscription, request: ClientRequest) -> bool:
        """The request's version_info is the type version the stream would send now."""
        return (
            stream.snapshot is not None
            and bool(request.version)
            and request.version == stream.snapshot.type_version(subscription.type)
        )

    @staticmethod
    def _trust_request_version(stream: AdsStream, subscription: Subscription) -> Subscription:
        """The bug (mutant `request-version-trusted`): a request at the current version is
        taken to mean the client holds every name it asks for, at the current content, so
        nothing is (re)sent for it, not even names it newly asks for."""
        existing = stream.existing(subscription.type)
        held = {name: existing[name] for name in stream.desired_names(subscription)}
        if subscription.type.is_wildcard_type:
            known = Map(held)
        else:
            known = subscription.known.update(held)
        return attrs.evolve(
            subscription, known=known, resend=subscription.resend - set(held), must_answer=False
        )

    def pending(
        self, stream: AdsStream, subscription: Subscription, updates: list[Resource]
    ) -> list[Resource]:
        # The bug: decide by the type version alone, so a request that only adds a name at the
        # version last sent is never answered.
        if (
            Mutant.SOTW_NEW_NAMES_IGNORED in stream.mutants
            and updates
            and stream.snapshot is not None
            and subscription.last_sent is not None
            and not subscription.resend
            and _version_sent(subscription) == stream.snapshot.type_version(subscription.type)
        ):
            return []
        return updates

    def attached(self, stream: AdsStream, snapshot: Snapshot) -> None:
        pass

    def committed(self, stream: AdsStream, outgoing: Outgoing) -> None:
        if stream.served is not None:
            stream.served.record(
                stream.node_id, outgoing.type, outgoing.version, outgoing.resources
            )

    def removals(self, stream: AdsStream, subscription: Subscription) -> list[str]:
        kind = subscription.type
        if stream.snapshot is None or not subscription.opened or not kind.is_wildcard_type:
            return []
        existing = stream.snapshot.of_type(kind)
        return sorted(name for name in subscription.known if name not in existing)

    def compose(
        self,
        stream: AdsStream,
        subscription: Subscription,
        updates: list[Resource],
        removals: list[str],
    ) -> Outgoing:
        assert stream.snapshot is not None
        kind = subscription.type
        version = stream.snapshot.type_version(kind)
        if not kind.is_wildcard_type:
            # RDS/EDS: only what changed or must be answered; absence deletes nothing.
            carried = tuple(stream.carried(subscription, updates))
            return Outgoing(kind, stream.response_nonce(version), version, carried, ())
        existing = stream.snapshot.of_type(kind)
        wanted = existing.values() if subscription.wildcard else _subscribed(subscription, existing)
        # Deferred removals stay in the full set until make-before-break allows dropping them.
        kept = [
            resource
            for name, resource in sorted(subscription.known.items())
            if name not in existing and name not in removals
        ]
        resources = (*wanted, *kept)
        if kept:
            digest = hashlib.sha256("".join(f"{r.name}\0{r.version}\n" for r in resources).encode())
            version = digest.hexdigest()[:16]
        nonce = stream.response_nonce(version)
        return Outgoing(kind, nonce, version, resources, tuple(removals))

    def to_proto(self, outgoing: Outgoing) -> discovery_pb2.DiscoveryResponse:
        return discovery_pb2.DiscoveryResponse(
            version_info=outgoing.version,
            type_url=outgoing.type.type_url,
            nonce=outgoing.nonce,
            resources=[resource.to_any() for resource in outgoing.resources],
        )


def _subscribed(subscription: Subscription, existing: Mapping[str, Resource]) -> list[Resource]:
    """What a by-name LDS/CDS response carries: the requested names that exist."""
    return [resource for name, resource in existing.items() if name in subscription.subscribed]


def _version_sent(subscription: Subscription) -> str:
    sent = subscription.in_flight or subscription.last_sent
    return sent.version if sent else ""


class SotwStream(AdsStream):
    """A state-of-the-world stream core: `AdsStream` with the SotW policy."""

    def __init__(self, **options: Any) -> None:
        policy: StreamPolicy = SotwPolicy()
        super().__init__(policy, **options)
