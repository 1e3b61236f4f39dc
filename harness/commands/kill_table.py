"""`harness mutants`: run the state machine against the SUT and against every known bug class,
and tabulate which ones it kills.

Every mutant runs through the ordinary machine: same rules, same invariants, same generation.
A mutant is killed when `check` finds a counterexample; the unmutated SUT must pass the same
budget. The pairs are independent searches, spread over worker processes (`--workers`).

With `--adapter reference` every search runs through routeproof's reference adapter process:
the pair's server-side mutants are the adapter's flags, the control plane's stay in the
harness's runner (`split_mutants`). A runner mutant whose only symptom is the versions it
labels (`ADAPTER_EXEMPT`) is not run then: behind an adapter the server owns the versions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import attrs

from harness.commands.check import (
    CheckOptions,
    CheckResult,
    format_counterexample,
    save_replay,
)
from harness.commands.workers import Search, search_each
from harness.lockstep.machine import Progress
from harness.lockstep.server_under_test import ExternalServer
from harness.lockstep.stack import StackSettings
from sut.controlplane import FailurePolicy
from sut.mutants import MUTANTS, Mutant, Mutants

__all__ = [
    "TABLE_EXAMPLES",
    "TABLE_STEPS",
    "KillTable",
    "MutantRun",
    "equivalent_mutants",
    "kill_table_runs",
    "kill_table_variants",
    "mutant_settings",
    "run_kill_table",
    "update_readme",
    "witness_name",
]

TABLE_STEPS = 12
"""Steps per example in the kill table, as `check`'s default."""
TABLE_EXAMPLES = 100
"""Examples per search: the budget is counted in examples, not seconds, so a loaded machine or
more workers sharing its cores make the table slower but never weaker (a wall-clock budget
let slow kills slip past it when two searches shared two cores)."""
SHRINK_SECONDS = 15.0
"""Shrinking time per kill: keeps the whole table of both modes under 15 minutes."""
ADAPTER_EXEMPT: dict[Mutant, str] = {
    Mutant.VERSION_FROM_STORE: "the runner's version labels never reach a server behind an"
    " adapter, which names its own versions",
}
"""Runner mutants not run through an adapter, and why."""
README_START = "<!-- kill-table:start -->"
README_END = "<!-- kill-table:end -->"


@attrs.frozen
class MutantRun:
    name: str
    mode: str
    killed: bool
    seconds_to_failure: float | None
    shrunk_steps: int | None
    invariant: str
    seconds: float
    examples: int
    listed: bool = True
    """A row of BUGS.md (False: a bug class added beyond it)."""
    transport: str = "ads"

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "mode": self.mode,
            **({"transport": self.transport} if self.transport != "ads" else {}),
            "killed": self.killed,
            "seconds_to_failure": round(self.seconds_to_failure, 1)
            if self.seconds_to_failure is not None
            else None,
            "shrunk_steps": self.shrunk_steps,
            "invariant": self.invariant,
        }


@attrs.frozen
class KillTable:
    baseline: tuple[tuple[str, CheckResult], ...]
    runs: tuple[MutantRun, ...]
    exempt: tuple[tuple[str, str], ...] = ()
    """(mutant, reason) not run through the adapter (`ADAPTER_EXEMPT`)."""

    @property
    def baseline_passed(self) -> bool:
        return all(result.passed for _, result in self.baseline)

    @property
    def all_killed(self) -> bool:
        return all(run.killed for run in self.runs)

    def as_json(self) -> str:
        return json.dumps(
            {
                "mutants": [run.as_json() for run in self.runs],
                "baseline_passed": self.baseline_passed,
                "equivalent": [
                    {"name": name, "reason": reason} for name, reason in equivalent_mutants()
                ],
                **(
                    {"not_through_adapter": [{"name": n, "reason": r} for n, r in self.exempt]}
                    if self.exempt
                    else {}
                ),
            },
            indent=1,
        )

    def as_markdown(self) -> str:
        """A transport column only when some run is not over ADS (an ADS table reads as ever)."""
        per_type = any(run.transport != "ads" for run in self.runs) or any(
            " " in label for label, _ in self.baseline
        )
        transport = " transport |" if per_type else ""
        lines = [
            f"| mutant | mode |{transport} killed | time to first failure | shrunk steps |"
            " caught by | from |",
            "|---|---|---|---|---|---|---|" + ("---|" if per_type else ""),
        ]
        for run in self.runs:
            first = f"{run.seconds_to_failure:.1f} s" if run.seconds_to_failure is not None else "-"
            steps = str(run.shrunk_steps) if run.shrunk_steps is not None else "-"
            column = f" {run.transport} |" if per_type else ""
            lines.append(
                f"| {run.name} | {run.mode} |{column} {'yes' if run.killed else '**no**'} |"
                f" {first} | {steps} | {run.invariant or '-'} |"
                f" {'BUGS.md' if run.listed else 'beyond'} |"
            )
        verdicts = ", ".join(
            f"{mode}: {'passed' if result.passed else 'FAILED'} ({result.examples} examples,"
            f" {result.steps} steps)"
            for mode, result in self.baseline
        )
        lines.append("")
        lines.append(f"Unmutated SUT, same budget: {verdicts}.")
        for name, reason in equivalent_mutants():
            lines.append("")
            lines.append(f"Not run, equivalent in this SUT: `{name}`: {reason}.")
        for name, reason in self.exempt:
            lines.append("")
            lines.append(f"Not run through the adapter: `{name}`: {reason}.")
        return "\n".join(lines)


