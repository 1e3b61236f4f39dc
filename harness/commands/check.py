"""`harness check` and `harness replay`: run the state machine, report and replay counterexamples.

A counterexample is printed as the shrunk operations (a numbered list), what the model expected
against what Envoy returned at the failing step, the xDS exchange of that step, and the command
that replays it from a JSON file.

Examples go to an example database (a directory, or Redis for searches on several machines), so
a failure one search saved is replayed first by every later search of the same configuration:
another worker's next round, another machine, the next run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import attrs
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.reporting import with_reporter
from hypothesis.stateful import get_state_machine_test

from harness.lockstep.extensions import operation_classes
from harness.lockstep.machine import BudgetSpent, Failure, Progress, StopFlag, machine_for
from harness.lockstep.operations import OPERATION_KINDS, Operation
from harness.lockstep.replay_files import decode_operations, encode_operations
from harness.lockstep.server_under_test import REFERENCE, ExternalServer, stop_reference_adapter
from harness.lockstep.session import Session, Violation
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Inconclusive
from harness.loopback.spares import SpareEnvoys
from sut.controlplane import FailurePolicy
from sut.mutants import Mutants

__all__ = [
    "DEFAULT_DATABASE",
    "CheckOptions",
    "CheckResult",
    "combine_results",
    "example_database",
    "format_kinds",
    "replay",
    "run_check",
]

DEFAULT_DATABASE = ".hypothesis/check"
"""Where `check` keeps its examples by default (pytest's are in `.hypothesis/examples`)."""


@attrs.frozen
class CheckOptions:
    stack: StackSettings
    max_examples: int = 50
    steps: int = 12
    seed: int | None = None
    derandomize: bool = False
    shrink: bool = True
    """Shrinking re-runs the failing example many times; `harness mutants` may skip it."""
    shrink_seconds: float | None = 90.0
    """Stop shrinking after this long and report the shortest sequence found so far."""
    budget_seconds: float | None = None
    """Stop generating new examples after this long (a counterexample is still shrunk)."""
    database: str | None = None
    """Where examples are saved and replayed from (`example_database`); None: nowhere."""


def _plain_counts(kinds: Mapping[str, int]) -> dict[str, int]:
    return dict(kinds)


@attrs.frozen
class CheckResult:
    passed: bool
    examples: int
    steps: int
    seconds: float
    seconds_to_failure: float | None = None
    failure: Failure | None = None
    error: str = ""
    kinds: Mapping[str, int] = attrs.field(factory=dict, converter=_plain_counts)
    """Operations applied, by kind (`Progress.kinds`)."""
    discarded: int = 0
    """Examples discarded as inconclusive (`Progress.discarded`), among `examples`."""


def _mode_label(stack: StackSettings) -> str:
    return stack.mode


BUDGETED_ROUND_EXAMPLES = 20
"""A time-budgeted search runs Hypothesis in rounds of this many examples, each with its own
seed derived from the run's. Hypothesis spends its first max_examples/10 test cases (up to 50)
on "simplest" extensions of each new prefix, which for a state machine is the first rule
repeated; at about a second per example against real Envoy, short rounds keep that waste small
and the examples diverse."""


def run_check(
    options: CheckOptions,
    on_progress: Callable[[Progress], None] | None = None,
    *,
    stop: StopFlag | None = None,
    on_failure: Callable[[], None] | None = None,
) -> CheckResult:
    """One Hypothesis engine. `stop`: start no new example once it is set (another search of the
    pool found a failure); `on_failure`: called when this one finds its first."""
    progress = Progress(
        report=on_progress,
        budget_seconds=options.budget_seconds,
        stop=stop,
        on_failure=on_failure,
    )
    database = example_database(options.database)
    external = options.stack.external
    try:
        return _run_rounds(options, progress, database)
    finally:
        if external is not None and external.adapter == REFERENCE:
            stop_reference_adapter()  # started by this search's first stack


def _run_rounds(
    options: CheckOptions, progress: Progress, database: ExampleDatabase | None
) -> CheckResult:
    if options.budget_seconds is None:
        return _run_round(options, progress, options.max_examples, options.seed, database)
    round_number = 0
    while not progress.search_over and progress.examples < options.max_examples:
        remaining = options.max_examples - progress.examples
        round_seed = None
        if options.seed is not None:
            round_seed = options.seed if round_number == 0 else options.seed * 7919 + round_number
        result = _run_round(
            options, progress, min(BUDGETED_ROUND_EXAMPLES, remaining), round_seed, database
        )
        if not result.passed:
            return result
        round_number += 1
    return _passed(progress)


def _passed(progress: Progress) -> CheckResult:
    return CheckResult(
        True,
        progress.examples,
        progress.steps,
        progress.elapsed,
        kinds=progress.kinds,
        discarded=progress.discarded,
    )


def example_database(spec: str | None) -> ExampleDatabase | None:
    """`redis://host:port/db` (or `rediss://`): Hypothesis's Redis database, shared by machines;
    anything else a directory; None or "none": no database. Raises ValueError naming what is
    missing."""
    if spec is None or spec == "none":
        return None
    if spec.startswith(("redis://", "rediss://")):
        try:
            import redis
            from hypothesis.extra.redis import RedisExampleDatabase
        except ImportError as error:
            raise ValueError(
                f"--database {spec} needs the Redis client: pip install 'hypothesis[redis]'"
            ) from error
        client = redis.Redis.from_url(spec, socket_connect_timeout=5.0)
        try:
            client.ping()
        except redis.RedisError as error:
            raise ValueError(f"--database {spec}: no Redis server answers ({error})") from error
        return RedisExampleDatabase(client)
    return DirectoryBasedExampleDatabase(spec)


def _run_round(
    options: CheckOptions,
    progress: Progress,
    max_examples: int,
    run_seed: int | None,
    database: ExampleDatabase | None,
) -> CheckResult:
    spares = SpareEnvoys()  # launches nothing before the first example; closed below
    machine = machine_for(options.stack, progress, spares)
    derandomize = options.derandomize and run_seed is None
    phases = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target]
    if options.shrink:
        phases.append(Phase.shrink)
    run_settings = settings(
        max_examples=max_examples,
        stateful_step_count=options.steps,
        deadline=None,
        # Hypothesis: a derandomized run uses no database.
        database=None if derandomize else database,
        derandomize=derandomize,
        print_blob=False,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    if run_seed is not None:
        # On the machine class, not the test: `seed` on a test also sets its database to None,
        # while a seeded class keeps the settings given here, database included.
        machine = seed(run_seed)(machine)
    test = get_state_machine_test(machine, settings=run_settings)
    try:
        with spares, _shrink_budget(options.shrink_seconds), with_reporter(_hypothesis_report):
            test()
    except BudgetSpent:
        return _passed(progress)
    except Exception as error:  # any failure of the test is a counterexample
        if isinstance(error, Flaky):
            detail = f"the failure did not reproduce when replayed (flaky): {error}"
        else:
            detail = f"{type(error).__name__}: {str(error)[:500]}"
        return CheckResult(
            passed=False,
            examples=progress.examples,
            steps=progress.steps,
            seconds=progress.elapsed,
            seconds_to_failure=progress.first_failure_at,
            failure=progress.final
            or (progress.first if isinstance(error, Flaky) else None)
            or progress.last,
            error=detail,
            kinds=progress.kinds,
            discarded=progress.discarded,
        )
    return _passed(progress)


def combine_results(results: Sequence[CheckResult], seconds: float) -> CheckResult:
    """The searches of one configuration on several workers as one run of `seconds`: examples,
    steps and operation kinds added up; of the failures, the shortest counterexample (the first
    found on a tie)."""
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result.kinds)
    examples = sum(result.examples for result in results)
    steps = sum(result.steps for result in results)
    discarded = sum(result.discarded for result in results)
    failed = [result for result in results if not result.passed]
    if not failed:
        return CheckResult(True, examples, steps, seconds, kinds=kinds, discarded=discarded)

    def rank(result: CheckResult) -> tuple[bool, int, float]:
        length = len(result.failure.steps) if result.failure is not None else 0
        return (result.failure is None, length, result.seconds_to_failure or 0.0)

    chosen = min(failed, key=rank)
    first = min(
        (r.seconds_to_failure for r in failed if r.seconds_to_failure is not None), default=None
    )
    return attrs.evolve(
        chosen,
        examples=examples,
        steps=steps,
        seconds=seconds,
        seconds_to_failure=first,
        kinds=kinds,
        discarded=discarded,
    )


