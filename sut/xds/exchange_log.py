"""The server-wide log of recent exchanges, capped by approximate bytes rather than entries.

An entry holds its message's resource names, so a cap in entries lets a client that sends long
name lists grow the server by hundreds of megabytes; a cap in bytes does not. The harness reads
the log for counterexample reports (`since(seq)`), which only need the recent past.

Thread-safe: streams append from the server's event loop, the harness reads from its threads.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator

from sut.xds.stream import Exchange

__all__ = ["ExchangeLog", "approximate_size"]

_ENTRY_BYTES = 320
"""An `Exchange` object with its numbers and short strings, as CPython lays them out."""

_STRING_BYTES = 57
"""A str object's header plus its slot in a tuple."""


def approximate_size(exchange: Exchange) -> int:
    """Bytes the entry keeps alive, counting every name as its own string (an upper bound:
    names shared with a snapshot's resources cost less)."""
    names = (*exchange.names, *exchange.removed, *exchange.unsubscribed)
    text = (
        exchange.type_short,
        exchange.nonce,
        exchange.version,
        exchange.note,
        exchange.error_detail,
    )
    return (
        _ENTRY_BYTES
        + sum(_STRING_BYTES + len(name) for name in names)
        + sum(len(field) for field in text)
    )


class ExchangeLog:
    """The newest exchanges whose approximate size adds up to at most `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.deque[tuple[Exchange, int]] = collections.deque()
        self._bytes = 0

    def append(self, exchange: Exchange) -> None:
        size = approximate_size(exchange)
        with self._lock:
            self._entries.append((exchange, size))
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _dropped, dropped_size = self._entries.popleft()
                self._bytes -= dropped_size

    def since(self, seq: int = 0) -> list[Exchange]:
        """Entries with a sequence number above `seq`, oldest first."""
        with self._lock:
            newer = []
            for exchange, _size in reversed(self._entries):
                if exchange.seq <= seq:
                    break
                newer.append(exchange)
        newer.reverse()
        return newer

    def last_seq(self) -> int:
        with self._lock:
            return self._entries[-1][0].seq if self._entries else 0

    @property
    def approximate_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[Exchange]:
        return iter(self.since(0))