def kill_table_runs(modes: Iterable[str]) -> list[tuple[str, str]]:
    """(mutant, mode) pairs where the mutant's mechanism exists over ADS."""
    return [(name, mode) for name, mode, _ in kill_table_variants(modes, ("ads",))]


def kill_table_variants(
    modes: Iterable[str], transports: Iterable[str]
) -> list[tuple[str, str, str]]:
    """(mutant, mode, transport) where the mutant's mechanism exists (`MutantSpec.modes` and
    `.transports`)."""
    wanted = list(modes)
    carriers = list(transports)
    return [
        (name, mode, transport)
        for name, spec in sorted(MUTANTS.items())
        for transport in carriers
        for mode in wanted
        if mode in spec.modes and transport in spec.transports
    ]


def variant_label(mode: str, transport: str) -> str:
    """A variant as runs name it: the mode alone over ADS (as always), else "delta per-type"."""
    return mode if transport == "ads" else f"{mode} {transport}"


def witness_name(name: str, mode: str, transport: str = "ads") -> str:
    """The file a kill's counterexample is kept in: `<mutant>-<mode>[-<transport>].json`."""
    return f"{name}-{mode}.json" if transport == "ads" else f"{name}-{mode}-{transport}.json"


def equivalent_mutants() -> list[tuple[str, str]]:
    """(mutant, reason) for mutants no protocol-following client can observe in this SUT."""
    return [(name, spec.equivalent) for name, spec in sorted(MUTANTS.items()) if spec.equivalent]


def mutant_settings(
    mode: str,
    mutants: Mutants,
    proxies: int = 1,
    grpc_clients: int = 0,
    transport: str = "ads",
    *,
    external: ExternalServer | None = None,
    gateways: int = 1,
) -> StackSettings:
    """The stack a mutant runs on: its failure policy if it names one, else the default; the
    protocol monitor judges SHOULD rules too (`--strict-protocol`), so a mutant Envoy cannot
    observe is still killed through the wire; `proxies` Envoy replicas, `grpc_clients`
    proxyless gRPC clients; `external`: the xDS server under test behind an adapter; 2
    `gateways`: a second Gateway, with a proxy of its own."""
    policy = mutants.failure_policy() or FailurePolicy.KEEP_LAST_GOOD.value
    return StackSettings(
        mode=mode,  # type: ignore[arg-type]
        failure_policy=FailurePolicy(policy),
        mutants=mutants,
        strict_protocol=True,
        proxies=proxies,
        grpc_clients=grpc_clients,
        transport=transport,  # type: ignore[arg-type]
        external=external,
        gateways=gateways,
    )


def _options(
    stack: StackSettings, examples: int, budget_seconds: float | None, steps: int, seed: int
) -> CheckOptions:
    return CheckOptions(
        stack=stack,
        max_examples=examples,
        steps=steps,
        seed=seed,
        # Budgeted rounds (`BUDGETED_ROUND_EXAMPLES`) even without a time cap: short rounds keep
        # Hypothesis's "simplest example" phase from repeating one rule.
        budget_seconds=budget_seconds if budget_seconds is not None else float("inf"),
        shrink_seconds=SHRINK_SECONDS
        if budget_seconds is None
        else min(SHRINK_SECONDS, budget_seconds),
    )


