"""One type's subscription on one ADS stream: a frozen value and its transition table.

Rules of this module:

1. A request is classified once, by its nonce: `Initial` (the first request for the type on the
   stream), `SubscriptionChange` (no nonce on an open type, or the nonce of the last response,
   already settled), `Ack` or `Nack` (the nonce of the response in flight, without or with
   error_detail), or `Stale` (any other nonce: no ACK, but its names still count).
2. A subscription is `CLOSED` until its first request, `IDLE` while open with nothing in flight,
   and `IN_FLIGHT` while one response awaits its ACK or NACK: at most one at a time.
3. `TRANSITIONS` lists every legal (phase, event) pair. A pair in `CLIENT_VIOLATIONS` is the
   client's fault (`RemoteProtocolError`: the stream is closed); any other pair is a bug of ours
   (`LocalProtocolError`). Both name the type, the nonce and the phase.
4. An ACK makes the response in flight the acknowledged one; a NACK is recorded and leaves
   `known` at the rejected content, so that content is not sent again (stream rule 3).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs
from immutables import Map

from sut.errors import LocalProtocolError, RemoteProtocolError
from sut.xds.resources import Resource, ResourceType

__all__ = [
    "CLIENT_VIOLATIONS",
    "TRANSITIONS",
    "Ack",
    "Event",
    "Initial",
    "Nack",
    "NackRecord",
    "Phase",
    "RequestKind",
    "Sent",
    "SentResponse",
    "Stale",
    "Subscription",
    "SubscriptionChange",
    "classify",
]


class Phase(enum.Enum):
    CLOSED = "closed"
    IDLE = "idle"
    IN_FLIGHT = "in flight"


@attrs.frozen
class Initial:
    """The first request for the type on this stream (in Delta: one that says it is)."""

    nonce: str
    note: ClassVar[str] = "first"


@attrs.frozen
class SubscriptionChange:
    """A request that settles nothing: it may only change what the client subscribes to."""

    nonce: str
    note: ClassVar[str] = "request"


@attrs.frozen
class Ack:
    nonce: str
    note: ClassVar[str] = "ack"


@attrs.frozen
class Nack:
    nonce: str
    message: str
    note: ClassVar[str] = "nack"


@attrs.frozen
class Stale:
    """A nonce that names no response awaiting an answer: an old one, or another stream's."""

    nonce: str
    note: ClassVar[str] = "stale"


@attrs.frozen
class SentResponse:
    """A response of this type the stream sent, as the client will quote it."""

    nonce: str
    version: str
    snapshot_version: str
    names: tuple[str, ...]
    known_before: Map[str, Resource] = attrs.field(factory=Map, eq=False, repr=False)
    """What the client held before it (only the `nack-loop` mutant goes back to it)."""


@attrs.frozen
class Sent:
    """The stream sends a response of this type."""

    response: SentResponse
    note: ClassVar[str] = "response"

    @property
    def nonce(self) -> str:
        return self.response.nonce


@attrs.frozen
class NackRecord:
    nonce: str
    version: str
    snapshot_version: str
    names: tuple[str, ...]
    message: str


RequestKind = Initial | SubscriptionChange | Ack | Nack | Stale
Event = RequestKind | Sent

_CLOSED, _IDLE, _IN_FLIGHT = Phase.CLOSED, Phase.IDLE, Phase.IN_FLIGHT

TRANSITIONS: Mapping[tuple[Phase, type[Event]], Phase] = {
    (_CLOSED, Initial): _IDLE,
    # A first request quoting a nonce (of an earlier stream) is no ACK, but it opens the type.
    (_CLOSED, Stale): _IDLE,
    (_IDLE, SubscriptionChange): _IDLE,
    (_IDLE, Stale): _IDLE,
    (_IDLE, Sent): _IN_FLIGHT,
    (_IN_FLIGHT, SubscriptionChange): _IN_FLIGHT,
    (_IN_FLIGHT, Stale): _IN_FLIGHT,
    (_IN_FLIGHT, Ack): _IDLE,
    (_IN_FLIGHT, Nack): _IDLE,
}

_REOPENED = "initial_resource_versions is only allowed on the first request for a type on a stream"

CLIENT_VIOLATIONS: Mapping[tuple[Phase, type[Event]], str] = {
    (_IDLE, Initial): _REOPENED,
    (_IN_FLIGHT, Initial): _REOPENED,
}


