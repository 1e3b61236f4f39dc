"""The search itself finds mutants: the ordinary machine, same rules, invariants and seed as
`harness mutants`, without shrinking, on a few pairs it kills within seconds.

Every pair of the kill table is searched by `make mutants-table` (up to 100 examples each,
about 35 pairs: too long for CI on two cores); CI replays each pair's witness
(`test_kill_witnesses.py`) and runs this search on a sample, so a search that stops finding
anything fails here.
"""

from __future__ import annotations

import pytest

from harness.commands.check import CheckOptions, run_check
from harness.commands.kill_table import (
    TABLE_STEPS,
    equivalent_mutants,
    kill_table_runs,
    mutant_settings,
    run_kill_table,
)
from sut.mutants import MUTANTS, Mutants

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

BUDGET_SECONDS = 90.0
SEED = 20261124


SEARCHED = ("deletion-not-a-change", "nonce-from-version")
"""Fast kills (seconds) through two kinds of invariant: convergence on Envoy's side, the
protocol monitor on the wire."""


def _runs() -> list[object]:
    return [
        pytest.param(name, mode, id=f"{name}-{mode}")
        for name, mode in kill_table_runs(("delta", "sotw"))
        if name in SEARCHED
    ]


@pytest.mark.parametrize(("name", "mode"), _runs())
def test_the_machine_kills_the_mutant(name, mode):
    options = CheckOptions(
        stack=mutant_settings(mode, Mutants.of([name])),
        max_examples=10_000,
        steps=TABLE_STEPS,
        seed=SEED,
        shrink=False,
        budget_seconds=BUDGET_SECONDS,
    )
    result = run_check(options)
    assert not result.passed, (
        f"{name} ({MUTANTS[name].mechanism}) survived {result.examples} examples,"
        f" {result.steps} steps in {mode}"
    )
    assert result.failure is not None and result.failure.violations


def test_every_mutant_runs_in_at_least_one_mode_or_is_shown_equivalent():
    covered = {name for name, _mode in kill_table_runs(("delta", "sotw"))}
    equivalent = {name for name, _reason in equivalent_mutants()}
    assert not covered & equivalent
    assert covered | equivalent == set(MUTANTS)
    # Each equivalent mutant has a live witness of its reason.
    assert equivalent == {
        "stale-nonce-drops-subscription"
    }  # tests/harness/test_equivalent_mutants.py


def test_the_table_budget_is_counted_in_examples():
    """The baseline runs the examples it is given, however long they take; the pair's kill is
    found within the same budget."""
    table = run_kill_table(["delta"], examples=3, only=["nonce-from-version"])
    [(mode, baseline)] = table.baseline
    # Hypothesis may run one example past max_examples (its final replay of the last one).
    assert mode == "delta" and baseline.passed and 3 <= baseline.examples <= 4
    [run] = table.runs
    assert run.killed
