"""`--transport ads|per-type|all`: replay files that carry the transport, the variants the CLI
runs, the kill table per (mode, transport), and a real check over per-type streams."""

from __future__ import annotations

import json

import pytest

from harness.commands.check import CheckOptions, load_replay, run_check, save_replay
from harness.commands.cli import _parser, _variants, main
from harness.commands.kill_table import KillTable, MutantRun, kill_table_variants
from harness.lockstep.machine import Failure, configuration_key
from harness.lockstep.operations import CutXds, Resync
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Violation
from harness.loopback import processes
from sut.mutants import MUTANTS

PER_TYPE = StackSettings(mode="sotw", transport="per-type")


def test_a_replay_file_carries_the_transport_and_its_per_type_cuts(tmp_path):
    steps = ((CutXds(None, "RDS"), Resync()), (CutXds(),))
    failure = Failure(steps, (Violation("routing", "404"),), ())
    path = save_replay(failure, PER_TYPE, tmp_path, name="per-type.json")
    assert json.loads(path.read_text())["settings"]["transport"] == "per-type"
    settings, loaded = load_replay(path)
    assert settings == PER_TYPE
    assert [tuple(step) for step in loaded] == list(steps)


def test_a_replay_file_without_a_transport_ran_over_ads_and_refuses_a_per_type_cut(tmp_path):
    path = save_replay(Failure(((CutXds(None, "RDS"),),), (), ()), PER_TYPE, tmp_path, name="x")
    document = json.loads(path.read_text())
    del document["settings"]["transport"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="needs the per-type transport"):
        load_replay(path)


def test_per_type_has_its_own_database_key():
    assert configuration_key(PER_TYPE) != configuration_key(StackSettings(mode="sotw"))


def test_the_cli_runs_every_variant_asked_for():
    def variants(*argv: str) -> list[tuple[str, str]]:
        return _variants(_parser().parse_args(["check", *argv]))

    assert variants() == [("delta", "ads"), ("sotw", "ads")]
    assert variants("--xds", "delta", "--transport", "per-type") == [("delta", "per-type")]
    assert len(variants("--transport", "all")) == 4


def test_the_cli_refuses_an_unknown_transport(capsys):
    assert main(["check", "--transport", "xds", "--database", "none"]) == 2
    assert "--transport" in capsys.readouterr().err


def test_each_mutant_runs_only_in_the_transports_where_its_mechanism_exists():
    runs = kill_table_variants(("delta", "sotw"), ("ads", "per-type"))
    assert all(t in MUTANTS[name].transports and m in MUTANTS[name].modes for name, m, t in runs)
    per_type = {(name, mode) for name, mode, t in runs if t == "per-type"}
    assert ("nack-loop", "delta") in per_type and ("nack-loop", "sotw") in per_type
    assert not any(name == "sotw-new-names-ignored" for name, _ in per_type)
    assert {(n, m) for n, m, t in runs if t == "ads"} > per_type


def test_the_markdown_gets_a_transport_column_only_with_per_type_runs():
    run = MutantRun("nack-loop", "sotw", True, 3.25, 2, "nack", 40.0, 5, transport="per-type")
    table = KillTable((), (run,)).as_markdown().splitlines()
    assert table[0].startswith("| mutant | mode | transport | killed |")
    assert table[2].startswith("| nack-loop | sotw | per-type | yes |")
    assert run.as_json()["transport"] == "per-type"


@pytest.mark.envoy
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_a_check_over_per_type_streams_passes_a_few_examples(mode):
    """This seed's examples never move a route to a Cluster the proxy does not hold yet: there
    the SUT's validate_clusters meets per-type streams' lack of order (RDS NACKed ahead of the
    Cluster's warming, not resent until the next publication), which `check` does catch."""
    before = set(processes.live_children())
    stack = StackSettings(mode=mode, transport="per-type")
    result = run_check(CheckOptions(stack=stack, max_examples=3, seed=20261202, database="none"))
    assert set(processes.live_children()) == before
    assert result.passed, result.failure and [v.describe() for v in result.failure.violations]
    assert result.examples >= 3 and result.steps > 0