def classify(
    subscription: Subscription, nonce: str, error: str | None, *, claims_initial: bool = False
) -> RequestKind:
    """Rule 1: what a request's nonce makes of it; `claims_initial` is Delta's
    `initial_resource_versions`, which only a first request may carry."""
    if claims_initial and subscription.opened:
        return Initial(nonce)
    if not nonce:
        return SubscriptionChange(nonce) if subscription.opened else Initial(nonce)
    in_flight = subscription.in_flight
    if in_flight is not None and nonce == in_flight.nonce:
        return Ack(nonce) if error is None else Nack(nonce, error)
    last_sent = subscription.last_sent
    if last_sent is not None and nonce == last_sent.nonce:
        return SubscriptionChange(nonce)
    return Stale(nonce)


Changes = dict[str, Any]


def _phase_only(subscription: Subscription, event: Event) -> Changes:
    return {}


def _acked(subscription: Subscription, event: Event) -> Changes:
    return {"acked": subscription.in_flight, "in_flight": None}


def _nacked(subscription: Subscription, event: Event) -> Changes:
    assert isinstance(event, Nack)
    in_flight = subscription.in_flight
    assert in_flight is not None
    record = NackRecord(
        nonce=in_flight.nonce,
        version=in_flight.version,
        snapshot_version=in_flight.snapshot_version,
        names=in_flight.names,
        message=event.message,
    )
    return {"in_flight": None, "nacks": (*subscription.nacks, record)}


def _sent(subscription: Subscription, event: Event) -> Changes:
    assert isinstance(event, Sent)
    return {
        "in_flight": event.response,
        "last_sent": event.response,
        "must_answer": False,
        "responses_sent": subscription.responses_sent + 1,
    }


_EFFECTS: Mapping[type[Event], Callable[[Subscription, Event], Changes]] = {
    Initial: _phase_only,
    SubscriptionChange: _phase_only,
    Stale: _phase_only,
    Ack: _acked,
    Nack: _nacked,
    Sent: _sent,
}


@attrs.frozen
class Subscription:
    """What one stream knows of one type: the client's subscription and what it holds."""

    type: ResourceType
    phase: Phase = Phase.CLOSED
    wildcard: bool = False
    named: bool = False
    """The client has named resources (or "*"): an empty list is then no legacy wildcard."""
    subscribed: frozenset[str] = frozenset()
    known: Map[str, Resource] = attrs.field(factory=Map)
    """What the server believes the client holds (stream rule 2)."""
    resend: frozenset[str] = frozenset()
    """Names to send even if the client holds their content (stream rule 2)."""
    must_answer: bool = False
    """A response is owed even if it carries nothing: a wildcard subscription was (re)opened, or
    a full-state (LDS/CDS) one asked for names, which may not exist (absence answers them)."""
    in_flight: SentResponse | None = None
    last_sent: SentResponse | None = None
    acked: SentResponse | None = None
    nacks: tuple[NackRecord, ...] = ()
    responses_sent: int = 0

    def __attrs_post_init__(self) -> None:
        if (self.phase is Phase.IN_FLIGHT) != (self.in_flight is not None):
            raise LocalProtocolError(
                f"{self.type.short_name}: phase {self.phase.value} does not match the response"
                f" in flight ({self.in_flight.nonce if self.in_flight else 'none'})"
            )

    @property
    def opened(self) -> bool:
        return self.phase is not Phase.CLOSED

    def apply(self, event: Event) -> Subscription:
        """The subscription after `event`, or the error naming who broke which rule."""
        key = (self.phase, type(event))
        target = TRANSITIONS.get(key)
        if target is None:
            where = f"(nonce {event.nonce!r}, subscription {self.phase.value})"
            violation = CLIENT_VIOLATIONS.get(key)
            if violation is not None:
                raise RemoteProtocolError(f"{self.type.short_name}: {violation} {where}")
            raise LocalProtocolError(
                f"{self.type.short_name}: {type(event).__name__} is not allowed {where}"
            )
        return attrs.evolve(self, phase=target, **_EFFECTS[type(event)](self, event))

    def forgetting(self, names: frozenset[str] | set[str]) -> Subscription:
        """The client no longer holds `names` as far as the server knows (unsubscribed)."""
        if not names:
            return self
        known = self.known.mutate()
        for name in names:
            known.pop(name, None)
        return attrs.evolve(self, known=known.finish(), resend=self.resend - names)
