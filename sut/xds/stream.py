"""What one ADS stream holds, and when it may send: the part SotW and Delta share.

Rules of this module (each is a rule of the xDS protocol or of make-before-break):

1. Per type, at most one response is in flight; the next waits for its ACK or NACK.
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
6. A stream is *converged* on a snapshot when no type has anything in flight or left to send.
7. What the client holds keeps what it references: while a Cluster or Listener the stream sent is
   still held by the client, the ClusterLoadAssignments, RouteConfigurations and Secrets it names
   are served from their last content even if the snapshot has dropped them. A Cluster sent just
   before the snapshot deleted it (a held connection) warms, and Envoy ACKs CDS only once it is
   warm; withholding its endpoints until that ACK would deadlock until `initial_fetch_timeout`.

The mode-specific classes (`SotwStream`, `DeltaStream`) decide what a request means and how a
response is shaped; this module decides what to send and when.
"""

from __future__ import annotations

import abc
import collections
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from sut.errors import RemoteProtocolError
from sut.mutants import Mutants
from sut.xds.resources import ADS_ORDER, Resource, ResourceType
from sut.xds.served import ServedSets
from sut.xds.snapshot import Snapshot

__all__ = [
    "AdsStream",
    "Exchange",
    "NackRecord",
    "Outgoing",
    "StreamStatus",
    "TypeStatus",
]

Clock = Callable[[], float]

_stream_ids = itertools.count(1)

_RETAINED_TYPES = (ResourceType.ENDPOINT, ResourceType.ROUTE, ResourceType.SECRET)
"""Types the client asks for by name because a resource it holds names them (rule 7)."""

_UNREQUESTED_TYPES = (ResourceType.ENDPOINT, ResourceType.ROUTE)
"""Types whose responses carry every resource under the `unrequested-resources` mutant."""


@attrs.frozen
class Exchange:
    """One message on the wire, as the harness prints it in a counterexample."""

    seq: int
    at: float
    stream_id: int
    direction: str  # "request", "response" or "event"
    type_short: str
    nonce: str
    version: str
    names: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unsubscribed: tuple[str, ...] = ()
    note: str = ""
    error_detail: str = ""

    def describe(self) -> str:
        arrow = {"request": "envoy -> server", "response": "server -> envoy"}.get(
            self.direction, "--"
        )
        parts = [f"#{self.seq} stream {self.stream_id} {arrow} {self.type_short}"]
        if self.note:
            parts.append(self.note)
        if self.version:
            parts.append(f"version={self.version}")
        if self.nonce:
            parts.append(f"nonce={self.nonce}")
        if self.names:
            parts.append("names=[" + ", ".join(self.names) + "]")
        if self.unsubscribed:
            parts.append("unsubscribe=[" + ", ".join(self.unsubscribed) + "]")
        if self.removed:
            parts.append("removed=[" + ", ".join(self.removed) + "]")
        if self.error_detail:
            parts.append(f"error={self.error_detail!r}")
        return " ".join(parts)


@attrs.frozen
class NackRecord:
    nonce: str
    version: str
    snapshot_version: str
    names: tuple[str, ...]
    message: str


@attrs.frozen
class Outgoing:
    """A response the stream decided to send, before the mode shapes it into a proto."""

    type: ResourceType
    nonce: str
    version: str
    resources: tuple[Resource, ...]
    removed: tuple[str, ...]


@attrs.define
class _InFlight:
    nonce: str
    version: str
    snapshot_version: str
    names: tuple[str, ...]
    known_before: dict[str, Resource]


@attrs.define
class _TypeState:
    type: ResourceType
    opened: bool = False
    wildcard: bool = False
    subscribed: set[str] = attrs.Factory(set)
    known: dict[str, Resource] = attrs.Factory(dict)
    resend: set[str] = attrs.Factory(set)
    in_flight: _InFlight | None = None
    last_sent_nonce: str = ""
    last_sent_version: str = ""
    must_answer: bool = False
    """A wildcard subscription was (re)opened and has not been answered yet."""
    acked_version: str = ""
    acked_snapshot_version: str = ""
    acked_nonce: str = ""
    nacks: list[NackRecord] = attrs.Factory(list)
    responses_sent: int = 0


