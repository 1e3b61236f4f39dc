"""What one search reports while it runs, and the counterexample it found.

Shared by all examples of one run (`Progress`): the CLI prints it, a pool of searches stops on
it (`StopFlag`), and the final replay of a failing example leaves its `Failure` there.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

import attrs

from harness.lockstep.operations import Operation
from harness.lockstep.verdict import Violation

__all__ = ["BudgetSpent", "Failure", "Progress", "StopFlag"]


class BudgetSpent(KeyboardInterrupt):
    """The search time is up, or the pool this search belongs to stopped. Hypothesis stops at
    once on an interrupt and records nothing of the cut-off example; any other exception would
    be stored as a shorter run of a choice prefix it had seen run longer, which it reports as
    inconsistent data generation (Flaky)."""


@attrs.frozen
class Failure:
    """The shrunk counterexample, as the final replay of Hypothesis ran it."""

    steps: tuple[tuple[Operation, ...], ...]
    """The operations of each step, as the machine checked them (a compound rule is one step)."""
    violations: tuple[Violation, ...]
    exchanges: tuple[str, ...]
    """The xDS exchange of the failing step, decoded from the wire by the monitor."""
    error: str = ""

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(operation for step in self.steps for operation in step)


class StopFlag(Protocol):
    """What a run shares with the other searches of its pool (a `multiprocessing.Event`)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


@attrs.define
class Progress:
    """Shared by all examples of one run: what the CLI reports on stderr."""

    examples: int = 0
    """Examples of the search, up to the first failure (shrinking's runs are `shrink_runs`)."""
    shrink_runs: int = 0
    discarded: int = 0
    """Examples discarded as inconclusive (`verdict.Inconclusive`): the environment, not the SUT,
    broke an assumption of the model."""
    steps: int = 0
    kinds: Counter[str] = attrs.Factory(Counter)
    """Operations applied, by kind (a compound step counts each of its operations)."""
    started: float = attrs.Factory(time.monotonic)
    first_failure_at: float | None = None
    first: Failure | None = None
    """The first failing example, before any shrinking (what a flaky failure first showed)."""
    final: Failure | None = None
    last: Failure | None = None
    """The most recent failing example, shrunk or not (reported when a replay is flaky)."""
    budget_seconds: float | None = None
    report: Callable[[Progress], None] | None = None
    stop: StopFlag | None = None
    """Once set, start no new example (the pool this run belongs to is done)."""
    on_failure: Callable[[], None] | None = None
    """Called at this run's first failure (a pool of searches of one configuration sets `stop`)."""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def search_over(self) -> bool:
        """No new example once the budget is spent or the pool stops (another search found a
        failure, or the user interrupted); a failure found here is still shrunk."""
        if self.first_failure_at is not None:
            return False
        if self.budget_seconds is not None and self.elapsed > self.budget_seconds:
            return True
        return self.stop is not None and self.stop.is_set()

    def failed(self) -> None:
        """A failing example: note when the first came, and tell whoever asked."""
        if self.first_failure_at is not None:
            return
        self.first_failure_at = self.elapsed
        if self.on_failure is not None:
            self.on_failure()
        if self.report is not None:
            self.report(self)  # announced at once: shrinking may take a while
