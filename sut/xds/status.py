"""What a stream shows the harness: its exchange log and a status per type.

Values only; the stream core builds them. A proxy is known by its node id and, since several
proxies may share one, by the metadata of its `Node` (the harness puts an instance id there).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs
from immutables import Map

from sut.xds.resources import ResourceType
from sut.xds.subscription import NackRecord

__all__ = ["Exchange", "StreamStatus", "TypeStatus", "frozen_metadata"]


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
    last_sent_nonce: str = ""
    """The nonce a client quotes once it processed the newest response of the type."""


@attrs.frozen
class StreamStatus:
    stream_id: int
    mode: str
    node_id: str
    snapshot_version: str
    converged: bool
    types: tuple[TypeStatus, ...]
    node_metadata: Map[str, object] = attrs.field(factory=Map)
    """The `Node.metadata` of the stream's first request: tells proxies sharing a node id apart."""
    serves: frozenset[str] = frozenset({"CDS", "EDS", "LDS", "RDS", "SDS"})
    """Short names of the types the stream serves (`types` has one entry per type served)."""
    aggregated: bool = True
    """An ADS stream (every type, in make-before-break order) or a per-type one."""

    def of_type(self, resource_type: ResourceType) -> TypeStatus:
        for status in self.types:
            if status.type_short == resource_type.short_name:
                return status
        raise KeyError(resource_type)


def frozen_metadata(fields: Mapping[str, object]) -> Map[str, object]:
    """A `Node.metadata` Struct as plain values (from `json_format.MessageToDict`), frozen:
    objects become immutable maps and lists tuples, so a status stays a hashable value."""
    return Map({key: _frozen(value) for key, value in fields.items()})


def _frozen(value: object) -> object:
    if isinstance(value, Mapping):
        return frozen_metadata(value)
    if isinstance(value, list | tuple):
        return tuple(_frozen(item) for item in value)
    return value
