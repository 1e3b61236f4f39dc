"""`explore` against real Envoy: a sequence it plans kills a mutant, and the SUT passes it.

The full depth-2 and depth-3 explorations take minutes (their counts and times are in the
README); here a few letters keep each run to seconds while going through the same runner,
workers included.
"""

from __future__ import annotations

import pytest

from harness.commands.cli import main
from harness.commands.explore import ExploreOptions, run_explore
from harness.lockstep.alphabet import FULL
from harness.lockstep.stack import StackSettings
from sut.mutants import Mutants

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

LETTERS = tuple(
    letter for letter in FULL if letter.label in ("delete newest route", "cut xDS", "resync")
)


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_explore_finds_a_deletion_that_sends_nothing_and_the_sut_passes(mode):
    mutant = StackSettings(mode=mode, mutants=Mutants.of(["deletion-not-a-change"]))
    found = run_explore(ExploreOptions(stack=mutant, depth=1, letters=LETTERS))
    assert found.failure is not None
    assert [op.kind for step in found.failure.steps for op in step] == ["delete-route"]
    assert {violation.invariant for violation in found.failure.violations} & {
        "routing",
        "convergence",
    }
    clean = run_explore(ExploreOptions(stack=StackSettings(mode=mode), depth=1, letters=LETTERS))
    assert clean.passed, [violation.describe() for violation in clean.failure.violations]  # type: ignore[union-attr]
    assert clean.sequences_run == len(clean.plan.sequences) == 3


def test_explore_on_two_workers_reports_a_replayable_counterexample(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "explore",
            "--xds",
            "delta",
            "--depth",
            "1",
            "--alphabet",
            "coarse",
            "--workers",
            "2",
            "--mutant",
            "deletion-not-a-change",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "explore: delta, depth 1, coarse alphabet" in out
    replays = list((tmp_path / "runs").glob("counterexample-delta-*.json"))
    assert len(replays) == 1
    assert main(["replay", str(replays[0])]) == 1