def run_kill_table(
    modes: Sequence[str],
    *,
    examples: int = TABLE_EXAMPLES,
    budget_seconds: float | None = None,
    steps: int = TABLE_STEPS,
    seed: int = 20261124,
    only: Iterable[str] | None = None,
    on_progress: Callable[[str, Progress], None] | None = None,
    on_result: Callable[[str], None] | None = None,
    witnesses: Path | None = None,
    workers: int = 1,
    proxies: int = 1,
    grpc_clients: int = 0,
    transports: Iterable[str] = ("ads",),
    external: ExternalServer | None = None,
    gateways: int = 1,
) -> KillTable:
    """The baseline per mode, then every (mutant, mode) pair, each within `examples` examples
    (and `budget_seconds`, if given: a cap in wall-clock time on top).

    The searches are independent: with `workers` > 1 they run on that many processes, one pair
    per task, baselines first; `on_result` lines come as they end, the table keeps its order.
    Each search has its own seed and no example database, so a pair's time to its first failure
    measures the search, not a replay of an earlier run.

    With `witnesses`, each kill's shrunk counterexample is written there as
    `<mutant>-<mode>.json`: a replay that tells the mutant from the SUT (CI replays them).
    Every search runs on a fleet of `proxies` Envoys and `grpc_clients` proxyless clients.
    Each of `transports` is a variant of its own: a baseline per (mode, transport), and each
    mutant wherever its mechanism exists; a per-type witness is `<mutant>-<mode>-per-type.json`.
    With `external`, every search puts that server under test (the module's docstring)."""
    carriers = list(transports)
    variants = [(mode, transport) for transport in carriers for mode in modes]
    selected = set(only) if only is not None else None
    say = on_result or (lambda line: None)
    exempt = ADAPTER_EXEMPT if external is not None else {}
    pairs = [
        (name, mode, transport)
        for name, mode, transport in kill_table_variants(list(modes), carriers)
        if (selected is None or name in selected) and Mutant(name) not in exempt
    ]
    stacks = [
        mutant_settings(
            mode, Mutants(), proxies, grpc_clients, transport, external=external, gateways=gateways
        )
        for mode, transport in variants
    ] + [
        mutant_settings(
            mode,
            Mutants.of([name]),
            proxies,
            grpc_clients,
            transport,
            external=external,
            gateways=gateways,
        )
        for name, mode, transport in pairs
    ]
    labels = [f"baseline/{variant_label(*variant)}" for variant in variants] + [
        f"{name}/{variant_label(mode, transport)}" for name, mode, transport in pairs
    ]
    files = [witness_name(name, mode, transport) for name, mode, transport in pairs]
    searches = [
        Search(_options(stack, examples, budget_seconds, steps, seed), label)
        for stack, label in zip(stacks, labels, strict=True)
    ]
    results: dict[int, CheckResult] = {}
    for index, result in search_each(searches, workers, on_progress):
        results[index] = result
        if index < len(variants):
            _say_baseline(say, labels[index], stacks[index], result)
        else:
            name, mode, transport = pairs[index - len(variants)]
            _say_run(say, labels[index], _mutant_run(name, mode, result, transport))
            if witnesses is not None and result.failure is not None:
                file = files[index - len(variants)]
                save_replay(result.failure, stacks[index], witnesses, name=file)
    baseline = tuple(
        (variant_label(*variant), results[index]) for index, variant in enumerate(variants)
    )
    runs = tuple(
        _mutant_run(name, mode, results[len(variants) + index], transport)
        for index, (name, mode, transport) in enumerate(pairs)
    )
    skipped = tuple(
        (name.value, reason)
        for name, reason in sorted(exempt.items())
        if selected is None or name.value in selected
    )
    return KillTable(baseline, runs, skipped)


def _mutant_run(name: str, mode: str, result: CheckResult, transport: str = "ads") -> MutantRun:
    failure = result.failure
    invariants = (
        ", ".join(dict.fromkeys(v.invariant for v in failure.violations)) if failure else ""
    )
    return MutantRun(
        name=name,
        mode=mode,
        killed=not result.passed,
        seconds_to_failure=result.seconds_to_failure,
        shrunk_steps=len(failure.steps) if failure else None,
        invariant=invariants,
        seconds=result.seconds,
        examples=result.examples,
        listed=MUTANTS[Mutant(name)].listed,
        transport=transport,
    )


def _say_baseline(
    say: Callable[[str], None], label: str, stack: StackSettings, result: CheckResult
) -> None:
    say(f"{label}: {'passed' if result.passed else 'FAILED: ' + result.error[:200]}")
    if result.failure is not None:
        path = save_replay(result.failure, stack)
        say(format_counterexample(result.failure, f"python -m harness replay {path}"))


def _say_run(say: Callable[[str], None], label: str, run: MutantRun) -> None:
    verdict = (
        f"killed in {run.seconds_to_failure or 0:.1f} s by {run.invariant}"
        if run.killed
        else "SURVIVED"
    )
    say(f"{label}: {verdict}")


def update_readme(path: Path, table: KillTable) -> None:
    """Replace the kill table between the README's markers (regenerated, never hand-edited)."""
    text = path.read_text()
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    block = f"{README_START}\n{table.as_markdown()}\n{README_END}"
    if not pattern.search(text):
        raise ValueError(f"{path} has no {README_START} ... {README_END} markers")
    path.write_text(pattern.sub(lambda _match: block, text))
