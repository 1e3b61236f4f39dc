"""What `check` says while it runs: never past its maximum, a counterexample announced the
moment it is found, and no Hypothesis "@seed" line pointing at a test that does not exist."""

from __future__ import annotations

from harness.commands.check import _hypothesis_report, progress_printer
from harness.lockstep.machine import Progress


def test_progress_never_counts_past_its_maximum(capsys):
    report = progress_printer("delta", 50)
    report(Progress(examples=51, steps=400))
    assert "examples 50/50, steps 400" in capsys.readouterr().err


def test_a_counterexample_is_announced_at_once_and_shrinking_is_reported(capsys):
    report = progress_printer("delta", 50)
    progress = Progress(examples=7, steps=60)
    report(progress)  # a line now; the next ones wait two seconds
    progress.failed()  # no report attached: announce by hand, as the machine's hook does
    report(progress)
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("[delta] counterexample found after ")
    assert "(example 7), shrinking..." in err[-1]


def test_the_failure_hook_reports_through_the_progress(capsys):
    progress = Progress(examples=3, report=progress_printer("sotw", 10))
    progress.failed()
    progress.failed()  # only the first failure is announced
    assert capsys.readouterr().err.count("counterexample found") == 1


def test_hypothesis_seed_lines_are_dropped_and_others_kept(capsys):
    _hypothesis_report("You can reproduce this failure by adding @seed(1234) to this test.")
    _hypothesis_report("Trying example: ...")
    err = capsys.readouterr().err
    assert "@seed" not in err and "Trying example" in err
