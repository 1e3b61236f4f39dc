"""No process outlives its parent: PDEATHSIG, the exit hooks and stop()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.loopback import processes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def gone(pid: int) -> bool:
    """True once `pid` no longer runs: no such process, or a zombie nobody reaped yet."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.01)
    return gone(pid)


def signal_state(pid: int) -> str:
    """The kernel's view of a process's signals, for a failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError as error:
        return f"no status: {error}"
    wanted = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    return ", ".join(line for line in lines if line.split(":")[0] in wanted)


def kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def start_parent(body: str) -> subprocess.Popen[str]:
    """A Python parent process running `body`; it prints its child's pid on the first line."""
    script = "import sys, time\nfrom harness.loopback import processes\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )


def read_child_pid(parent: subprocess.Popen[str]) -> int:
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.strip().isdigit(), f"parent printed {line!r}"
    return int(line)


def test_child_dies_when_parent_is_sigkilled():
    parent = start_parent(
        """
        child = processes.spawn([sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    child_pid = None
    try:
        child_pid = read_child_pid(parent)
        assert not gone(child_pid)
        parent.send_signal(signal.SIGKILL)  # no Python code runs in the parent after this
        parent.wait(timeout=10)
        assert wait_gone(child_pid, timeout=5.0), "child outlived its SIGKILLed parent"
    finally:
        parent.kill()
        parent.wait()
        if child_pid is not None:
            kill_quietly(child_pid)


def test_children_are_stopped_at_interpreter_exit():
    parent = start_parent(
        """
        child = processes.spawn([sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.pid, flush=True)
        """
    )
    child_pid = None
    try:
        child_pid = read_child_pid(parent)
        assert parent.wait(timeout=10) == 0
        # atexit reaps it before the parent exits, so it is gone already (no polling needed).
        assert gone(child_pid)
    finally:
        parent.kill()
        parent.wait()
        if child_pid is not None:
            kill_quietly(child_pid)


def test_sigterm_to_parent_stops_children_and_parent_dies_of_sigterm():
    parent = start_parent(
        """
        child = processes.spawn([sys.executable, "-c", "import time; time.sleep(120)"])
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )
    child_pid = None
    try:
        child_pid = read_child_pid(parent)
        parent.send_signal(signal.SIGTERM)
        try:
            status = parent.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the parent ignored SIGTERM for 30 s; {signal_state(parent.pid)}")
        assert status == -signal.SIGTERM
        assert gone(child_pid)
    finally:
        parent.kill()
        parent.wait()
        if child_pid is not None:
            kill_quietly(child_pid)


def test_stop_escalates_to_sigkill_and_reaps():
    child = processes.spawn(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
        assert child in processes.live_children()
        began = time.monotonic()
        code = processes.stop(child, timeout=0.3)
        assert code == -signal.SIGKILL
        assert 0.3 <= time.monotonic() - began < 5.0
        assert child not in processes.live_children()
        assert gone(child.pid)
        assert processes.stop(child) == -signal.SIGKILL  # idempotent
    finally:
        processes.stop(child, timeout=0)
        if child.stdout is not None:
            child.stdout.close()


def test_stop_of_a_cooperative_child_is_sigterm():
    child = processes.spawn(SLEEPER)
    try:
        assert processes.stop(child, timeout=5.0) == -signal.SIGTERM
    finally:
        processes.stop(child, timeout=0)


def test_child_in_its_own_process_group():
    child = processes.spawn(SLEEPER)
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    finally:
        processes.stop(child)


def test_child_spawned_from_a_short_lived_thread_survives_the_thread():
    """PDEATHSIG follows the forking thread; spawn() must not let that kill the child early."""
    spawned: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(target=lambda: spawned.append(processes.spawn(SLEEPER)))
    thread.start()
    thread.join()
    (child,) = spawned
    try:
        # A child killed by PDEATHSIG dies right after the thread exits; give it a window.
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.3)
    finally:
        processes.stop(child)
