"""A time budget shared by a group of hook calls: one translation's.

Each hook call has its own deadline (`ExtensionSettings.deadline`), but a translation calls the
hooks once per route, virtual host and listener: with a hanging extension and fail-open the waits
add up to N x deadline. A `Budget` bounds the whole group. The runner starts one per reconcile and
passes it to every call; the client then gives each attempt min(its deadline, what remains), does
not start a backoff the budget cannot cover, and once the budget is spent fails every further call
at once, without an RPC, as a "deadline" failure.

A value, not a timer: it holds the instant it runs out on a monotonic clock, and the clock, so
tests can inject one they advance themselves. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

from sut.errors import ExtensionError
from sut.extension.hooks import FailureKind

__all__ = ["Budget", "Clock"]

Clock = Callable[[], float]
"""Seconds on a monotonic clock, like `time.monotonic`."""


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen
class Budget:
    """`seconds` for a group of hook calls, running out at `expires_at` on `clock`."""

    seconds: float = attrs.field(validator=_positive)
    """The whole budget, as configured (named in the error once it is spent)."""
    expires_at: float
    clock: Clock = attrs.field(default=time.monotonic, eq=False, repr=False)

    @classmethod
    def start(cls, seconds: float, clock: Clock = time.monotonic) -> Budget:
        """A budget of `seconds` starting now."""
        return cls(seconds, clock() + seconds, clock)

    def remaining(self) -> float:
        return max(0.0, self.expires_at - self.clock())

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0.0

    def timeout(self, deadline: float) -> float:
        """What one attempt with a per-call `deadline` may take: no more than what remains."""
        return min(deadline, self.remaining())

    def covers(self, wait: float) -> bool:
        """Whether a wait of `wait` seconds (a backoff) ends with some budget left to use."""
        return wait < self.remaining()

    def exhausted(self, hook: str, detail: str = "") -> ExtensionError:
        """The failure of a call the budget refused or cut short."""
        message = f"translation budget of {self.seconds:g} s exhausted"
        return ExtensionError(
            hook, FailureKind.DEADLINE.value, f"{message} ({detail})" if detail else message
        )
