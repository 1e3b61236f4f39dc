"""Parked Envoys and the spare pool: a spare is a fresh Envoy whose clock starts at hand-over."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.loopback import (
    AdsServer,
    EnvoyBootstrap,
    EnvoyError,
    EnvoyExitedError,
    EnvoyProcess,
    processes,
)
from harness.loopback.envoy import LaunchOptions, ParkedEnvoy
from harness.loopback.spares import SpareEnvoys

from .test_envoy import STATIC, process_gone
from .test_processes import PROJECT_ROOT, gone, kill_quietly, wait_gone

pytestmark = pytest.mark.envoy

FETCH_TIMEOUT = 0.5


@pytest.fixture
def silent_ads() -> Iterator[int]:
    """A port that completes TCP handshakes (the kernel's backlog) but never answers: Envoy's
    ADS stream opens and its requests go unanswered, so only its fetch timers move."""
    with socket.socket() as sink:
        sink.bind(("127.0.0.1", 0))
        sink.listen(8)
        yield sink.getsockname()[1]


@pytest.fixture
def spares() -> Iterator[SpareEnvoys]:
    pool = SpareEnvoys()
    try:
        yield pool
    finally:
        pool.close()


def silent_bootstrap(port: int) -> EnvoyBootstrap:
    ads = AdsServer("127.0.0.1", port, initial_fetch_timeout=FETCH_TIMEOUT)
    return EnvoyBootstrap(node_id="parked-node", ads=ads)


def fetch_timeouts(envoy: EnvoyProcess) -> dict[str, int]:
    return envoy.admin.stats(filter="init_fetch_timeout")


def wait_parked(parked: ParkedEnvoy, timeout: float = 5.0) -> None:
    """Until Envoy blocks opening its bootstrap FIFO (so a test's wait is really parked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _reads_fifo(parked.pid):
            return
        time.sleep(0.005)
    raise AssertionError("parked Envoy never opened its bootstrap")


def _reads_fifo(pid: int) -> bool:
    """The kernel's word for a process blocked opening a FIFO no one writes."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


def test_a_parked_envoy_starts_its_fetch_timers_at_hand_over(silent_ads):
    """What the relay-hold alternative cannot give: Envoy starts `initial_fetch_timeout` when a
    subscription starts, not when its stream gets answers, so a held stream times out on its
    own clock. A parked Envoy has no subscription before its bootstrap arrives."""
    parked = ParkedEnvoy().launch()
    pid = parked.pid
    wait_parked(parked)
    time.sleep(3 * FETCH_TIMEOUT)  # longer than the timeout: a running clock would fire
    envoy = EnvoyProcess(silent_bootstrap(silent_ads))
    try:
        envoy.start(parked=parked)
        handed_over = envoy.started_at
        assert handed_over is not None
        assert envoy.pid == pid
        assert stat.S_ISREG(envoy.bootstrap_path.stat().st_mode)
        assert envoy.bootstrap_path.read_text() == envoy.bootstrap.to_json()
        timeouts, state = fetch_timeouts(envoy), envoy.admin.ready_state()
        if time.monotonic() - handed_over < FETCH_TIMEOUT:  # else a slow machine: see below
            assert set(timeouts.values()) == {0}
            assert state == "PRE_INITIALIZING"
        while not fetch_timeouts(envoy).get("cluster_manager.cds.init_fetch_timeout"):
            assert time.monotonic() - handed_over < 10 * FETCH_TIMEOUT, "CDS never timed out"
            time.sleep(0.01)
        assert time.monotonic() - handed_over >= FETCH_TIMEOUT
    finally:
        envoy.stop()
    assert process_gone(pid)


def test_a_held_stream_does_not_stop_the_fetch_clock(silent_ads):
    """The measurement behind the design: Envoy connected to a server that never answers
    counts the fetch timeout from launch."""
    with EnvoyProcess(silent_bootstrap(silent_ads)) as envoy:
        assert envoy.started_at is not None
        while not fetch_timeouts(envoy).get("cluster_manager.cds.init_fetch_timeout"):
            assert time.monotonic() - envoy.started_at < 10 * FETCH_TIMEOUT
            time.sleep(0.01)
        assert envoy.admin.stats(filter="connected_state") == {"control_plane.connected_state": 1}


def test_a_parked_envoy_serves_its_bootstrap():
    parked = ParkedEnvoy().launch()
    envoy = EnvoyProcess(STATIC)
    try:
        envoy.start(parked=parked)
        envoy.wait_ready()
        assert envoy.admin.listener_ports()["direct"]
    finally:
        envoy.stop()


def test_start_refuses_a_parked_envoy_launched_with_other_options():
    parked = ParkedEnvoy(LaunchOptions(log_level="debug")).launch()
    pid = parked.pid
    envoy = EnvoyProcess(STATIC)
    with pytest.raises(EnvoyError, match="parked Envoy has"):
        envoy.start(parked=parked)
    assert process_gone(pid)
    assert not envoy.running


def test_a_parked_envoy_that_died_fails_the_start_and_leaves_nothing():
    parked = ParkedEnvoy().launch()
    pid = parked.pid
    os.kill(pid, signal.SIGKILL)
    envoy = EnvoyProcess(STATIC)
    with pytest.raises(EnvoyExitedError):
        envoy.start(parked=parked)
    assert process_gone(pid)
    assert not envoy.running
    assert all(child.pid != pid for child in processes.live_children())


def test_stop_of_a_parked_envoy_kills_it_and_removes_its_directory():
    parked = ParkedEnvoy().launch()
    pid, workdir = parked.pid, parked.workdir
    assert workdir is not None and stat.S_ISFIFO((workdir / "bootstrap.json").stat().st_mode)
    parked.stop()
    assert process_gone(pid)
    assert not workdir.exists()
    parked.stop()  # idempotent
    with pytest.raises(EnvoyError):
        parked.hand_over()


# -- the pool ------------------------------------------------------------------------------------


def test_take_without_a_spare_gives_none(spares):
    assert spares.take(LaunchOptions()) is None
    assert spares.stats.missing == 1


def test_a_fresh_spare_is_taken_once_and_refilled(spares):
    options = LaunchOptions()
    spares.refill(options)
    parked = spares.spare
    assert parked is not None and parked.running
    spares.refill(options)  # one spare at a time
    assert spares.spare is parked and spares.stats.launched == 1
    assert spares.take(options) is parked
    assert spares.spare is None
    envoy = EnvoyProcess(STATIC)
    try:
        envoy.start(parked=parked)
        envoy.wait_ready()
        spares.refill(envoy.options)
        assert spares.spare is not None and spares.spare.pid != envoy.pid
    finally:
        envoy.stop()
    assert (spares.stats.taken, spares.stats.launched) == (1, 2)


def test_a_spare_older_than_max_age_is_discarded():
    with SpareEnvoys(max_age=0.05) as spares:
        spares.refill(LaunchOptions())
        parked = spares.spare
        assert parked is not None
        pid = parked.pid
        time.sleep(0.1)
        assert spares.take(LaunchOptions()) is None
        assert process_gone(pid)
        assert (spares.stats.discarded, spares.stats.missing) == (1, 1)


def test_a_spare_with_other_options_is_discarded(spares):
    spares.refill(LaunchOptions(log_level="debug"))
    parked = spares.spare
    assert parked is not None
    pid = parked.pid
    assert spares.take(LaunchOptions()) is None
    assert process_gone(pid)
    assert spares.stats.discarded == 1


def test_a_spare_that_exited_is_discarded(spares):
    spares.refill(LaunchOptions())
    parked = spares.spare
    assert parked is not None
    pid = parked.pid
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid, timeout=5.0)
    assert spares.take(LaunchOptions()) is None
    assert process_gone(pid)
    assert spares.stats.discarded == 1


def test_close_stops_the_spare_and_the_pool_parks_no_more():
    before = set(processes.live_children())
    spares = SpareEnvoys()
    spares.refill(LaunchOptions())
    parked = spares.spare
    assert parked is not None and parked.workdir is not None
    pid, workdir = parked.pid, parked.workdir
    spares.close()
    assert process_gone(pid)
    assert not workdir.exists()
    spares.close()  # idempotent
    spares.refill(LaunchOptions())
    assert spares.spare is None
    assert spares.take(LaunchOptions()) is None
    assert set(processes.live_children()) == before


def test_a_spare_is_stopped_at_interpreter_exit():
    script = textwrap.dedent(
        """
        from harness.loopback.envoy import LaunchOptions
        from harness.loopback.spares import SpareEnvoys
        spares = SpareEnvoys()
        spares.refill(LaunchOptions())
        print(spares.spare.pid, spares.spare.workdir, flush=True)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    pid = None
    try:
        assert parent.stdout is not None
        pid_text, workdir = parent.stdout.readline().split()
        pid = int(pid_text)
        assert parent.wait(timeout=30) == 0
        assert gone(pid)
        assert not os.path.exists(workdir)
    finally:
        parent.kill()
        parent.wait()
        if pid is not None:
            kill_quietly(pid)
