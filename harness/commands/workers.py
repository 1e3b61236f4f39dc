"""Hypothesis engines in worker processes: N searches of one configuration sharing an example
database (`check --workers N`), or independent searches spread over N processes (the kill
table's pairs).

Rules of this module:
- A worker is a `spawn`ed process (never a fork of a process running gRPC threads), from a
  `ProcessPoolExecutor`; each runs the ordinary `run_check`, with its own stacks.
- Search `index` of a run seeded S is seeded `worker_seed(S, index)`; search 0 gets S itself, so
  `--workers 1` repeats the first engine of a wider run (given the same database contents).
- One stop flag per pool. Searches of one configuration set it at their first failure; every
  search reads it before each example and then starts none (`Progress.search_over`): the
  others stop within an example, the one that failed still shrinks. Ctrl-C in the parent sets
  it too; workers ignore SIGINT so their examples end cleanly (teardown stops each stack).
- A worker whose parent dies (SIGTERM, SIGKILL) sends itself SIGTERM: its children die with it
  (`harness.loopback.processes`: the registry is stopped on SIGTERM, and every child has
  PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.synchronize import Event

import attrs

from harness.commands.check import (
    CheckOptions,
    CheckResult,
    combine_results,
    progress_printer,
    run_check,
)
from harness.lockstep.machine import Progress

UNBOUNDED_EXAMPLES = 10_000
"""A search given this many examples or more is bounded by its time budget alone."""

__all__ = ["Search", "check_on_workers", "search_each", "worker_pool", "worker_seed"]


@attrs.frozen
class Search:
    """One engine's work: what to search, how its progress lines are labelled."""

    options: CheckOptions
    label: str
    stops_pool: bool = False
    """Its first failure stops the pool (the searches of one configuration)."""
    report_progress: bool = True


def worker_seed(run_seed: int, index: int) -> int:
    """The seed of search `index` of a run seeded `run_seed`: the run's own for the first, then
    64 bits of a hash (independent streams, stable across Python versions and processes)."""
    if index == 0:
        return run_seed
    digest = hashlib.sha256(f"routeproof worker {run_seed} {index}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def check_on_workers(options: CheckOptions, workers: int, label: str) -> CheckResult:
    """`workers` engines of one configuration, seeded from `options.seed` (which a parallel run
    needs), sharing `options.database`, with `options.max_examples` split between them; the
    first failure stops the others. The result adds up every engine's counts."""
    if options.seed is None:
        raise ValueError("a search on several workers needs a seed to derive theirs from")
    shares = [
        options.max_examples // workers + (1 if index < options.max_examples % workers else 0)
        for index in range(workers)
    ]
    searches = [
        Search(
            attrs.evolve(
                options,
                seed=worker_seed(options.seed, index),
                max_examples=share,
                derandomize=False,
            ),
            label=f"{label} {index + 1}/{workers}",
            stops_pool=True,
        )
        for index, share in enumerate(shares)
        if share > 0
    ]
    started = time.monotonic()
    results = [result for _, result in search_each(searches, workers)]
    return combine_results(results, time.monotonic() - started)


def search_each(
    searches: Sequence[Search],
    workers: int,
    on_progress: Callable[[str, Progress], None] | None = None,
) -> Iterator[tuple[int, CheckResult]]:
    """(index, result) of each search as it ends: in this process, in order, with one worker
    (`on_progress` then sees every step); else on a pool of `workers` processes, in the order
    they end (each worker prints its own progress). On Ctrl-C the pool stops: running searches
    end their example, the rest never start, and KeyboardInterrupt propagates."""
    if workers <= 1 or len(searches) <= 1:
        for index, search in enumerate(searches):
            report = _labelled(on_progress, search.label)
            yield index, run_check(search.options, report)
        return
    with worker_pool(min(workers, len(searches))) as (pool, stop):
        pending = {pool.submit(_search, search): index for index, search in enumerate(searches)}
        try:
            for future in concurrent.futures.as_completed(pending):
                yield pending[future], _result(future)
        except BaseException:  # Ctrl-C, or the consumer stopped early: stop the pool
            stop.set()
            for future in pending:
                future.cancel()
            concurrent.futures.wait(pending)
            raise


@contextlib.contextmanager
def worker_pool(
    workers: int,
) -> Iterator[tuple[concurrent.futures.ProcessPoolExecutor, Event]]:
    """`workers` spawned processes that ignore SIGINT and die with this one, and the pool's stop
    flag (each worker reads it as `_pool_stop`). Shared by every command that runs on workers."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_started,
        initargs=(stop,),
    ) as pool:
        yield pool, stop


def _result(future: concurrent.futures.Future[CheckResult]) -> CheckResult:
    """A search that died without a result (its worker crashed) is a failure without a
    counterexample, which the CLI reports as such."""
    try:
        return future.result()
    except Exception as error:
        return CheckResult(
            False, 0, 0, 0.0, error=f"worker failed: {type(error).__name__}: {error}"
        )


def _labelled(
    on_progress: Callable[[str, Progress], None] | None, label: str
) -> Callable[[Progress], None] | None:
    if on_progress is None:
        return None

    def report(progress: Progress) -> None:
        on_progress(label, progress)

    return report


# ------------------------------------------------------------------ in the worker

_pool_stop: Event | None = None


def _worker_started(stop: Event) -> None:
    global _pool_stop  # noqa: PLW0603 (one per worker process, set once)
    _pool_stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_die_with_parent, args=(parent,), name="routeproof-parent-watch", daemon=True
        ).start()


def _die_with_parent(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # a spawned child's view of its parent: returns when the parent is gone
    os.kill(os.getpid(), signal.SIGTERM)


def _search(search: Search) -> CheckResult:
    stop = _pool_stop
    report = None
    if search.report_progress:
        # A time-budgeted search without an example budget runs up to a huge max_examples.
        unbounded = search.options.budget_seconds is not None and search.options.max_examples >= (
            UNBOUNDED_EXAMPLES
        )
        report = progress_printer(search.label, 0 if unbounded else search.options.max_examples)
    result = run_check(
        search.options,
        report,
        stop=stop,
        on_failure=stop.set if stop is not None and search.stops_pool else None,
    )
    if result.passed:
        stopped = (
            stop is not None and stop.is_set() and result.examples < search.options.max_examples
        )
        verdict = "stopped: the pool is done" if stopped else "passed"
    else:
        verdict = f"failed at {result.seconds_to_failure or 0.0:.1f} s"
    print(f"[{search.label}] {verdict} after {result.examples} examples", file=sys.stderr)
    sys.stderr.flush()
    return result
