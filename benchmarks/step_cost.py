"""What a harness step costs, and where the CPU goes.

Runs `check` (the ordinary machine, fixed seed, no shrinking) and accounts the CPU of each harness
thread to what it was doing, by wrapping the functions below with thread-CPU and wall timers.
The accounting is exclusive: a timed call inside another (a monitor sync inside an operation) is
charged to the inner one only. Wall time is the main thread's (the one that runs the session):
the sweep's wall is how long the main thread waited for it; the window probe, a thread of its
own that runs while operations take effect, has none.

- operation: `Session.apply` (model, then the stack: control plane, store, pods);
- convergence: `Stack.converge` (waiting on ACKs, reading what Envoy holds);
- probes: the sweep after each step (`routing_violations` and the requests its workers send)
  and the window probe's thread, shown apart;
- monitor: the xDS protocol monitor (`ProtocolMonitor.sync`/`settle`/`judge`, the relay's taps);
- other checks: the rest of `Session.check` (listener ports, readiness, consistency, counters);
- setup: `Session.start` and `Session.stop` (a stack per example).

"step CPU" is the whole harness process (every thread: xDS server, relay, echo pods, ...) plus
every child it reaped (each example's Envoy), divided by the operations applied; the categories
above are the harness's own threads only, so they add up to less.

Run: .venv/bin/python benchmarks/step_cost.py [--xds delta|sotw] [--max-examples N] [--seed S]
"""

from __future__ import annotations

import argparse
import functools
import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from harness.commands.check import CheckOptions, run_check
from harness.lockstep import session as session_module
from harness.lockstep.invariants import routing, window
from harness.lockstep.monitor.monitor import ProtocolMonitor
from harness.lockstep.monitor.wire import WireRecorder
from harness.lockstep.session import Session
from harness.lockstep.stack import Stack, StackSettings

CATEGORIES = (
    "operation",
    "convergence",
    "probe sweep",
    "probe window",
    "monitor",
    "other checks",
    "setup",
)
_cpu_spent = dict.fromkeys(CATEGORIES, 0.0)
_wall_spent = dict.fromkeys(CATEGORIES, 0.0)
_calls = dict.fromkeys(CATEGORIES, 0)
_lock = threading.Lock()
_frames = threading.local()


class _Frame:
    __slots__ = ("category", "cpu", "wall")

    def __init__(self, category: str) -> None:
        self.category = category
        self.cpu = time.thread_time()
        self.wall = time.monotonic()


def _charge(frame: _Frame) -> None:
    cpu, wall = time.thread_time(), time.monotonic()
    with _lock:
        _cpu_spent[frame.category] += cpu - frame.cpu
        if threading.current_thread() is threading.main_thread():
            _wall_spent[frame.category] += wall - frame.wall
    frame.cpu, frame.wall = cpu, wall


def _timed(category: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Charge the calling thread's CPU and wall time inside `function` to `category`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack: list[_Frame] = getattr(_frames, "stack", None) or []
        _frames.stack = stack
        if stack:
            _charge(stack[-1])
        stack.append(_Frame(category))
        with _lock:
            _calls[category] += 1
        try:
            return function(*args, **kwargs)
        finally:
            _charge(stack.pop())
            if stack:
                stack[-1].cpu, stack[-1].wall = time.thread_time(), time.monotonic()

    return wrapper


def _wrap(owner: Any, name: str, category: str) -> None:
    if hasattr(owner, name):
        setattr(owner, name, _timed(category, getattr(owner, name)))


def _instrument() -> None:
    _wrap(Session, "apply", "operation")
    _wrap(Session, "check", "other checks")
    _wrap(Session, "start", "setup")
    _wrap(Session, "stop", "setup")
    _wrap(Stack, "converge", "convergence")
    _wrap(session_module, "routing_violations", "probe sweep")
    # What the sweep's workers run (whichever this tree has) and the window's thread.
    _wrap(routing, "send", "probe sweep")
    _wrap(routing, "probe_many", "probe sweep")
    _wrap(window.WindowProbe, "_run", "probe window")
    for name in ("sync", "judge", "settle"):
        _wrap(ProtocolMonitor, name, "monitor")
    for name in ("connection_opened", "delivered", "connection_closed", "hold_changed"):
        _wrap(WireRecorder, name, "monitor")


def _cpu_split() -> tuple[float, float]:
    """(this process, its reaped children: every example's Envoy)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _cpu() -> float:
    return sum(_cpu_split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xds", choices=["delta", "sotw"], default="delta")
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    _instrument()

    started_split = _cpu_split()
    started_cpu, started = _cpu(), time.monotonic()
    result = run_check(
        CheckOptions(
            stack=StackSettings(mode=args.xds),
            max_examples=args.max_examples,
            seed=args.seed,
            shrink=False,
        )
    )
    cpu, wall = _cpu() - started_cpu, time.monotonic() - started
    steps = max(result.steps, 1)
    print(f"check: {'passed' if result.passed else 'FAILED'}, {result.examples} examples")
    if not result.passed:
        print(f"  {result.error}")
    print(
        f"wall {wall:.1f} s, {steps / wall:.2f} steps/s; step CPU {cpu:.1f} s"
        f" ({cpu / steps * 1000:.1f} ms/step), {steps} steps"
    )
    own, children = (now - then for now, then in zip(_cpu_split(), started_split, strict=True))
    print(
        f"  harness process {own / steps * 1000:.1f} ms/step,"
        f" Envoy processes {children / steps * 1000:.1f} ms/step"
    )
    print(f"{'per step':<14}{'CPU ms':>9}{'wall ms':>9}{'calls':>8}")
    for category in CATEGORIES:
        print(
            f"{category:<14}{_cpu_spent[category] / steps * 1000:>9.1f}"
            f"{_wall_spent[category] / steps * 1000:>9.1f}{_calls[category]:>8}"
        )
    probes = _cpu_spent["probe sweep"] + _cpu_spent["probe window"]
    print(f"{'probes (both)':<14}{probes / steps * 1000:>9.1f}")
    accounted = sum(_cpu_spent.values())
    print(f"{'accounted':<14}{accounted / steps * 1000:>9.1f}")


if __name__ == "__main__":
    main()
