"""Several relays tapping one monitor: a replica with the per-type transport has one relay per
xDS type, and its monitor must see them as one client.

Each relay numbers its connections 1, 2, ... on its own, so `RelayMux` renumbers them apart
(relay i's connection n becomes n * relays + i, unique and stable). The relays hold and release
together, but each reports its own change: the monitor's clock must stop once per hold of the
link, so the mux reports the link held when the first relay holds and released when the last
one releases.
"""

from __future__ import annotations

import threading

from harness.loopback.relay import Direction, RelayTap

__all__ = ["RelayMux"]


class RelayMux:
    """`tap(i)` is relay i's tap; everything reaches `target` as from one relay."""

    def __init__(self, target: RelayTap, relays: int) -> None:
        if relays < 1:
            raise ValueError("a mux needs at least one relay")
        self.target = target
        self.relays = relays
        self._lock = threading.Lock()
        self._held: set[int] = set()

    def tap(self, index: int) -> RelayTap:
        """The tap of relay `index` (with one relay, `target` itself: nothing to keep apart)."""
        if not 0 <= index < self.relays:
            raise ValueError(f"relay index {index} out of 0..{self.relays - 1}")
        return self.target if self.relays == 1 else _MuxTap(self, index)

    def connection(self, index: int, connection: int) -> int:
        return connection * self.relays + index

    def hold_changed(self, index: int, held: bool, at: float) -> None:
        # Called from several relay threads: the lock keeps the count and the report together.
        with self._lock:
            before = bool(self._held)
            if held:
                self._held.add(index)
            else:
                self._held.discard(index)
            if bool(self._held) != before:
                self.target.hold_changed(bool(self._held), at)


class _MuxTap:
    def __init__(self, mux: RelayMux, index: int) -> None:
        self._mux = mux
        self._index = index

    def connection_opened(self, connection: int, at: float) -> None:
        self._mux.target.connection_opened(self._mux.connection(self._index, connection), at)

    def delivered(self, connection: int, direction: Direction, data: bytes, at: float) -> None:
        target = self._mux.connection(self._index, connection)
        self._mux.target.delivered(target, direction, data, at)

    def connection_closed(self, connection: int, at: float) -> None:
        self._mux.target.connection_closed(self._mux.connection(self._index, connection), at)

    def hold_changed(self, held: bool, at: float) -> None:
        self._mux.hold_changed(self._index, held, at)