def _hypothesis_report(value: object) -> None:
    """Hypothesis's own messages go to stderr; ours carry the counterexample. Its warning about
    a shrink cut short is expected here: the budget is ours."""
    text = str(value)
    if text.startswith("WARNING: Hypothesis has spent more than five minutes"):
        return
    if "@seed(" in text:
        # "reproduce by adding @seed(...) to this test": there is no such test to edit here, and
        # an interrupted run is no failure; the replay file is the reproduction.
        return
    print(text, file=sys.stderr)


@contextlib.contextmanager
def _shrink_budget(seconds: float | None) -> Iterator[None]:
    """Bound the time Hypothesis spends shrinking one failure.

    Hypothesis has no public setting for this; its engine reads a module-level limit (300 s),
    which we lower for the run and restore afterwards. If a Hypothesis release drops it, the
    run simply shrinks as long as Hypothesis likes.
    """
    from hypothesis.internal.conjecture import engine

    previous = getattr(engine, "MAX_SHRINKING_SECONDS", None)
    if seconds is None or previous is None:
        yield
        return
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = previous


# ------------------------------------------------------------------ reports


def describe_settings(stack: StackSettings) -> str:
    mutants = ", ".join(sorted(stack.mutants.names)) or "none"
    strict = ", strict protocol" if stack.strict_protocol else ""
    fleet = f"{stack.proxies} prox{'y' if stack.proxies == 1 else 'ies'}"
    if stack.gateways > 1:
        fleet += f", {stack.gateways} Gateways"
    if stack.grpc_clients:
        fleet += f", {stack.grpc_clients} gRPC client{'' if stack.grpc_clients == 1 else 's'}"
    policy = f"failure policy {stack.failure_policy}"
    server = f", {stack.external.describe()}" if stack.external is not None else ""
    return f"{stack.mode}, {stack.transport}, {fleet}, {policy}, mutants {mutants}{strict}{server}"


