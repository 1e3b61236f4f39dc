"""`harness explore`: every short sequence, run against the real stack, on every core.

The plan (`harness.lockstep.exploration`) lists the sequences breadth first over abstract states;
this module runs them, each on a fresh stack (Envoy, control plane, extension, pods) with every
invariant checked after every step, shortest first, spread over worker processes. The first
failure stops the run: its failing prefix is the counterexample, reported and saved for replay
like `check`'s (breadth first already makes it short; nothing needs shrinking).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence

import attrs

from harness.commands.workers import worker_pool
from harness.lockstep import extensions
from harness.lockstep.alphabet import ALPHABETS, Letter, alphabet
from harness.lockstep.exploration import Move, Plan, plan
from harness.lockstep.machine import Failure
from harness.lockstep.session import Session, initial_pods
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Inconclusive, Violation
from harness.lockstep.worlds import SECOND_GATEWAY, initial_world
from model import Extension, ModelState

__all__ = [
    "ExploreOptions",
    "ExploreResult",
    "default_alphabet",
    "initial_model",
    "run_explore",
    "run_sequence",
]

FULL_ALPHABET_DEPTH = 2
"""Up to this depth the full alphabet; beyond it the coarse one (their sizes: `alphabet`)."""


def default_alphabet(depth: int) -> str:
    return "full" if depth <= FULL_ALPHABET_DEPTH else "coarse"


@attrs.frozen
class ExploreOptions:
    stack: StackSettings
    depth: int
    alphabet: str = "coarse"
    workers: int = 1
    exhaustive: bool = False
    letters: tuple[Letter, ...] | None = None
    """Explore over these letters instead of a named alphabet (tests)."""


@attrs.frozen
class SequenceResult:
    steps: int
    failure: Failure | None = None


@attrs.frozen
class ExploreResult:
    plan: Plan
    sequences_run: int
    steps: int
    seconds: float
    failure: Failure | None = None
    kinds: dict[str, int] = attrs.field(factory=dict)
    """How many atomic operations of each kind the sequences run applied."""

    @property
    def passed(self) -> bool:
        return self.failure is None


def initial_model(settings: StackSettings) -> ModelState:
    """The model state a fresh session starts in (`Session.start`)."""
    extension = Extension(fail_open=settings.fail_open) if settings.extension else None
    model = ModelState(extension=extension, policy=str(settings.failure_policy))
    model = model.with_proxies(settings.proxies)
    if settings.gateways == 2:
        model = model.with_fleet(SECOND_GATEWAY)
    return model.started(initial_world(initial_pods()))


def run_sequence(settings: StackSettings, moves: Sequence[Move]) -> SequenceResult:
    """One sequence on a fresh stack, every invariant after every step; stops at a violation."""
    session = Session(settings)
    steps = 0
    try:
        session.start()
        violations = session.check()
        if violations:
            return SequenceResult(0, _failure(session, violations))
        for move in moves:
            try:
                session.apply(move.operation)
            except Inconclusive:  # the environment starved the SUT: this sequence says nothing
                return SequenceResult(steps)
            except Exception as error:  # a crash of the SUT or the stack is a counterexample
                crash = Violation("no-crash", f"{type(error).__name__}: {error}")
                return SequenceResult(steps, _failure(session, [crash]))
            steps += 1
            violations = session.check()
            if violations:
                return SequenceResult(steps, _failure(session, violations))
        return SequenceResult(steps)
    finally:
        session.stop()


def _failure(session: Session, violations: Sequence[Violation]) -> Failure:
    return Failure(
        steps=session.trace,
        violations=tuple(violations),
        exchanges=tuple(session.exchanges_of_step()),
    )


def run_explore(
    options: ExploreOptions, on_progress: Callable[[str], None] | None = None
) -> ExploreResult:
    letters = options.letters or (
        *alphabet(
            options.alphabet, options.stack.proxies, options.stack.transport, options.stack.gateways
        ),
        *extensions.load(options.stack.extensions).letters,
    )
    the_plan = plan(
        initial_model(options.stack), letters, options.depth, exhaustive=options.exhaustive
    )
    started = time.monotonic()
    kinds: dict[str, int] = {}
    run = steps = 0
    failures: list[Failure] = []
    last_report = [0.0]

    def account(moves: Sequence[Move], result: SequenceResult) -> None:
        nonlocal run, steps
        run += 1
        steps += result.steps
        for move in moves[: result.steps]:
            kinds[move.operation.kind] = kinds.get(move.operation.kind, 0) + 1
        if result.failure is not None:
            failures.append(result.failure)
        now = time.monotonic()
        if on_progress is not None and (now - last_report[0] >= 2.0 or result.failure):
            last_report[0] = now
            on_progress(
                f"sequences {run}/{len(the_plan.sequences)}, steps {steps},"
                f" {now - started:.0f} s" + (", FAILED" if failures else "")
            )

    for moves, result in _results(options, the_plan.sequences, stop=lambda: bool(failures)):
        account(moves, result)
    failure = min(failures, key=lambda item: len(item.steps)) if failures else None
    return ExploreResult(
        plan=the_plan,
        sequences_run=run,
        steps=steps,
        seconds=time.monotonic() - started,
        failure=failure,
        kinds=dict(sorted(kinds.items())),
    )


def _results(
    options: ExploreOptions,
    sequences: Sequence[tuple[Move, ...]],
    stop: Callable[[], bool],
) -> Iterable[tuple[tuple[Move, ...], SequenceResult]]:
    """Each sequence's result as it completes: in this process with one worker, else on a pool
    of processes (each its own stacks); after `stop()` turns true nothing new starts."""
    if options.workers <= 1:
        for moves in sequences:
            if stop():
                return
            yield moves, run_sequence(options.stack, moves)
        return
    with worker_pool(options.workers) as (pool, _):
        pending = {pool.submit(run_sequence, options.stack, moves): moves for moves in sequences}
        try:
            for future in concurrent.futures.as_completed(pending):
                yield pending[future], future.result()
                if stop():
                    break
        finally:
            for future in pending:
                future.cancel()


def coverage_summary(options: ExploreOptions, result: ExploreResult) -> str:
    letters = options.letters or (
        *alphabet(
            options.alphabet, options.stack.proxies, options.stack.transport, options.stack.gateways
        ),
        *extensions.load(options.stack.extensions).letters,
    )
    the_plan = result.plan
    pruning = "no pruning" if the_plan.exhaustive else "pruned on abstract states"
    fleet = f", {options.stack.proxies} proxies" if options.stack.proxies > 1 else ""
    if options.stack.transport != "ads":
        fleet = f" {options.stack.transport}{fleet}"
    return (
        f"explore: {options.stack.mode}{fleet}, depth {the_plan.depth}, {options.alphabet} alphabet"
        f" ({len(letters)} letters), {pruning}: {the_plan.states} abstract states"
        f" ({the_plan.expanded} expanded), {the_plan.transitions} transitions;"
        f" {result.sequences_run} of {len(the_plan.sequences)} sequences run"
        f" ({result.steps} steps) in {result.seconds:.0f} s with {options.workers} worker(s)"
    )


def print_progress(label: str) -> Callable[[str], None]:
    def report(line: str) -> None:
        print(f"[{label}] {line}", file=sys.stderr, flush=True)

    return report


# ------------------------------------------------------------------ command line


def add_explore_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    add_sut_options: Callable[..., None],
    stack_settings: Callable[[argparse.Namespace, str, str], StackSettings],
) -> None:
    parser = commands.add_parser(
        "explore",
        help="bounded-exhaustive: every (abstract state, operation) transition within --depth",
        description="Run every sequence of at most --depth atomic operations that reaches a new"
        " abstract state (model state plus the history the model forgets: cuts, holds, restarts,"
        " rejected updates, pending extension changes), each on a fresh stack. Full alphabet up"
        f" to depth {FULL_ALPHABET_DEPTH}, coarse beyond.",
    )
    add_sut_options(parser, both=True)
    parser.add_argument("--depth", type=int, required=True, help="atomic operations per sequence")
    parser.add_argument(
        "--alphabet",
        choices=sorted(ALPHABETS),
        default=None,
        help=f"letters (default: full up to depth {FULL_ALPHABET_DEPTH}, coarse beyond)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes running sequences (default: the number of cores, %(default)s)",
    )
    parser.add_argument(
        "--exhaustive", action="store_true", help="extend every sequence: no pruning"
    )
    parser.add_argument(
        "--stats", action="store_true", help="print how many operations of each kind ran"
    )

    def run(args: argparse.Namespace) -> int:
        return _explore(args, stack_settings)

    parser.set_defaults(run=run)


def _explore(
    args: argparse.Namespace,
    stack_settings: Callable[[argparse.Namespace, str, str], StackSettings],
) -> int:
    from harness.commands.check import (
        describe_settings,
        format_counterexample,
        format_kinds,
        save_replay,
    )

    if args.depth < 1 or args.workers < 1 or args.proxies < 1:
        print("explore: --depth, --workers and --proxies must be at least 1", file=sys.stderr)
        return 2
    modes = ["delta", "sotw"] if args.xds == "both" else [args.xds]
    transports = ["ads", "per-type"] if args.transport == "all" else [args.transport]
    for transport, mode in ((t, m) for t in transports for m in modes):
        settings = stack_settings(args, mode, transport)
        options = ExploreOptions(
            stack=settings,
            depth=args.depth,
            alphabet=args.alphabet or default_alphabet(args.depth),
            workers=args.workers,
            exhaustive=args.exhaustive,
        )
        print(
            f"explore: {describe_settings(settings)}; {options.workers} worker(s)",
            file=sys.stderr,
        )
        label = mode if transport == "ads" else f"{mode} {transport}"
        result = run_explore(options, print_progress(f"{label} depth {args.depth}"))
        print(coverage_summary(options, result))
        if args.stats:
            print(format_kinds(result.kinds))
        if result.failure is not None:
            path = save_replay(result.failure, settings)
            report = format_counterexample(result.failure, f"python -m harness replay {path}")
            # Breadth first, shortest first: the failing prefix is already short, not shrunk.
            print(report.replace("counterexample (shrunk):", "counterexample (breadth first):", 1))
            print(f"explore: counterexample in {len(result.failure.steps)} steps ({label})")
            return 1
    variants = args.xds if args.transport == "ads" else f"{args.xds}, {args.transport}"
    print(f"explore: every sequence passed ({variants})")
    return 0
