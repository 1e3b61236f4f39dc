"""`check --gateways 2`: a second Gateway with an Envoy of its own, judged by its own Gateway's
specification; the fault below shows its proxy really is judged."""

from __future__ import annotations

import json

import attrs
import pytest

import sut.controlplane.runner as runner_module
from harness.commands.check import CheckOptions, load_replay, replay, run_check, save_replay
from harness.commands.cli import main
from harness.lockstep.alphabet import alphabet
from harness.lockstep.machine import Failure, configuration_key
from harness.lockstep.operations import (
    CreateGateway,
    CreateRoute,
    DeleteGateway,
    HoldXds,
    ReleaseXds,
    RestartEnvoy,
)
from harness.lockstep.stack import StackSettings
from harness.lockstep.worlds import CATALOGUE_ROUTES, SECOND_GATEWAY, second_gateway
from harness.loopback import processes
from sut.controlplane import nodes
from sut.mutants import Mutants
from sut.xds import ResourceType, Snapshot

TWO = StackSettings(proxies=2, gateways=2)
SECOND_PROXY = 2
"""The second Gateway's Envoy comes after the first Gateway's two."""
ON_BOTH = attrs.evolve(
    CATALOGUE_ROUTES["route-2"], created=20, gateways=("gw", SECOND_GATEWAY), section=None
)


def test_a_replay_file_carries_the_gateways_and_the_second_gateways_proxy(tmp_path):
    steps = ((CreateGateway(second_gateway()),), (HoldXds(SECOND_PROXY), ReleaseXds(2)))
    path = save_replay(Failure(steps, (), ()), TWO, tmp_path, name="two.json")
    assert json.loads(path.read_text())["settings"]["gateways"] == 2
    settings, loaded = load_replay(path)
    assert settings == TWO and [tuple(step) for step in loaded] == list(steps)
    one = save_replay(Failure(((RestartEnvoy(2),),), (), ()), StackSettings(proxies=2), tmp_path)
    with pytest.raises(ValueError, match="does not have"):
        load_replay(one)


def test_two_gateways_have_their_own_database_key_and_letters():
    assert configuration_key(TWO) != configuration_key(StackSettings(proxies=2))
    labels = {letter.label for letter in alphabet("coarse", 2, gateways=2)}
    assert {"create Gateway gw-2", "delete Gateway gw-2", "hold xDS of proxy 2"} <= labels


def test_the_cli_refuses_a_third_gateway(capsys):
    assert main(["check", "--gateways", "3", "--database", "none"]) == 2
    assert "--gateways" in capsys.readouterr().err


@pytest.mark.envoy
@pytest.mark.slow
def test_a_check_on_two_gateways_passes_a_few_examples():
    before = set(processes.live_children())
    result = run_check(CheckOptions(stack=TWO, max_examples=3, steps=8, seed=20261202))
    assert result.passed, result.failure and [v.describe() for v in result.failure.violations]
    assert result.examples >= 3 and result.steps > 0
    assert set(processes.live_children()) == before


@pytest.mark.envoy
def test_a_control_plane_that_never_serves_the_second_gateway_is_caught_on_its_proxy(
    monkeypatch,
):
    """The fault: the second Gateway's node only ever gets the readiness listener, as if its
    Gateway were never created. Only its proxy can show it."""

    def blind(*args: object, **kwargs: object) -> dict[str, Snapshot]:
        result = nodes.split(*args, **kwargs)  # type: ignore[arg-type]
        for node, snapshot in result.items():
            if node.endswith(SECOND_GATEWAY):
                listeners = snapshot.of_type(ResourceType.LISTENER).values()
                kept = [item for item in listeners if "/" not in item.name]
                result[node] = Snapshot(frozenset(kept))
        return result

    monkeypatch.setattr(runner_module, "split", blind)
    steps = [[CreateGateway(second_gateway())], [CreateRoute(ON_BOTH)], [DeleteGateway("gw-2")]]
    violations = replay(TWO, steps, say=lambda line: None)
    assert violations, "the blind control plane passed"
    assert all(v.summary.startswith(f"proxy {SECOND_PROXY}:") for v in violations)
    assert {v.invariant for v in violations} >= {"routing"}


@pytest.mark.envoy
def test_a_server_that_forgets_deletions_is_caught_by_deleting_the_second_gateway():
    """`deletion-not-a-change` (found by `check --gateways 2` in two steps): the Gateway's
    proxy keeps listeners its node no longer has."""
    settings = attrs.evolve(TWO, proxies=1, mutants=Mutants.of(["deletion-not-a-change"]))
    steps = [[CreateGateway(second_gateway())], [DeleteGateway(SECOND_GATEWAY)]]
    violations = replay(settings, steps, say=lambda line: None)
    assert {v.invariant for v in violations} >= {"convergence", "routing"}
    assert all(v.summary.startswith("proxy 1:") for v in violations)