@attrs.frozen
class TypeStatus:
    """Introspection of one type on one stream, for the harness."""

    type_short: str
    opened: bool
    wildcard: bool
    subscribed: frozenset[str]
    acked_version: str
    acked_snapshot_version: str
    in_flight_nonce: str
    pending_updates: frozenset[str]
    pending_removals: frozenset[str]
    nacks: tuple[NackRecord, ...]
    responses_sent: int


@attrs.frozen
class StreamStatus:
    stream_id: int
    mode: str
    node_id: str
    snapshot_version: str
    converged: bool
    types: tuple[TypeStatus, ...]

    def of_type(self, resource_type: ResourceType) -> TypeStatus:
        for status in self.types:
            if status.type_short == resource_type.short_name:
                return status
        raise KeyError(resource_type)


class AdsStream(abc.ABC):
    """Sans-IO core of one ADS stream: feed it requests and snapshots, get responses back."""

    mode: str = ""

    def __init__(
        self,
        *,
        mutants: Mutants = Mutants(),
        clock: Clock = time.monotonic,
        on_exchange: Callable[[Exchange], None] | None = None,
        sequence: Iterable[int] | None = None,
        served: ServedSets | None = None,
    ) -> None:
        self.stream_id = next(_stream_ids)
        self.served = served
        """What the server sent each node under each version, across streams (SotW uses it)."""
        self.mutants = mutants
        self.node_id = ""
        self.snapshot: Snapshot | None = None
        self._clock = clock
        self._nonces = itertools.count(1)
        self._types = {kind: _TypeState(kind) for kind in ADS_ORDER}
        self._retained: dict[ResourceType, dict[str, Resource]] = {kind: {} for kind in ADS_ORDER}
        """Rule 7: the last content of every name a resource sent to the client references."""
        self.exchanges: collections.deque[Exchange] = collections.deque(maxlen=5000)
        self._on_exchange = on_exchange
        self._sequence = iter(sequence) if sequence is not None else itertools.count(1)

    # ----------------------------------------------------------------- inputs

    def on_snapshot(self, snapshot: Snapshot) -> list[object]:
        """The cache has a new snapshot for this node: send what make-before-break allows."""
        self.attach(snapshot)
        return self._flush()

    def attach(self, snapshot: Snapshot) -> None:
        """Hold `snapshot` without sending anything yet (the adapter does this before the
        first request, so versions the client reports are matched against real content)."""
        self.snapshot = snapshot
        for state in self._types.values():
            existing = snapshot.of_type(state.type)
            for name, held in list(state.known.items()):
                current = existing.get(name)
                if not held.body and current is not None and current.version == held.version:
                    # A version the client reported: now we know its content and references.
                    state.known[name] = current
        self._refresh_retained()

    @abc.abstractmethod
    def receive(self, request: object) -> list[object]:
        """A request arrived from the client; returns the responses to send, in order."""

    # ---------------------------------------------------------- introspection

    def status(self) -> StreamStatus:
        return StreamStatus(
            stream_id=self.stream_id,
            mode=self.mode,
            node_id=self.node_id,
            snapshot_version=self.snapshot.version if self.snapshot else "",
            converged=self.converged(),
            types=tuple(self._type_status(state) for state in self._types.values()),
        )

    def converged(self) -> bool:
        """Nothing in flight and nothing left to send, for the snapshot the stream holds."""
        if self.snapshot is None:
            return False
        for state in self._types.values():
            if not state.opened:
                continue
            if state.in_flight is not None:
                return False
            if self._updates(state) or self._removals(state) or state.must_answer:
                return False
        return True

    def _type_status(self, state: _TypeState) -> TypeStatus:
        return TypeStatus(
            type_short=state.type.short_name,
            opened=state.opened,
            wildcard=state.wildcard,
            subscribed=frozenset(state.subscribed),
            acked_version=state.acked_version,
            acked_snapshot_version=state.acked_snapshot_version,
            in_flight_nonce=state.in_flight.nonce if state.in_flight else "",
            pending_updates=frozenset(r.name for r in self._updates(state)),
            pending_removals=frozenset(self._removals(state)),
            nacks=tuple(state.nacks),
            responses_sent=state.responses_sent,
        )

    # ------------------------------------------------ bookkeeping for subclasses

    def _state(self, type_url: str) -> _TypeState:
        if not type_url:
            raise RemoteProtocolError("request without type_url on an aggregated stream")
        try:
            return self._types[ResourceType.from_type_url(type_url)]
        except ValueError as error:
            raise RemoteProtocolError(str(error)) from error

    def _adopt_node(self, node_id: str) -> None:
        if not self.node_id:
            if not node_id:
                raise RemoteProtocolError("the first request on a stream must carry a node id")
            self.node_id = node_id

    def _next_nonce(self) -> str:
        return f"{self.stream_id}-{next(self._nonces)}"

    def _response_nonce(self, version: str) -> str:
        """A fresh nonce per response, so a nonce names exactly one response of the stream."""
        if "nonce-from-version" in self.mutants:
            # The bug: responses at one version share a nonce, so a request quoting an older
            # response at that version reads as the ACK of the newest.
            return version
        return self._next_nonce()

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

    def _classify(self, state: _TypeState, nonce: str, error_message: str | None) -> str:
        """What a request's nonce makes of it: first, request, ack, nack or stale.

        An empty nonce opens or re-opens a subscription; the nonce in flight settles that
        response; the nonce last sent (already settled) is a plain request; any other is stale.
        """
        if not nonce:
            return "request" if state.opened else "first"
        if state.in_flight is not None and nonce == state.in_flight.nonce:
            return self._settle_in_flight(state, error_message)
        if nonce == state.last_sent_nonce:
            return "request"
        return "stale"

    def _settle_in_flight(self, state: _TypeState, error_message: str | None) -> str:
        in_flight = state.in_flight
        assert in_flight is not None
        state.in_flight = None
        if error_message is None:
            state.acked_version = in_flight.version
            state.acked_snapshot_version = in_flight.snapshot_version
            state.acked_nonce = in_flight.nonce
            return "ack"
        state.nacks.append(
            NackRecord(
                nonce=in_flight.nonce,
                version=in_flight.version,
                snapshot_version=in_flight.snapshot_version,
                names=in_flight.names,
                message=error_message,
            )
        )
        if "nack-loop" in self.mutants:
            # The bug: the NACK is read as a plain request at the last accepted version, so
            # the stream forgets it sent the rejected content and sends it again at once.
            state.known = dict(in_flight.known_before)
        return "nack"

    def _forget(self, state: _TypeState, names: Iterable[str]) -> None:
        for name in names:
            state.known.pop(name, None)
            state.resend.discard(name)

    # ----------------------------------------------------- what must be sent

    def _existing(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """What the stream serves of a type: the snapshot, plus what rule 7 retains."""
        assert self.snapshot is not None
        current = self.snapshot.of_type(resource_type)
        if "warming-cluster-starved" in self.mutants:
            return current  # The bug: only the snapshot counts, so a warming Cluster starves.
        retained = self._retained[resource_type]
        missing = [name for name in retained if name not in current]
        if not missing:
            return current
        referenced = self._referenced_by_client(resource_type)
        extra = {name: retained[name] for name in missing if name in referenced}
        return {**current, **extra} if extra else current

    def _referenced_by_client(self, resource_type: ResourceType) -> set[str]:
        return {
            name
            for state in self._types.values()
            for held in state.known.values()
            for name in held.references.of_type(resource_type)
        }

    def _retain_references(self, sent: Iterable[Resource]) -> None:
        """Rule 7: remember what each resource just sent names, as the snapshot has it now."""
        assert self.snapshot is not None
        for resource in sent:
            for kind in _RETAINED_TYPES:
                for name in resource.references.of_type(kind):
                    current = self.snapshot.get(kind, name)
                    if current is not None:
                        self._retained[kind][name] = current

    def _refresh_retained(self) -> None:
        """Keep retained content current; forget names nothing the client holds names."""
        assert self.snapshot is not None
        for kind in _RETAINED_TYPES:
            retained = self._retained[kind]
            referenced = self._referenced_by_client(kind)
            for name in list(retained):
                current = self.snapshot.get(kind, name)
                if current is not None:
                    retained[name] = current
                elif name not in referenced:
                    del retained[name]

    def _desired_names(self, state: _TypeState) -> list[str]:
        existing = self._existing(state.type)
        if state.wildcard:
            return list(existing)
        return sorted(name for name in state.subscribed if name in existing)

    def _updates(self, state: _TypeState) -> list[Resource]:
        if self.snapshot is None or not state.opened:
            return []
        existing = self._existing(state.type)
        updates = []
        for name in self._desired_names(state):
            held, resource = state.known.get(name), existing[name]
            if held is None or held.version != resource.version or name in state.resend:
                updates.append(resource)
        return updates

    @abc.abstractmethod
    def _removals(self, state: _TypeState) -> list[str]:
        """Names whose removal the client must be told about (mode-specific)."""

    def _settled(self, resource_type: ResourceType, *, removals_too: bool = False) -> bool:
        state = self._types[resource_type]
        if resource_type is ResourceType.ENDPOINT and self._endpoints_missing():
            return False
        if not state.opened:
            return True
        if state.in_flight is not None or self._updates(state):
            return False
        return not (removals_too and self._removals(state))

    def _gate_open(self, resource_type: ResourceType) -> bool:
        """Rule 4 for a whole type: may anything of it be sent now?"""
        if "unordered-push" in self.mutants:
            return True
        cds, eds, lds = ResourceType.CLUSTER, ResourceType.ENDPOINT, ResourceType.LISTENER
        if resource_type in (cds, eds):
            return True
        if not (self._settled(cds) and self._settled(eds)):
            return False
        return resource_type is lds or not self._updates(self._types[lds])

    def _sendable_updates(self, state: _TypeState) -> list[Resource]:
        """The updates make-before-break allows now (rule 4)."""
        updates = self._updates(state)
        if not updates or "unordered-push" in self.mutants:
            return updates
        if not self._gate_open(state.type):
            return []
        clusters = self._types[ResourceType.CLUSTER]
        if state.type is ResourceType.ENDPOINT and clusters.opened and self.snapshot is not None:
            # Endpoints of a Cluster waiting in CDS go right after it, never before. Endpoints
            # no Cluster of the snapshot names wait for nothing: they were asked for.
            sent = {n for c in clusters.known.values() for n in c.references.endpoints}
            waiting = {
                n
                for c in self.snapshot.of_type(ResourceType.CLUSTER).values()
                for n in c.references.endpoints
            } - sent
            return [resource for resource in updates if resource.name not in waiting]
        return updates

    def _endpoints_missing(self) -> bool:
        """A Cluster the client was sent still lacks its ClusterLoadAssignment (rule 4).

        The client subscribes to endpoints only after it processed the Cluster, so waiting for
        EDS to be merely idle is not enough: it must hold the endpoints of every sent Cluster.
        """
        clusters = self._types[ResourceType.CLUSTER]
        if self.snapshot is None or not clusters.opened:
            return False
        endpoints = self._types[ResourceType.ENDPOINT]
        existing = self._existing(ResourceType.ENDPOINT)
        for cluster in clusters.known.values():
            for name in cluster.references.endpoints:
                wanted = existing.get(name)
                if wanted is None:
                    continue
                held = endpoints.known.get(name)
                if held is None or held.version != wanted.version or name in endpoints.resend:
                    return True
        return False

    def _may_send_removals(self, resource_type: ResourceType) -> bool:
        if "unordered-push" in self.mutants:
            return True
        if "removals-not-deferred" in self.mutants:
            return True  # The bug: removals go out with the first response of their type.
        lds, rds = ResourceType.LISTENER, ResourceType.ROUTE
        if resource_type is ResourceType.CLUSTER:
            return self._referrers_settled(rds)
        if resource_type is ResourceType.ENDPOINT:
            return self._settled(
                ResourceType.CLUSTER, removals_too=True
            ) and self._referrers_settled(rds)
        if resource_type in (ResourceType.ROUTE, ResourceType.SECRET):
            return self._types[lds].opened and self._settled(lds, removals_too=True)
        # A SotW Listener set that drops a name is a whole LDS response: rule 4 gates it too.
        return self._gate_open(resource_type)

    def _referrers_settled(self, rds: ResourceType) -> bool:
        """Rule 5: the client told us what it holds and holds the newest Listeners and routes."""
        listeners = self._types[ResourceType.LISTENER]
        if not listeners.opened or not self._settled(ResourceType.LISTENER, removals_too=True):
            return False
        if self._types[rds].opened:
            return self._settled(rds, removals_too=True)
        return not any(held.references.routes for held in listeners.known.values())

    def _send_order(self) -> Sequence[ResourceType]:
        if "unordered-push" in self.mutants:
            return tuple(reversed(ADS_ORDER))
        return ADS_ORDER

    def _flush(self) -> list[object]:
        """Send, in ADS order, every response the rules above allow right now."""
        if self.snapshot is None:
            return []
        responses: list[object] = []
        for resource_type in self._send_order():
            state = self._types[resource_type]
            if not state.opened or state.in_flight is not None:
                continue
            updates = self._sendable_updates(state)
            removals = self._removals(state) if self._may_send_removals(resource_type) else []
            # A wildcard subscription that was just opened is answered even when there is
            # nothing in it: Envoy waits for that answer to finish initializing.
            answer_anyway = state.must_answer and self._gate_open(resource_type)
            if "deletion-not-a-change" in self.mutants and not updates and not answer_anyway:
                continue  # The bug: only a changed resource counts as a change.
            if not updates and not removals and not answer_anyway:
                continue
            outgoing = self._compose(state, updates, removals)
            responses.append(self._commit(state, outgoing))
        return responses

    def _carried(self, state: _TypeState, updates: list[Resource]) -> list[Resource]:
        """The resources a response carries: the updates (each mode adds its own rules)."""
        if "unrequested-resources" in self.mutants and state.type in _UNREQUESTED_TYPES:
            # The bug: every resource the stream serves goes out, subscribed or not.
            return list(self._existing(state.type).values())
        return updates

    @abc.abstractmethod
    def _compose(self, state: _TypeState, updates: list[Resource], removals: list[str]) -> Outgoing:
        """Shape what must be sent into one response (SotW sends full sets, Delta differences)."""

    @abc.abstractmethod
    def _to_proto(self, outgoing: Outgoing) -> object:
        """Build the DiscoveryResponse or DeltaDiscoveryResponse."""

    def _commit(self, state: _TypeState, outgoing: Outgoing) -> object:
        assert self.snapshot is not None
        known_before = dict(state.known)
        sent_names = {resource.name for resource in outgoing.resources}
        if state.type.is_wildcard_type and self.mode == "sotw":
            state.known = {resource.name: resource for resource in outgoing.resources}
        else:
            for resource in outgoing.resources:
                state.known[resource.name] = resource
            for name in outgoing.removed:
                state.known.pop(name, None)
        state.resend -= sent_names | set(outgoing.removed)
        self._retain_references(outgoing.resources)
        if state.type is ResourceType.CLUSTER:
            self._resend_endpoints_of_updated_clusters(known_before, outgoing.resources)
        state.in_flight = _InFlight(
            nonce=outgoing.nonce,
            version=outgoing.version,
            snapshot_version=self.snapshot.version,
            names=tuple(sorted(sent_names)),
            known_before=known_before,
        )
        state.last_sent_nonce = outgoing.nonce
        state.last_sent_version = outgoing.version
        state.must_answer = False
        state.responses_sent += 1
        self.record(
            direction="response",
            type_short=state.type.short_name,
            nonce=outgoing.nonce,
            version=outgoing.version,
            names=tuple(sorted(sent_names)),
            removed=tuple(sorted(outgoing.removed)),
        )
        return self._to_proto(outgoing)

    def _resend_endpoints_of_updated_clusters(
        self, known_before: dict[str, Resource], sent: Iterable[Resource]
    ) -> None:
        """An updated Cluster warms until it gets its ClusterLoadAssignment again."""
        if "eds-not-resent-on-cds" in self.mutants:
            return
        endpoints = self._types[ResourceType.ENDPOINT]
        for cluster in sent:
            previous = known_before.get(cluster.name)
            if previous is None or previous == cluster:
                continue
            endpoints.resend.update(cluster.references.endpoints)
