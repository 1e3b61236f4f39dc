"""The decoded exchange, kept for reports: one line per message or connection event.

The monitor judges as it goes; this log only explains its findings ("the decoded exchange
around it"). It is bounded: old lines go once `size` newer ones are kept.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

import attrs

from harness.lockstep.monitor.messages import XdsRequest, XdsResponse

__all__ = ["ExchangeLog", "describe_request", "describe_response"]


@attrs.frozen
class _Entry:
    seq: int
    text: str


class ExchangeLog:
    def __init__(self, size: int = 4000, context: int = 6) -> None:
        self._entries: collections.deque[_Entry] = collections.deque(maxlen=size)
        self._context = context
        self.last_seq = 0

    def note(self, text: str) -> int:
        self.last_seq += 1
        self._entries.append(_Entry(self.last_seq, text))
        return self.last_seq

    def around(self, seq: int) -> list[str]:
        """The lines around entry `seq`, the entry itself marked."""
        entries = [e for e in self._entries if seq - self._context <= e.seq <= seq + 2]
        return ["decoded exchange around it:"] + [
            f"{'>>' if e.seq == seq else '  '} #{e.seq} {e.text}" for e in entries
        ]

    def lines(self, since: int = 0) -> list[str]:
        return [f"#{e.seq} {e.text}" for e in self._entries if e.seq > since]


def _names(names: Iterable[str], limit: int = 6) -> str:
    items = sorted(names)
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def describe_request(request: XdsRequest) -> str:
    parts = [f"stream {request.stream} envoy -> server {request.type_short}"]
    if request.error_detail is not None:
        parts.append("NACK")
    if request.response_nonce:
        parts.append(f"nonce={request.response_nonce}")
    if request.version_info:
        parts.append(f"version={request.version_info}")
    if request.resource_names:
        parts.append(("subscribe=" if request.delta else "names=") + _names(request.resource_names))
    if request.unsubscribe:
        parts.append("unsubscribe=" + _names(request.unsubscribe))
    if request.initial_resource_versions:
        parts.append("initial=" + _names(name for name, _ in request.initial_resource_versions))
    if request.error_detail:
        parts.append(f"error={request.error_detail[:80]!r}")
    return " ".join(parts)


def describe_response(response: XdsResponse) -> str:
    parts = [f"stream {response.stream} server -> envoy {response.type_short}"]
    parts.append(f"version={response.version_info} nonce={response.nonce}")
    if response.resources:
        parts.append("resources=" + _names(item.name for item in response.resources))
    if response.removed:
        parts.append("removed=" + _names(response.removed))
    return " ".join(parts)
