"""A step is inconclusive only when a healthy extension waited out its whole deadline: the
environment starved it. Every other extension failure stays the SUT's to answer for."""

from __future__ import annotations

import pytest

from harness.lockstep.records import Reconcile
from harness.lockstep.session import starved_extension
from harness.lockstep.stack import StackSettings
from model import Extension, ModelState

SETTINGS = StackSettings(extension_deadline=0.2)
HEALTHY = ModelState()
FAILING = ModelState(extension=Extension(failing="hang", failing_hooks=frozenset({"*"})))
DEADLINE = "extension hook PostRouteModify failed (deadline): DEADLINE_EXCEEDED"


def _reconcile(error: str, hook_seconds: float) -> Reconcile:
    return Reconcile(0.0, hook_seconds, "kept-last-good", error, hook_seconds)


def test_a_healthy_extension_that_waited_out_its_deadline_makes_the_step_inconclusive():
    why = starved_extension([_reconcile(DEADLINE, 0.41)], HEALTHY, HEALTHY, SETTINGS)
    assert "missed its 0.20 s deadline" in why and "0.41 s" in why


@pytest.mark.parametrize(
    ("error", "seconds", "before", "after"),
    [
        (DEADLINE, 0.01, HEALTHY, HEALTHY),  # failed faster than its deadline: a SUT bug
        ("extension hook X failed (unavailable): gone", 0.5, HEALTHY, HEALTHY),
        (DEADLINE, 0.41, FAILING, FAILING),  # the model knows the extension hangs
        (DEADLINE, 0.41, HEALTHY, FAILING),
        ("", 0.0, HEALTHY, HEALTHY),
    ],
)
def test_every_other_failure_is_judged(error, seconds, before, after):
    assert starved_extension([_reconcile(error, seconds)], before, after, SETTINGS) == ""


def test_no_extension_is_never_starved():
    bare = ModelState(extension=None)
    assert starved_extension([_reconcile(DEADLINE, 0.41)], bare, bare, SETTINGS) == ""
