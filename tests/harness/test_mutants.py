"""Every mutant is killed by the ordinary machine, in each mode where its mechanism exists.

The same rules, invariants and seed as `harness mutants`, without shrinking (a kill is a kill),
each within a bounded search budget so CI stays short. A mutant that survives its budget fails.
"""

from __future__ import annotations

import pytest

from harness.check import CheckOptions, run_check
from harness.kill_table import TABLE_STEPS, kill_table_runs, mutant_settings
from sut.mutants import MUTANTS, Mutants

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

BUDGET_SECONDS = 90.0
SEED = 20261124


KNOWN_ESCAPES = {
    ("stale-nonce-drops-subscription", "delta"): (
        "the machine does not yet find it within the budget at this seed: the mechanism only"
        " shows when Envoy changes its subscriptions while a response is in flight; the sans-IO"
        " test in tests/xds/test_delta_rules.py shows the mechanism. Open in issue 6."
    ),
}


def _runs() -> list[object]:
    return [
        pytest.param(
            name,
            mode,
            id=f"{name}-{mode}",
            marks=[pytest.mark.xfail(reason=KNOWN_ESCAPES[(name, mode)], strict=False)]
            if (name, mode) in KNOWN_ESCAPES
            else [],
        )
        for name, mode in kill_table_runs(("delta", "sotw"))
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


def test_every_mutant_runs_in_at_least_one_mode():
    covered = {name for name, _mode in kill_table_runs(("delta", "sotw"))}
    assert covered == set(MUTANTS)
