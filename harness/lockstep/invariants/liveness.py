"""Liveness: every operation's effect, or the failure policy's outcome, reaches the proxy within a
bound computed from the settings.

A translation calls hooks once per route, virtual host and listener, so a per-call deadline
alone lets a hanging extension multiply the wait; the control plane gives the whole translation
a budget of its own (fail-open too). The bound of a step is therefore

    (number of control-plane reconciles) x (translation budget + RECONCILE_SLACK)
    + the convergence bound (half the initial_fetch_timeout, plus the reconnect allowance
      after a restart or a cut),

and this invariant checks its first part, reconcile by reconcile; the convergence invariant
checks the second. A reconcile that overruns says what it was waiting on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.lockstep.verdict import Violation

if TYPE_CHECKING:
    from harness.lockstep.stack import Reconcile

__all__ = ["RECONCILE_SLACK", "liveness_violations", "step_bound"]

RECONCILE_SLACK = 0.25
"""Seconds a reconcile may take beyond its translation budget: translating, validating and
publishing a small world, on a loaded 2-core machine."""


def step_bound(reconciles: int, budget: float, convergence_bound: float) -> float:
    return reconciles * (budget + RECONCILE_SLACK) + convergence_bound


def liveness_violations(reconciles: Sequence[Reconcile], budget: float) -> list[Violation]:
    late = [item for item in reconciles if item.seconds > budget + RECONCILE_SLACK]
    if not late:
        return []
    return [
        Violation(
            "liveness",
            f"{len(late)} reconcile(s) overran the translation budget of {budget:g} s"
            f" (+{RECONCILE_SLACK:g} s to translate and publish)",
            tuple(
                f"reconcile took {item.seconds:.2f} s and ended {item.outcome}: waiting on the"
                f" extension hooks{(' (' + item.error[:160] + ')') if item.error else ''}"
                for item in late
            ),
        )
    ]
