"""What the harness did, in time, as the monitor needs it beside the wire.

- control-plane lifetimes: a restarted control plane is a new server, whose versions and nonces
  owe nothing to the old one's; a connection belongs to the lifetime it was opened in;
- publications: what the harness's control plane put in the cache for the node, and when (an
  obligation's clock starts only once there is something to answer with);
- holds: while the relay holds the connection, nothing can be answered, so clocks stop.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["Published", "Timeline"]


@attrs.frozen
class Published:
    """What the harness's control plane put in the cache for the node, and when."""

    at: float
    lifetime: int
    resources: Mapping[tuple[str, str], bytes]
    """(type_url, name) -> serialized resource."""


@attrs.define
class Timeline:
    lifetimes: list[float] = attrs.Factory(list)
    """Start time of each control-plane lifetime (lifetime n started at lifetimes[n - 1])."""
    publications: list[Published] = attrs.Factory(list)
    holds: list[list[float]] = attrs.Factory(list)
    """[start, end] of each hold; end is infinity while it lasts."""

    def control_plane_started(self, at: float) -> None:
        self.lifetimes.append(at)

    def published(self, publication: Published) -> None:
        self.publications.append(publication)

    def hold_changed(self, held: bool, at: float) -> None:
        if held:
            self.holds.append([at, float("inf")])
        elif self.holds and self.holds[-1][1] == float("inf"):
            self.holds[-1][1] = at

    def lifetime_at(self, at: float) -> int:
        return sum(1 for start in self.lifetimes if start <= at)

    def of_lifetime(self, lifetime: int) -> list[Published]:
        return [p for p in self.publications if p.lifetime == lifetime]

    def republished(self, lifetime: int, after: float, until: float) -> bool:
        """Did the control plane of `lifetime` publish anything in (after, until]?"""
        return any(p.lifetime == lifetime and after < p.at <= until for p in self.publications)

    def held_between(self, start: float, end: float) -> float:
        return sum(max(0.0, min(end, stop) - max(start, begin)) for begin, stop in self.holds)
