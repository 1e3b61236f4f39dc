"""The stack with spare Envoys: each Envoy start takes a parked process, and nothing tells it
from a fresh one (the invariants hold, no fetch timed out), however long it was parked."""

from __future__ import annotations

import time

import pytest

from harness.lockstep.operations import RestartEnvoy
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.loopback import processes
from harness.loopback.envoy import LaunchOptions
from harness.loopback.spares import SpareEnvoys

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_spares_parked_longer_than_the_fetch_timeout_serve_like_fresh_envoys(mode):
    settings = StackSettings(mode=mode)
    before = set(processes.live_children())
    spares = SpareEnvoys()
    session = Session(settings, spares)
    try:
        spares.refill(LaunchOptions())
        parked = spares.spare
        assert parked is not None
        first = parked.pid
        time.sleep(1.5 * settings.initial_fetch_timeout)  # a running fetch clock would fire
        session.start()
        stack = session.stack
        assert stack.envoy is not None and stack.envoy.pid == first
        assert session.check() == []
        assert stack.init_fetch_timeouts() == {}

        refilled = spares.spare
        assert refilled is not None and refilled.pid != first
        second = refilled.pid
        time.sleep(1.5 * settings.initial_fetch_timeout)
        session.apply(RestartEnvoy())
        assert stack.envoy.pid == second
        assert session.check() == []
        assert stack.init_fetch_timeouts() == {}
        assert (spares.stats.taken, spares.stats.missing) == (2, 0)
    finally:
        session.stop()
        spares.close()
    assert set(processes.live_children()) == before


def test_a_stack_without_spares_spawns_its_own_envoy():
    before = set(processes.live_children())
    session = Session(StackSettings())
    try:
        session.start()
        assert session.stack.spares is None
        assert session.check() == []
    finally:
        session.stop()
    assert set(processes.live_children()) == before
