"""Child processes that never outlive the harness.

Rules of this module:
- Every child is started by `spawn()`: in its own process group (a signal to the group reaches
  anything it forks) and with PR_SET_PDEATHSIG=SIGKILL, so the kernel kills it even when the
  Python process is SIGKILLed and no Python code runs.
- PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process. So a
  child is always forked by a thread that lives as long as the interpreter: the main thread, or
  one dedicated spawner thread when `spawn()` is called from any other thread.
- Live children sit in a registry; `atexit` and SIGTERM (when nobody else handles it) stop
  them. `stop()` is SIGTERM to the group, then SIGKILL after a deadline, and always reaps.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import queue
import select
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import FrameType
from typing import IO

__all__ = ["live_children", "spawn", "stop", "stop_all"]

_PR_SET_PDEATHSIG = 1

# Reentrant: the SIGTERM handler runs on the main thread, possibly while it holds the lock.
_registry_lock = threading.RLock()
_registry: set[subprocess.Popen[bytes]] = set()


class _Hooks:
    """What this module has installed in the interpreter (once each)."""

    atexit = False
    sigterm = False
    spawner: _Spawner | None = None


def _load_prctl() -> Callable[..., int] | None:
    """Resolve prctl in the parent, so the forked child only makes one foreign call."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()
_SIGKILL = ctypes.c_ulong(int(signal.SIGKILL))
_ZERO = ctypes.c_ulong(0)


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: runs in the child between fork and exec."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL, _ZERO, _ZERO, _ZERO)
    if os.getppid() != parent_pid:
        # The parent died before prctl took effect: no signal will ever come.
        os._exit(1)


class _Spawner:
    """One long-lived daemon thread that forks children for callers on short-lived threads."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="routeproof-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            start, result = self._requests.get()
            if not result.set_running_or_notify_cancel():
                continue
            try:
                result.set_result(start())
            except BaseException as error:  # handed back to the caller's thread
                result.set_exception(error)

    def submit(self, start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        result: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((start, result))
        return result.result()


def _spawner_thread() -> _Spawner:
    with _registry_lock:
        if _Hooks.spawner is None:
            _Hooks.spawner = _Spawner()
        return _Hooks.spawner


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a registered child in its own process group that dies with this process."""
    _install_exit_hooks()
    parent_pid = os.getpid()

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [os.fspath(arg) for arg in args],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            process_group=0,
            # The only way to set PDEATHSIG; the child makes one pre-resolved foreign call.
            preexec_fn=lambda: _die_with_parent(parent_pid),  # noqa: PLW1509
            close_fds=True,
        )

    if threading.current_thread() is threading.main_thread():
        process = start()
    else:
        process = _spawner_thread().submit(start)
    with _registry_lock:
        _registry.add(process)
    return process


def live_children() -> tuple[subprocess.Popen[bytes], ...]:
    """Registered children not yet stopped (some may have exited on their own)."""
    with _registry_lock:
        return tuple(_registry)


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # Only while the leader is unreaped: its pid (= the group id) cannot be reused before that.
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to `timeout` for the child to exit (without reaping); True if it did.

    A pidfd wakes us the moment it exits; Popen.wait(timeout) polls with growing sleeps and
    adds several milliseconds to every Envoy restart."""
    try:
        descriptor = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], timeout)
        return bool(readable)
    finally:
        os.close(descriptor)


def stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM the child's group, SIGKILL it after `timeout` seconds; reap; return the exit code."""
    try:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            if not _wait_exit(process, max(timeout, 0.0)):
                _signal_group(process, signal.SIGKILL)
            process.wait()
        else:
            # The leader is gone; anything left in its group has no reason to live either.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        return process.returncode
    finally:
        with _registry_lock:
            _registry.discard(process)


def stop_all(timeout: float = 2.0) -> None:
    """Stop every registered child: all get SIGTERM first, then the stragglers SIGKILL."""
    children = live_children()
    for child in children:
        if child.poll() is None:
            _signal_group(child, signal.SIGTERM)
    for child in children:
        stop(child, timeout=timeout)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stop_all(timeout=1.0)
    # Die the way SIGTERM would have killed us, so the parent sees the right status.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_exit_hooks() -> None:
    """atexit always; SIGTERM only from the main thread and only if no one else claimed it."""
    with _registry_lock:
        if not _Hooks.atexit:
            atexit.register(stop_all)
            _Hooks.atexit = True
        if _Hooks.sigterm or threading.current_thread() is not threading.main_thread():
            return
        _Hooks.sigterm = True
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)
