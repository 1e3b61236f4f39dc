"""What the xDS protocol monitor costs: its CPU as a share of a step's CPU.

Runs `check` (the ordinary machine, fixed seed) and accounts CPU time by who spends it:

- monitor: the thread CPU of every monitor call that decodes and judges (`ProtocolMonitor.sync`
  and `judge`, which drain the relay tap, decode HTTP/2 + gRPC + protobuf and apply the rules),
  plus the relay thread's tap calls;
- step: the whole harness process (model, machine, stack, xDS server, control plane, relay,
  echo pods, probes, monitor) plus every child process it reaped (each example's Envoy).

Run: .venv/bin/python benchmarks/monitor_cost.py [--xds delta|sotw] [--max-examples N] [--seed S]
The last line is `monitor: X % of step CPU (A ms of B ms per step), N steps`.
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
from harness.lockstep.monitor.monitor import ProtocolMonitor
from harness.lockstep.monitor.wire import WireRecorder
from harness.lockstep.stack import StackSettings

_spent = {"monitor": 0.0}
_lock = threading.Lock()
_depth = threading.local()


def _timed(function: Callable[..., Any]) -> Callable[..., Any]:
    """Count the calling thread's CPU inside `function` (outermost call only: judge calls sync)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            _depth.value = depth
            if depth == 0:
                with _lock:
                    _spent["monitor"] += time.thread_time() - started

    return wrapper


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xds", choices=["delta", "sotw"], default="delta")
    parser.add_argument("--max-examples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--strict-protocol", action="store_true")
    args = parser.parse_args()

    for name in ("sync", "judge"):
        setattr(ProtocolMonitor, name, _timed(getattr(ProtocolMonitor, name)))
    for name in ("connection_opened", "delivered", "connection_closed", "hold_changed"):
        setattr(WireRecorder, name, _timed(getattr(WireRecorder, name)))

    started_cpu, started = _cpu(), time.monotonic()
    result = run_check(
        CheckOptions(
            stack=StackSettings(mode=args.xds, strict_protocol=args.strict_protocol),
            max_examples=args.max_examples,
            seed=args.seed,
            shrink=False,
        )
    )
    cpu, wall = _cpu() - started_cpu, time.monotonic() - started
    steps = max(result.steps, 1)
    monitor = _spent["monitor"]
    print(f"check: {'passed' if result.passed else 'FAILED'}, {result.examples} examples")
    per_step = cpu / steps * 1000
    rate = steps / wall
    print(f"wall {wall:.1f} s, {rate:.1f} steps/s; CPU {cpu:.1f} s ({per_step:.1f} ms/step)")
    print(
        f"monitor: {100 * monitor / cpu:.1f} % of step CPU ({monitor / steps * 1000:.2f} ms of"
        f" {cpu / steps * 1000:.1f} ms per step), {steps} steps"
    )


if __name__ == "__main__":
    main()
