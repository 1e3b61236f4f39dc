"""The kill table's formats and its README block (no Envoy: the runs are given)."""

from __future__ import annotations

import json

import pytest

from harness.commands.check import CheckResult
from harness.commands.kill_table import (
    KillTable,
    MutantRun,
    kill_table_runs,
    mutant_settings,
    update_readme,
)
from sut.mutants import MUTANTS, Mutants

KILLED = MutantRun("nack-loop", "sotw", True, 3.25, 2, "nack", 40.0, 5)
SURVIVED = MutantRun("deletion-not-a-change", "delta", False, None, None, "", 60.0, 30, False)
TABLE = KillTable((("sotw", CheckResult(True, 12, 100, 60.0)),), (KILLED, SURVIVED))


def test_the_json_has_the_documented_fields_and_verdicts():
    document = json.loads(TABLE.as_json())
    assert document["baseline_passed"] is True
    assert document["mutants"][0] == {
        "name": "nack-loop",
        "mode": "sotw",
        "killed": True,
        "seconds_to_failure": 3.2,
        "shrunk_steps": 2,
        "invariant": "nack",
    }
    assert document["mutants"][1]["killed"] is False
    assert not TABLE.all_killed


def test_the_markdown_marks_survivors_and_the_baseline():
    text = TABLE.as_markdown()
    assert "| nack-loop | sotw | yes | 3.2 s | 2 | nack | BUGS.md |" in text
    assert "| deletion-not-a-change | delta | **no** | - | - | - | beyond |" in text
    assert "sotw: passed (12 examples, 100 steps)" in text


def test_the_readme_block_is_replaced_between_its_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- kill-table:start -->\nold\n<!-- kill-table:end -->\nrest\n")
    update_readme(readme, TABLE)
    text = readme.read_text()
    assert "old" not in text and "| nack-loop | sotw | yes |" in text
    assert text.startswith("intro\n") and text.endswith("rest\n")


def test_a_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, TABLE)


def test_mode_specific_mutants_run_only_where_their_mechanism_exists():
    runs = kill_table_runs(("delta", "sotw"))
    assert ("resubscribe-ignored", "sotw") not in runs
    assert ("sotw-new-names-ignored", "delta") not in runs
    assert ("nack-loop", "delta") in runs and ("nack-loop", "sotw") in runs
    assert all(mode in MUTANTS[name].modes for name, mode in runs)


def test_a_pair_runs_on_the_fleet_and_gateways_it_is_given():
    settings = mutant_settings("sotw", Mutants.of(["nack-loop"]), 2, 1, "per-type", gateways=2)
    assert (settings.proxies, settings.grpc_clients, settings.gateways) == (2, 1, 2)
    assert settings.transport == "per-type" and settings.strict_protocol
