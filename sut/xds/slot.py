"""Latest-value slots: how a thread hands a value to a coroutine without a queue or a wait.

Rules of this module:
1. `offer` may be called from any thread and never blocks (it takes one short lock); it
   overwrites a value the loop has not taken yet, so a slow consumer skips values and nothing
   piles up.
2. `take` and `wait` run on the event loop only.
3. Threads reach the loop only through `loop.call_soon_threadsafe`; a `LoopWaker` makes one such
   call per burst of offers, however many slots they fill, so a publish to a thousand streams
   wakes the loop once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Generic, TypeVar

__all__ = ["LatestValueSlot", "LoopWaker"]

T = TypeVar("T")


class LoopWaker:
    """Marks slots ready on one event loop, from any thread, one loop wake-up per burst."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[LatestValueSlot[object]] = []

    def schedule(self, slot: LatestValueSlot[object]) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(slot)
        if first:
            # A closed loop means the server stopped: nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for slot in pending:
            slot.ready.set()


class LatestValueSlot(Generic[T]):
    """Holds the newest value offered and not yet taken."""

    def __init__(self, waker: LoopWaker) -> None:
        self._waker = waker
        self._lock = threading.Lock()
        self._value: T | None = None
        self.ready = asyncio.Event()
        """Set on the loop once a value may be waiting; `take` clears it."""

    def offer(self, value: T) -> None:
        """Any thread: replace whatever is waiting with `value`."""
        with self._lock:
            waiting = self._value is not None
            self._value = value
        if not waiting:
            self._waker.schedule(self)  # type: ignore[arg-type]

    def take(self) -> T | None:
        """Loop only: the newest value, or None if another `take` got it first."""
        with self._lock:
            value, self._value = self._value, None
        self.ready.clear()
        return value
