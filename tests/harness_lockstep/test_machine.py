"""The state machine against real Envoy, under the active Hypothesis profile, in both modes."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from harness.lockstep.machine import Progress, machine_for
from harness.lockstep.stack import StackSettings

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_the_default_sut_keeps_every_invariant(mode):
    progress = Progress()
    machine = machine_for(StackSettings(mode=mode), progress)
    run_state_machine_as_test(machine, settings=settings())
    assert progress.examples > 0
    assert progress.final is None
