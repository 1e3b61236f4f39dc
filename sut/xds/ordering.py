"""Make-before-break as data: what each type's updates and its removals wait for.

Rules (rules 4 and 5 of `stream.py`), each a row of `UPDATES` or `REMOVALS`, read by `ready`:
- Updates: CDS first; EDS once the CDS carrying its Cluster was sent; LDS once CDS and EDS are
  ACKed; RDS and SDS once CDS and EDS are ACKed and LDS is sent.
- Removals: a Cluster once LDS and RDS have settled; its ClusterLoadAssignment once CDS has too;
  a RouteConfiguration or Secret once LDS has; a Listener like any Listener update.
- *ACKed*: nothing in flight and nothing left to send. EDS counts as ACKed only while the client
  holds the current endpoints of every Cluster it holds (`COMPLETE_WITH`): it asks for them only
  after it processed the Cluster, so an idle EDS says nothing.
- *Settled*: ACKed, removals included. A type the client has not opened counts as settled,
  except where a row says *told*: then the client must have opened it, because only then does a
  new stream know what the client still holds from the previous one; *told if named* waives that
  when nothing the client holds names a resource of the type.
- Waits count only what the client can ask for before the update that waits: what it
  subscribes to (by name, or everything by wildcard) and what a resource it holds names (it asks
  for those next). A by-name client (proxyless gRPC) asks for a Cluster only once a
  RouteConfiguration it holds names it, so a Cluster first named by the new RouteConfiguration
  never gates that RouteConfiguration: it is sent, and the Cluster follows in CDS -> EDS order
  when the client subscribes. Waiting for it would deadlock the stream.
- Per-type streams: a wait applies only to the types the stream itself serves (`within`). The
  spec promises no order across separate streams (that is what ADS is for), so on a stream of
  one type no row applies, and one stream never waits for another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import attrs

from sut.xds.resources import ADS_ORDER, Resource, ResourceType

__all__ = [
    "COMPLETE_WITH",
    "REMOVALS",
    "UPDATES",
    "StreamView",
    "Waits",
    "acked",
    "ready",
    "waiting_names",
    "within",
]

_CDS, _EDS, _LDS, _RDS, _SDS = ADS_ORDER


@attrs.frozen
class Waits:
    """What must hold of other types before something of one type may be sent."""

    acked: tuple[ResourceType, ...] = ()
    sent: tuple[ResourceType, ...] = ()
    """Nothing left to send (the response may still be in flight)."""
    settled: tuple[ResourceType, ...] = ()
    told: tuple[ResourceType, ...] = ()
    told_if_named: tuple[ResourceType, ...] = ()
    referrers_sent: tuple[ResourceType, ...] = ()
    """Per resource: one waits while a resource of these types that names it is not sent."""


def within(waits: Waits, served: frozenset[ResourceType] | None) -> Waits:
    """The part of a row that applies on a stream serving `served` types (None: all, ADS)."""
    if served is None:
        return waits

    def kept(kinds: tuple[ResourceType, ...]) -> tuple[ResourceType, ...]:
        return tuple(kind for kind in kinds if kind in served)

    return Waits(
        acked=kept(waits.acked),
        sent=kept(waits.sent),
        settled=kept(waits.settled),
        told=kept(waits.told),
        told_if_named=kept(waits.told_if_named),
        referrers_sent=kept(waits.referrers_sent),
    )


UPDATES: Mapping[ResourceType, Waits] = {
    _CDS: Waits(),
    _EDS: Waits(referrers_sent=(_CDS,)),
    _LDS: Waits(acked=(_CDS, _EDS)),
    _RDS: Waits(acked=(_CDS, _EDS), sent=(_LDS,)),
    _SDS: Waits(acked=(_CDS, _EDS), sent=(_LDS,)),
}

REMOVALS: Mapping[ResourceType, Waits] = {
    _CDS: Waits(told=(_LDS,), told_if_named=(_RDS,)),
    _EDS: Waits(settled=(_CDS,), told=(_LDS,), told_if_named=(_RDS,)),
    # A SotW Listener set that drops a name is a whole LDS response: it waits like one.
    _LDS: Waits(acked=(_CDS, _EDS)),
    _RDS: Waits(told=(_LDS,)),
    _SDS: Waits(told=(_LDS,)),
}

COMPLETE_WITH: Mapping[ResourceType, ResourceType] = {_EDS: _CDS}
"""A type that is ACKed only once the client holds every name of it that a resource of the
other type it holds names, at the content the stream serves."""


class StreamView(Protocol):
    """What the rules read of a stream, per type."""

    def opened(self, resource_type: ResourceType) -> bool: ...

    def in_flight(self, resource_type: ResourceType) -> bool: ...

    def updates(self, resource_type: ResourceType) -> Sequence[Resource]: ...

    def removals(self, resource_type: ResourceType) -> Sequence[str]: ...

    def held(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """What the client holds, as far as the stream knows."""
        ...

    def marked(self, resource_type: ResourceType) -> frozenset[str]:
        """Names marked to be sent again whatever the client holds."""
        ...

    def served(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """What the stream serves: its snapshot and what the client's resources still name."""
        ...

    def current(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """The stream's snapshot alone."""
        ...

    def wanted(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        """Of the stream's snapshot, what the client subscribes to (all of it by wildcard)."""
        ...


def acked(view: StreamView, resource_type: ResourceType, *, removals_too: bool = False) -> bool:
    """Nothing of the type in flight or left to send (and no removal, with `removals_too`)."""
    referrer = COMPLETE_WITH.get(resource_type)
    if referrer is not None and _incomplete(view, resource_type, referrer):
        return False
    if not view.opened(resource_type):
        return True
    if view.in_flight(resource_type) or view.updates(resource_type):
        return False
    return not (removals_too and view.removals(resource_type))


def ready(view: StreamView, waits: Waits) -> bool:
    """Every type-wide condition of one row holds."""
    return (
        all(acked(view, kind) for kind in waits.acked)
        and not any(view.updates(kind) for kind in waits.sent)
        and all(acked(view, kind, removals_too=True) for kind in waits.settled)
        and all(_told(view, kind) for kind in waits.told)
        and all(
            _told(view, kind) if view.opened(kind) else not _named_by_held(view, kind)
            for kind in waits.told_if_named
        )
    )


def waiting_names(view: StreamView, resource_type: ResourceType, waits: Waits) -> set[str]:
    """Names of the type that wait for the resources naming them to be sent first."""
    waiting: set[str] = set()
    for referrer in waits.referrers_sent:
        if not view.opened(referrer):
            continue
        sent = {
            n for r in view.held(referrer).values() for n in r.references.of_type(resource_type)
        }
        named = {
            n for r in view.wanted(referrer).values() for n in r.references.of_type(resource_type)
        }
        waiting |= named - sent
    return waiting


def _told(view: StreamView, resource_type: ResourceType) -> bool:
    return view.opened(resource_type) and acked(view, resource_type, removals_too=True)


def _named_by_held(view: StreamView, resource_type: ResourceType) -> bool:
    return any(
        resource.references.of_type(resource_type)
        for kind in ADS_ORDER
        for resource in view.held(kind).values()
    )


def _incomplete(view: StreamView, resource_type: ResourceType, referrer: ResourceType) -> bool:
    """A resource the client holds names one of the type it lacks at the served content."""
    if not view.opened(referrer):
        return False
    served = view.served(resource_type)
    held = view.held(resource_type)
    marked = view.marked(resource_type)
    for holder in view.held(referrer).values():
        for name in holder.references.of_type(resource_type):
            wanted = served.get(name)
            if wanted is None:
                continue
            have = held.get(name)
            if have is None or have.version != wanted.version or name in marked:
                return True
    return False