def format_steps(steps: Sequence[Sequence[Operation]]) -> list[str]:
    """One numbered line per step; the further operations of a compound step below it."""
    lines = []
    for number, step in enumerate(steps, start=1):
        for index, operation in enumerate(step):
            lead = f"  {number}. " if index == 0 else " " * (len(str(number)) + 4) + "+ "
            lines.append(lead + operation.describe())
    return lines


def format_kinds(kinds: Mapping[str, int]) -> str:
    """`--stats`: how often each operation kind ran, every kind listed (one never drawn shows 0),
    most frequent first."""
    total = sum(kinds.values())
    counts = {kind: kinds.get(kind, 0) for kind in OPERATION_KINDS} | dict(kinds)
    width = max(len(kind) for kind in counts)
    lines = [f"operations by kind ({total} in all):"]
    for kind, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        share = 100.0 * count / total if total else 0.0
        lines.append(f"  {kind:<{width}}  {count:>6}  {share:5.1f}%")
    return "\n".join(lines)


def format_counterexample(failure: Failure, replay_command: str) -> str:
    lines = ["counterexample (shrunk):", *format_steps(failure.steps)]
    if not failure.steps:
        lines.append("  (no operation: the initial state already fails)")
    where = f"step {len(failure.steps)}" if failure.steps else "the initial state"
    lines.append(f"after {where}:")
    for violation in failure.violations:
        lines += ["  " + line for line in violation.describe().splitlines()]
    if failure.exchanges:
        lines.append("xDS exchange on the wire during that step (decoded by the monitor):")
        lines += [f"  {exchange}" for exchange in failure.exchanges]
    lines.append(f"replay: {replay_command}")
    return "\n".join(lines)


