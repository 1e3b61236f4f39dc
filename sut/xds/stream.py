"""What one xDS stream holds, and when it may send: the core SotW and Delta share.

A stream is aggregated (ADS: every type) or per-type (the types it is built with; a request for
another type is the client's protocol violation). Rules 4 and 5 apply within a stream only.

Rules of this module (each is a rule of the xDS protocol or of make-before-break):

1. Per type, at most one response is in flight; the next waits for its ACK or NACK
   (`subscription.py` keeps this per type, in its transition table).
2. `known` is what the server believes the client holds. A type has *updates* when a desired
   resource differs from `known`, or its name is marked for *resend* (a subscription that must be
   answered; a ClusterLoadAssignment whose Cluster changed).
3. A NACK keeps `known` at the rejected content, so the rejected config is never sent again until
   the snapshot changes it; the client keeps its previous config.
4. Make-before-break, per snapshot: CDS first; EDS once the CDS carrying its Cluster has been
   sent; LDS once CDS and EDS are ACKed; RDS and SDS once CDS and EDS are ACKed and LDS is sent.
5. Removals go last: a Cluster or its endpoints are removed only once LDS and RDS have settled, a
   RouteConfiguration or Secret only once LDS has settled, so nothing Envoy uses disappears first.
   On a new stream the server does not know what the client still holds from the previous one
   until it has subscribed: "settled" then also needs LDS opened, and RDS opened unless no
   Listener the client holds names a RouteConfiguration. A client that never subscribes to
   Listeners on the stream is never told of removals there (it keeps stale entries, harmlessly).
   Saying that a name asked for does not exist, when the client uses nothing of it, is no removal.
   Rules 4 and 5 are the rows of `ordering.py`; they wait only for what the client can ask for.
6. A stream is *converged* on a snapshot when no type has anything in flight or left to send.
7. What the client holds keeps what it references: while a Cluster or Listener the stream sent is
   still held by the client, what it names is served from its last content even if the snapshot
   has dropped it (`retained.py`), or a warming Cluster would wait for its endpoints forever.
8. Stream start is protocol too: the node's current snapshot is attached before the first request
   is answered, and the node is watched once its id is known (`receive_effects`).

A `StreamPolicy` (`sotw.py`, `delta.py`) decides what a request means and how a response is
shaped; this module decides what to send and when.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from google.protobuf import json_format
from immutables import Map

from sut.errors import RemoteProtocolError
from sut.mutants import Mutant, Mutants
from sut.xds import ordering
from sut.xds.effects import Effect, Send, Unwatch, Watch
from sut.xds.ordering_view import OrderingView
from sut.xds.policy import ClientRequest, Outgoing, StreamPolicy
from sut.xds.resources import ADS_ORDER, Resource, ResourceType
from sut.xds.retained import RetainedReferences
from sut.xds.served import ServedSets
from sut.xds.snapshot import Snapshot
from sut.xds.source import SnapshotSource
from sut.xds.status import Exchange, StreamStatus, TypeStatus, frozen_metadata
from sut.xds.subscription import (
    Nack,
    NackRecord,
    Sent,
    SentResponse,
    Stale,
    Subscription,
    classify,
)

__all__ = [
    "AdsStream",
    "ClientRequest",
    "Exchange",
    "NackRecord",
    "Outgoing",
    "StreamPolicy",
    "StreamStatus",
    "TypeStatus",
]

Clock = Callable[[], float]
MaybeServed = Mapping[str, Resource] | None

_stream_ids = itertools.count(1)

_UNREQUESTED_TYPES = (ResourceType.ENDPOINT, ResourceType.ROUTE)
"""Types whose responses carry every resource under the `unrequested-resources` mutant."""


class AdsStream:
    """Sans-IO core of one ADS stream: feed it requests and snapshots, get responses back."""

    def __init__(
        self,
        policy: StreamPolicy,
        *,
        mutants: Mutants = Mutants(),
        clock: Clock = time.monotonic,
        on_exchange: Callable[[Exchange], None] | None = None,
        sequence: Iterable[int] | None = None,
        served: ServedSets | None = None,
        types: frozenset[ResourceType] | None = None,
    ) -> None:
        if types is not None and not types:
            raise ValueError("a per-type stream serves at least one type")
        self.policy = policy
        self.types = types
        """The types a per-type stream serves; None for an aggregated (ADS) stream."""
        self.stream_id = next(_stream_ids)
        self.served = served
        """What the server sent each node under each version, across streams (SotW uses it)."""
        self.mutants = mutants
        self.node_id = ""
        self.node_metadata: Map[str, object] = Map()
        self.snapshot: Snapshot | None = None
        self._clock = clock
        self._nonces = itertools.count(1)
        self._subscriptions = {kind: Subscription(kind) for kind in self.served_types}
        self._retained = RetainedReferences()
        """Rule 7: the last content of every name a resource sent to the client references."""
        self._watching = False
        self._view = OrderingView(self)
        self.exchanges: collections.deque[Exchange] = collections.deque(maxlen=5000)
        self._on_exchange = on_exchange
        self._sequence = iter(sequence) if sequence is not None else itertools.count(1)

    @property
    def mode(self) -> str:
        return self.policy.mode

    @property
    def served_types(self) -> tuple[ResourceType, ...]:
        """The stream's types, in ADS order."""
        return tuple(kind for kind in ADS_ORDER if self.types is None or kind in self.types)

    # ------------------------------------------------------- inputs as effects

    def open(self) -> list[Effect]:
        """The client opened the stream."""
        self._event(f"{self.mode} stream opened")
        return []

    def receive_effects(self, request: object, source: SnapshotSource) -> list[Effect]:
        """A request arrived (rule 8): the first one attaches the node's current snapshot from
        `source` before it is answered, and ends in a `Watch` of the node."""
        read = self.policy.read(request)
        if not self._watching and self.snapshot is None:
            node_id = getattr(read.node, "id", "")
            current = source.get_snapshot(node_id) if node_id else None
            if current is not None:
                self.attach(current)
        effects: list[Effect] = [Send(message) for message in self._receive(read)]
        if not self._watching and self.node_id:
            self._watching = True
            effects.append(Watch(self.node_id))
        return effects

    def on_snapshot_effects(self, snapshot: Snapshot) -> list[Effect]:
        """The watched node has `snapshot` (the one current when the watch began, or newer)."""
        return [Send(message) for message in self.on_snapshot(snapshot)]

    def close(self, reason: str) -> list[Effect]:
        """The stream ended, for `reason`; stop the watch if one was started."""
        self._event(f"stream closed: {reason}")
        if not self._watching:
            return []
        self._watching = False
        return [Unwatch()]

    # ------------------------------------------------------------------ inputs

    def on_snapshot(self, snapshot: Snapshot) -> list[object]:
        """The cache has a new snapshot for this node: send what make-before-break allows."""
        self.attach(snapshot)
        return self._flush()

    def attach(self, snapshot: Snapshot) -> None:
        """Hold `snapshot` without sending anything yet (before the first request, so versions
        the client reports are matched against real content)."""
        self.snapshot = snapshot
        for kind, subscription in self._subscriptions.items():
            existing = snapshot.of_type(kind)
            learned = {
                name: current
                for name, held in subscription.known.items()
                if not held.body
                and (current := existing.get(name)) is not None
                and current.version == held.version
            }
            if learned:
                # A version the client reported: now we know its content and references.
                known = subscription.known.update(learned)
                self._subscriptions[kind] = attrs.evolve(subscription, known=known)
        self._retained.refresh(snapshot, self._referenced_by_client)
        self.policy.attached(self, snapshot)

    def receive(self, request: object) -> list[object]:
        """A request arrived from the client; returns the responses to send, in order."""
        return self._receive(self.policy.read(request))

    def _receive(self, request: ClientRequest) -> list[object]:
        self._adopt_node(request.node)
        previous = self._subscription(request.type_url)
        kind = classify(
            previous, request.nonce, request.error, claims_initial=bool(request.initial)
        )
        subscription = previous.apply(kind)
        if isinstance(kind, Nack) and Mutant.NACK_LOOP in self.mutants:
            # The bug: the NACK is read as a plain request at the last accepted version, so
            # the stream forgets it sent the rejected content and sends it again at once.
            assert previous.in_flight is not None
            subscription = attrs.evolve(subscription, known=previous.in_flight.known_before)
        self.record(
            direction="request",
            type_short=previous.type.short_name,
            nonce=request.nonce,
            version=request.version,
            names=tuple(sorted(request.names)),
            unsubscribed=tuple(sorted(request.unsubscribed)),
            note=kind.note,
            error_detail=request.error or "",
        )
        if isinstance(kind, Stale) and Mutant.STALE_NONCE_DROPS_SUBSCRIPTION in self.mutants:
            return []
        subscription = self.policy.subscribe(self, subscription, request, first=not previous.opened)
        self._subscriptions[subscription.type] = subscription
        return self._flush()

    # ------------------------------------------------------------ introspection

    def status(self) -> StreamStatus:
        return StreamStatus(
            stream_id=self.stream_id,
            mode=self.mode,
            node_id=self.node_id,
            snapshot_version=self.snapshot.version if self.snapshot else "",
            converged=self.converged(),
            types=tuple(self._type_status(s) for s in self._subscriptions.values()),
            node_metadata=self.node_metadata,
            serves=frozenset(kind.short_name for kind in self.served_types),
            aggregated=self.types is None,
        )

    def subscription(self, resource_type: ResourceType) -> Subscription:
        """A type the stream does not serve reads as never opened and holding nothing."""
        subscription = self._subscriptions.get(resource_type)
        return Subscription(resource_type) if subscription is None else subscription

    def converged(self) -> bool:
        """Nothing in flight and nothing left to send, for the snapshot the stream holds."""
        if self.snapshot is None:
            return False
        for subscription in self._subscriptions.values():
            if not subscription.opened:
                continue
            if subscription.in_flight is not None or subscription.must_answer:
                return False
            if self.updates(subscription) or self.policy.removals(self, subscription):
                return False
        return True

    def _type_status(self, subscription: Subscription) -> TypeStatus:
        acked = subscription.acked
        return TypeStatus(
            type_short=subscription.type.short_name,
            opened=subscription.opened,
            wildcard=subscription.wildcard,
            subscribed=subscription.subscribed,
            acked_version=acked.version if acked else "",
            acked_snapshot_version=acked.snapshot_version if acked else "",
            in_flight_nonce=subscription.in_flight.nonce if subscription.in_flight else "",
            pending_updates=frozenset(r.name for r in self.updates(subscription)),
            pending_removals=frozenset(self.policy.removals(self, subscription)),
            nacks=subscription.nacks,
            responses_sent=subscription.responses_sent,
            last_sent_nonce=subscription.last_sent.nonce if subscription.last_sent else "",
        )

    def record(self, **fields: object) -> Exchange:
        """Append one exchange (a message, or a stream event) to the stream's log."""
        exchange = Exchange(
            seq=next(self._sequence),
            at=self._clock(),
            stream_id=self.stream_id,
            **fields,  # type: ignore[arg-type]
        )
        self.exchanges.append(exchange)
        if self._on_exchange is not None:
            self._on_exchange(exchange)
        return exchange

    def _event(self, note: str) -> None:
        kind = "ADS" if self.types is None else "/".join(k.short_name for k in self.served_types)
        self.record(direction="event", type_short=kind, nonce="", version="", note=note)

    # --------------------------------------------------- bookkeeping of requests

    def _subscription(self, type_url: str) -> Subscription:
        """A per-type stream serves its types only; one type alone may go unnamed."""
        if not type_url and len(self._subscriptions) == 1:
            return next(iter(self._subscriptions.values()))
        if not type_url:
            raise RemoteProtocolError("request without type_url on an aggregated stream")
        try:
            kind = ResourceType.from_type_url(type_url)
        except ValueError as error:
            raise RemoteProtocolError(str(error)) from error
        if kind not in self._subscriptions:
            serves = "/".join(k.short_name for k in self.served_types)
            raise RemoteProtocolError(f"{kind.short_name} request on a {serves} stream")
        return self._subscriptions[kind]

    def _adopt_node(self, node: Any) -> None:
        if self.node_id:
            return
        node_id = getattr(node, "id", "")
        if not node_id:
            raise RemoteProtocolError("the first request on a stream must carry a node id")
        self.node_id = node_id
        if node.HasField("metadata"):
            self.node_metadata = frozen_metadata(json_format.MessageToDict(node.metadata))

    def response_nonce(self, version: str) -> str:
        """A fresh nonce per response, so a nonce names exactly one response of the stream."""
        if Mutant.NONCE_FROM_VERSION in self.mutants:
            # The bug: responses at one version share a nonce, so a request quoting an older
            # response at that version reads as the ACK of the newest.
            return version
        return f"{self.stream_id}-{next(self._nonces)}"

    # ------------------------------------------------------- what must be sent

    def existing(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """What the stream serves of a type: the snapshot, plus what rule 7 retains."""
        assert self.snapshot is not None
        current = self.snapshot.of_type(resource_type)
        if Mutant.WARMING_CLUSTER_STARVED in self.mutants:
            return current  # The bug: only the snapshot counts, so a warming Cluster starves.
        return self._retained.serve(current, resource_type, self._referenced_by_client)

    def _referenced_by_client(self, resource_type: ResourceType) -> set[str]:
        return {
            name
            for subscription in self._subscriptions.values()
            for held in subscription.known.values()
            for name in held.references.of_type(resource_type)
        }

    def desired_names(self, subscription: Subscription, existing: MaybeServed = None) -> list[str]:
        existing = self.existing(subscription.type) if existing is None else existing
        if subscription.wildcard:
            return list(existing)
        return sorted(name for name in subscription.subscribed if name in existing)

    def updates(self, subscription: Subscription) -> list[Resource]:
        """What the client lacks of the subscription's type (rule 2), before rules 4 and 5."""
        if self.snapshot is None or not subscription.opened:
            return []
        existing = self.existing(subscription.type)
        known, resend = subscription.known, subscription.resend
        updates = []
        for name in self.desired_names(subscription, existing):
            held, resource = known.get(name), existing[name]
            if held is None or held.version != resource.version or name in resend:
                updates.append(resource)
        return self.policy.pending(self, subscription, updates)

    # -------------------------------------------- make-before-break (ordering.py)

    def _gate_open(self, resource_type: ResourceType) -> bool:
        """Rule 4 for a whole type: may anything of it be sent now?"""
        if Mutant.UNORDERED_PUSH in self.mutants:
            return True
        return ordering.ready(self._view, self._row(ordering.UPDATES, resource_type))

    def _row(
        self, table: Mapping[ResourceType, ordering.Waits], resource_type: ResourceType
    ) -> ordering.Waits:
        return ordering.within(table[resource_type], self.types)

    def _sendable_updates(self, subscription: Subscription) -> list[Resource]:
        """The updates make-before-break allows now (rule 4)."""
        updates = self.updates(subscription)
        if not updates or Mutant.UNORDERED_PUSH in self.mutants:
            return updates
        waits = self._row(ordering.UPDATES, subscription.type)
        if not ordering.ready(self._view, waits):
            return []
        waiting = ordering.waiting_names(self._view, subscription.type, waits)
        return [resource for resource in updates if resource.name not in waiting]

    def _may_send_removals(self, resource_type: ResourceType) -> bool:
        if Mutant.UNORDERED_PUSH in self.mutants or Mutant.REMOVALS_NOT_DEFERRED in self.mutants:
            return True  # The bugs: removals go out with the first response of their type.
        return ordering.ready(self._view, self._row(ordering.REMOVALS, resource_type))

    def _unused(self, subscription: Subscription, names: list[str]) -> list[str]:
        """Of `names`, those asked for that nothing the client holds is or names (rule 5); none
        while it holds content the stream does not know (a reconnect's unmatched versions)."""
        if not names:
            return []
        if any(not r.body for s in self._subscriptions.values() for r in s.known.values()):
            return []
        used = self._referenced_by_client(subscription.type) | set(subscription.known)
        return [name for name in names if name in subscription.resend and name not in used]

    def _send_order(self) -> Sequence[ResourceType]:
        if Mutant.UNORDERED_PUSH in self.mutants:
            return tuple(reversed(ADS_ORDER))
        return ADS_ORDER

    def _flush(self) -> list[object]:
        """Send, in ADS order, every response the rules above allow right now."""
        if self.snapshot is None:
            return []
        responses: list[object] = []
        for resource_type in self._send_order():
            subscription = self._subscriptions.get(resource_type)
            if subscription is None:
                continue
            if not subscription.opened or subscription.in_flight is not None:
                continue
            updates = self._sendable_updates(subscription)
            removals = self.policy.removals(self, subscription)
            if not self._may_send_removals(resource_type):
                removals = self._unused(subscription, removals)
            # Answered even if empty: a wildcard just opened (Envoy waits for it to initialize),
            # names newly asked of LDS/CDS (absence tells a by-name client they do not exist).
            answer_anyway = subscription.must_answer and self._gate_open(resource_type)
            if Mutant.DELETION_NOT_A_CHANGE in self.mutants and not updates and not answer_anyway:
                continue  # The bug: only a changed resource counts as a change.
            if not updates and not removals and not answer_anyway:
                continue
            outgoing = self.policy.compose(self, subscription, updates, removals)
            responses.append(self._commit(subscription, outgoing))
        return responses

    def carried(self, subscription: Subscription, updates: list[Resource]) -> list[Resource]:
        """The resources a response carries: the updates (each policy adds its own rules)."""
        if Mutant.UNREQUESTED_RESOURCES in self.mutants and subscription.type in _UNREQUESTED_TYPES:
            # The bug: every resource the stream serves goes out, subscribed or not.
            return list(self.existing(subscription.type).values())
        return updates

    def _commit(self, subscription: Subscription, outgoing: Outgoing) -> object:
        assert self.snapshot is not None
        known_before = subscription.known
        sent_names = {resource.name for resource in outgoing.resources}
        known = known_before.mutate()
        for resource in outgoing.resources:
            known[resource.name] = resource
        for name in outgoing.removed:
            known.pop(name, None)
        subscription = attrs.evolve(
            subscription,
            known=known.finish(),
            resend=subscription.resend - sent_names - set(outgoing.removed),
        )
        self._subscriptions[subscription.type] = subscription
        self._retained.remember(self.snapshot, outgoing.resources)
        if subscription.type is ResourceType.CLUSTER:
            self._resend_endpoints_of_updated_clusters(known_before, outgoing.resources)
        response = SentResponse(
            nonce=outgoing.nonce,
            version=outgoing.version,
            snapshot_version=self.snapshot.version,
            names=tuple(sorted(sent_names)),
            known_before=known_before,
        )
        self._subscriptions[subscription.type] = subscription.apply(Sent(response))
        self.record(
            direction="response",
            type_short=subscription.type.short_name,
            nonce=outgoing.nonce,
            version=outgoing.version,
            names=response.names,
            removed=tuple(sorted(outgoing.removed)),
        )
        self.policy.committed(self, outgoing)
        return self.policy.to_proto(outgoing)

    def _resend_endpoints_of_updated_clusters(
        self, known_before: Mapping[str, Resource], sent: Iterable[Resource]
    ) -> None:
        """An updated Cluster warms until it gets its ClusterLoadAssignment again."""
        if Mutant.EDS_NOT_RESENT_ON_CDS in self.mutants:
            return
        marked: set[str] = set()
        for cluster in sent:
            previous = known_before.get(cluster.name)
            if previous is None or previous == cluster:
                continue
            marked.update(cluster.references.endpoints)
        if marked and ResourceType.ENDPOINT in self._subscriptions:
            endpoints = self._subscriptions[ResourceType.ENDPOINT]
            self._subscriptions[ResourceType.ENDPOINT] = attrs.evolve(
                endpoints, resend=endpoints.resend | marked
            )
