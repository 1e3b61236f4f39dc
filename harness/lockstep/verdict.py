"""What an invariant reports, and how strongly the specification demands it."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

__all__ = ["Inconclusive", "InvariantViolated", "Strength", "Violation"]


class Strength(enum.StrEnum):
    """RFC 2119 strength of the rule broken: a MUST fails `check`; a SHOULD fails only under
    `--strict-protocol`."""

    MUST = "MUST"
    SHOULD = "SHOULD"


@attrs.frozen
class Violation:
    invariant: str
    summary: str
    details: tuple[str, ...] = ()
    strength: Strength = Strength.MUST

    def describe(self) -> str:
        should = " (SHOULD)" if self.strength is Strength.SHOULD else ""
        lines = [f"invariant '{self.invariant}'{should} violated: {self.summary}"]
        lines += [f"  - {detail}" for detail in self.details]
        return "\n".join(lines)


class InvariantViolated(AssertionError):
    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("\n".join(v.describe() for v in violations))
        self.violations = tuple(violations)


class Inconclusive(Exception):
    """The environment broke an assumption the model rests on (not the SUT): the example says
    nothing either way, so it is discarded, never counted as passed or failed."""