def save_replay(
    failure: Failure,
    stack: StackSettings,
    directory: Path = Path("runs"),
    name: str | None = None,
) -> Path:
    """Write a replay file (default name: counterexample-<mode>-<time>.json)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = directory / (name or f"counterexample-{stack.mode}-{stamp}.json")
    document = {
        "settings": {
            "mode": stack.mode,
            "failure_policy": str(stack.failure_policy),
            "mutants": sorted(stack.mutants.names),
            "initial_fetch_timeout": stack.initial_fetch_timeout,
            "strict_protocol": stack.strict_protocol,
            "translation_budget": stack.translation_budget,
            "proxies": stack.proxies,
            **({"gateways": stack.gateways} if stack.gateways > 1 else {}),
            "grpc_clients": stack.grpc_clients,
            "transport": stack.transport,
            **({"extensions": stack.extensions} if stack.extensions is not None else {}),
            **(
                {"adapter": stack.external.adapter, "xds_server": stack.external.xds_server}
                if stack.external is not None
                else {}
            ),
        },
        "steps": [json.loads(encode_operations(list(step))) for step in failure.steps],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


Steps = list[list[Operation]]


def load_replay(path: Path) -> tuple[StackSettings, Steps]:
    """Settings and steps of a replay file; raises ValueError naming the problem. A file of
    plain `operations` (older ones) is one operation per step; one without `proxies` ran on a
    single proxy, one without `grpc_clients` on none, one without `transport` over ADS."""
    try:
        document = json.loads(path.read_text())
        config = document["settings"]
        stack = StackSettings(
            mode=config["mode"],
            failure_policy=FailurePolicy(config["failure_policy"]),
            mutants=Mutants.of(config["mutants"]),
            initial_fetch_timeout=float(config["initial_fetch_timeout"]),
            strict_protocol=bool(config.get("strict_protocol", False)),
            translation_budget=float(config.get("translation_budget", 0.5)),
            proxies=int(config.get("proxies", 1)),
            gateways=int(config.get("gateways", 1)),
            grpc_clients=int(config.get("grpc_clients", 0)),
            transport=config.get("transport", "ads"),
            extensions=config.get("extensions"),
            external=ExternalServer(config["adapter"], config.get("xds_server"))
            if config.get("adapter")
            else None,
        )
        kinds = operation_classes(stack.extensions)
        if "steps" in document:
            steps = [decode_operations(json.dumps(step), kinds) for step in document["steps"]]
        else:
            steps = [[op] for op in decode_operations(json.dumps(document["operations"]), kinds)]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a routeproof replay file ({error})") from error
    fleet = range(stack.proxies + stack.gateways - 1)
    for step in steps:
        for operation in step:
            if operation.target is not None and operation.target not in fleet:
                raise ValueError(
                    f"{path}: {operation.describe()!r} targets a proxy the fleet of"
                    f" {stack.proxies} does not have"
                )
            if getattr(operation, "stream", None) is not None and stack.transport != "per-type":
                raise ValueError(
                    f"{path}: {operation.describe()!r} needs the per-type transport, and the"
                    f" file ran over {stack.transport}"
                )
    return stack, steps


def replay(
    stack: StackSettings, steps: Steps, say: Callable[[str], None] = print
) -> list[Violation]:
    """Run the steps in order, checking after each; returns the first failing step's
    violations (none: every invariant held)."""
    session = Session(stack)
    try:
        session.start()
        violations = session.check()
        say(f"initial state: {'ok' if not violations else 'VIOLATED'}")
        if violations:
            return violations
        for number, step in enumerate(steps, start=1):
            try:
                for operation in step:
                    session.apply(operation)
            except Inconclusive as why:
                say(f"{number}. inconclusive, the replay stops here: {why}")
                return []
            violations = session.check()
            lines = format_steps([step])
            lines[0] = lines[0].replace("  1. ", f"{number}. ", 1)
            for line in lines[:-1]:
                say(line)
            say(f"{lines[-1]}: {'ok' if not violations else 'VIOLATED'}")
            if violations:
                for violation in violations:
                    say(violation.describe())
                exchanges = session.exchanges_of_step()
                if exchanges:
                    say("xDS exchange on the wire during that step (decoded by the monitor):")
                    for exchange in exchanges:
                        say(f"  {exchange}")
                return violations
        return []
    finally:
        session.stop()
        if stack.external is not None and stack.external.adapter == REFERENCE:
            stop_reference_adapter()


def progress_printer(label: str, max_examples: int) -> Callable[[Progress], None]:
    """Progress on stderr: at most a line every two seconds, except the moment a counterexample
    is found, which is announced at once (shrinking it may take a while)."""
    last = [0.0]
    announced = [False]

    def report(progress: Progress) -> None:
        now = time.monotonic()
        found = progress.first_failure_at
        if found is not None and not announced[0]:
            announced[0] = True
            last[0] = now
            print(
                f"[{label}] counterexample found after {found:.1f} s"
                f" (example {progress.examples}), shrinking...",
                file=sys.stderr,
                flush=True,
            )
            return
        if now - last[0] < 2.0:
            return
        last[0] = now
        if found is not None:
            print(
                f"[{label}] shrinking: {progress.shrink_runs} runs, {progress.elapsed:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            return
        # Hypothesis may start an example or two past max_examples (overruns it does not count).
        shown = min(progress.examples, max_examples) if max_examples else progress.examples
        of = f"/{max_examples}" if max_examples else ""
        print(
            f"[{label}] examples {shown}{of}, steps {progress.steps}, {progress.elapsed:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    return report
