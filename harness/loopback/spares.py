"""A spare Envoy kept parked for the next proxy start, so no example waits for Envoy to load.

Rules of this module:
- A spare is a `ParkedEnvoy`: a brand-new process that has not read its bootstrap, so it holds
  no listener, version, stream or timer. It serves exactly one start, then belongs to the
  `EnvoyProcess` that took it; a proxy is never reused.
- `take(options)` hands over the spare if it was launched with equal options, still runs and is
  younger than `max_age`; otherwise it stops it and returns None (the caller spawns as usual).
- `refill(options)` parks the next spare. The stack calls it once the Envoy it just started is
  ready, so the spare loads while the example runs, not while that Envoy starts.
- `close()` stops the spare; so does interpreter exit (and `processes` kills it with us even on
  SIGKILL). Whoever creates the pool closes it: a pool is a context manager.
"""

from __future__ import annotations

import atexit
import threading
from types import TracebackType

import attrs

from harness.loopback.envoy import LaunchOptions, ParkedEnvoy

__all__ = ["SpareEnvoys", "SpareStats"]


@attrs.define
class SpareStats:
    launched: int = 0
    taken: int = 0
    missing: int = 0
    """Takes that found no fitting spare (the first one, and after `close`)."""
    discarded: int = 0
    """Spares stopped unused: too old, other options, or exited on their own."""


class SpareEnvoys:
    """Keeps at most one parked Envoy ready for the next `EnvoyProcess.start(parked=...)`."""

    def __init__(self, *, max_age: float = 10.0) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_age = max_age
        """A parked Envoy holds no timer, but its uptime counts from launch: bound that."""
        self.stats = SpareStats()
        self._spare: ParkedEnvoy | None = None
        self._closed = False
        self._lock = threading.Lock()
        atexit.register(self.close)

    @property
    def spare(self) -> ParkedEnvoy | None:
        """The spare waiting now, if any."""
        return self._spare

    def take(self, options: LaunchOptions) -> ParkedEnvoy | None:
        """The spare, if it fits `options` and is fresh (see the rules above)."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and not self._fits(spare, options):
            spare.stop()
            self.stats.discarded += 1
            spare = None
        if spare is None:
            self.stats.missing += 1
        else:
            self.stats.taken += 1
        return spare

    def refill(self, options: LaunchOptions) -> None:
        """Park a new spare for `options`, unless one waits or the pool is closed. Call it once
        the Envoy just started is ready: loading next to a starting Envoy would slow it."""
        with self._lock:
            if self._closed or self._spare is not None:
                return
            self._spare = ParkedEnvoy(options).launch()
            self.stats.launched += 1

    def _fits(self, spare: ParkedEnvoy, options: LaunchOptions) -> bool:
        return spare.options == options and spare.running and spare.age() <= self.max_age

    def close(self) -> None:
        """Stop the spare; later takes find none. Idempotent."""
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.stop()
            self.stats.discarded += 1
        atexit.unregister(self.close)

    def __enter__(self) -> SpareEnvoys:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SpareEnvoys({self._spare!r}, {self.stats})"
