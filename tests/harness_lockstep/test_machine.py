"""The state machine against real Envoy, under the active Hypothesis profile, in both modes."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from harness.lockstep.machine import Progress, machine_for
from harness.lockstep.stack import StackSettings
from harness.loopback import processes
from harness.loopback.spares import SpareEnvoys

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_the_default_sut_keeps_every_invariant(mode):
    """As `harness check` runs it: each example's Envoy was parked while the last one ran."""
    progress = Progress()
    before = set(processes.live_children())
    with SpareEnvoys() as spares:
        machine = machine_for(StackSettings(mode=mode), progress, spares)
        run_state_machine_as_test(machine, settings=settings())
    assert progress.examples > 0
    assert progress.final is None
    assert spares.stats.taken >= 1
    assert set(processes.live_children()) == before  # no example, and no spare, left a process
