"""`check --proxies N`: a search over a fleet of Envoys, replay files that carry the fleet, and
`explore` over each proxy's letters."""

from __future__ import annotations

import json

import pytest

from harness.commands.check import CheckOptions, load_replay, replay, run_check, save_replay
from harness.commands.cli import main
from harness.commands.explore import ExploreOptions, run_explore
from harness.lockstep.alphabet import alphabet
from harness.lockstep.machine import Failure, configuration_key
from harness.lockstep.operations import (
    CutXds,
    DeleteRoute,
    HoldXds,
    ReleaseXds,
    RestartEnvoy,
    Resync,
)
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Violation
from harness.loopback import processes

FLEET = StackSettings(proxies=2)


def test_a_replay_file_carries_the_fleet_and_each_operations_proxy(tmp_path):
    steps = ((HoldXds(1), Resync(), ReleaseXds(1)), (CutXds(0),), (RestartEnvoy(1),))
    failure = Failure(steps, (Violation("routing", "proxy 1: 404"),), ())
    path = save_replay(failure, FLEET, tmp_path, name="fleet.json")
    assert json.loads(path.read_text())["settings"]["proxies"] == 2
    settings, loaded = load_replay(path)
    assert settings == FLEET
    assert [tuple(step) for step in loaded] == list(steps)


def test_a_replay_file_without_a_fleet_ran_on_one_proxy_and_a_stray_target_is_refused(tmp_path):
    failure = Failure(((CutXds(),),), (), ())
    path = save_replay(failure, StackSettings(), tmp_path, name="one.json")
    document = json.loads(path.read_text())
    del document["settings"]["proxies"]
    path.write_text(json.dumps(document))
    settings, steps = load_replay(path)
    assert settings == StackSettings() and steps == [[CutXds()]]
    stray = save_replay(Failure(((CutXds(1),),), (), ()), StackSettings(), tmp_path, name="x.json")
    with pytest.raises(ValueError, match="proxy the fleet of 1 does not have"):
        load_replay(stray)


def test_a_fleet_has_its_own_database_key():
    """Hypothesis keys saved examples by it: a fleet's must not replay a single proxy's."""
    assert configuration_key(FLEET) != configuration_key(StackSettings())


def test_the_cli_refuses_an_empty_fleet(capsys):
    assert main(["check", "--proxies", "0", "--database", "none"]) == 2
    assert "--proxies" in capsys.readouterr().err


@pytest.mark.envoy
@pytest.mark.slow
def test_a_check_on_two_proxies_passes_a_few_examples():
    before = set(processes.live_children())
    result = run_check(CheckOptions(stack=FLEET, max_examples=3, steps=8, seed=20261202))
    assert result.passed, result.failure and [v.describe() for v in result.failure.violations]
    assert result.examples >= 3 and result.steps > 0
    assert set(processes.live_children()) == before


@pytest.mark.envoy
def test_a_fleet_replay_runs_on_the_fleet_it_names(tmp_path):
    steps = ((HoldXds(1), DeleteRoute("route-0"), ReleaseXds(1)), (RestartEnvoy(1),))
    path = save_replay(Failure(steps, (), ()), FLEET, tmp_path, name="fleet.json")
    settings, loaded = load_replay(path)
    said: list[str] = []
    assert replay(settings, loaded, say=said.append) == []
    assert said[1].startswith("1. hold the xDS connection of proxy 1")
    assert said[-1].startswith("2. restart Envoy of proxy 1") and said[-1].endswith(": ok")


@pytest.mark.envoy
def test_explore_runs_the_letters_of_each_proxy():
    wanted = {"cut xDS of proxy 1", "hold xDS of proxy 0", "restart Envoy of proxy 1"}
    letters = tuple(letter for letter in alphabet("coarse", 2) if letter.label in wanted)
    result = run_explore(ExploreOptions(stack=FLEET, depth=1, letters=letters))
    assert result.passed, result.failure and [v.describe() for v in result.failure.violations]
    assert result.sequences_run == 3
    assert result.kinds == {"cut-xds": 1, "hold-xds": 1, "restart-envoy": 1}
