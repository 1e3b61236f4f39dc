"""The explore plan: breadth first over abstract states, pure (no Envoy)."""

from __future__ import annotations

import attrs
import pytest

from harness.commands.explore import initial_model
from harness.lockstep.abstraction import History, abstract
from harness.lockstep.alphabet import COARSE, FULL, Letter
from harness.lockstep.exploration import plan
from harness.lockstep.operations import CreateRoute, CutXds, DeleteRoute, Resync
from harness.lockstep.stack import StackSettings

MODEL = initial_model(StackSettings())


def letters(*labels: str) -> tuple[Letter, ...]:
    by_label = {letter.label: letter for letter in FULL}
    return tuple(by_label[label] for label in labels)


def test_the_alphabets_have_the_sizes_the_issue_states():
    assert 50 <= len(FULL) <= 65
    assert 18 <= len(COARSE) <= 22
    assert len({letter.label for letter in FULL}) == len(FULL)
    # Every operation kind has a letter in both alphabets.
    assert {letter.kind for letter in COARSE} == {letter.kind for letter in FULL}


def test_a_cut_changes_no_model_state_but_a_different_abstract_state():
    cut = CutXds().on_model(MODEL)
    assert cut == MODEL
    assert abstract(cut, History().after("cut-xds")) != abstract(MODEL, History())


def test_a_store_change_clears_the_history_and_an_extension_change_is_pending():
    history = History().after("cut-xds").after("restart-envoy").after("set-fail-open")
    assert history.pending and history.cut and history.proxy_restarted
    assert not history.after("resync").pending
    assert history.after("create-route") == History()


def test_pod_names_and_creation_times_do_not_split_abstract_states():
    grown = MODEL.scale("svc-b", 2).settled()
    shrunk = grown.scale("svc-b", 1).settled()
    regrown = shrunk.scale("svc-b", 2).settled()
    assert regrown.world != grown.world  # new pod names
    assert abstract(regrown, History()) == abstract(grown, History())


def test_a_deleted_route_comes_back_with_its_catalogue_content():
    delete, create = letters("delete newest route", "create route (catalogue, lowest free name)")
    gone = delete.operation(MODEL)
    assert isinstance(gone, DeleteRoute)
    without = gone.on_model(MODEL)
    again = create.operation(without)
    assert isinstance(again, CreateRoute)
    previous = MODEL.world.route(gone.name)
    assert previous is not None
    assert attrs.evolve(again.route, created=previous.created) == previous


def test_letters_that_do_not_apply_are_skipped():
    release = letters("release xDS")[0]
    assert release.operation(MODEL) is None
    hold = letters("hold xDS")[0]
    held = hold.operation(MODEL).on_model(MODEL)  # type: ignore[union-attr]
    assert release.operation(held) is not None
    assert letters("restart Envoy")[0].operation(held) is None


def test_depth_one_runs_every_applicable_letter_once():
    result = plan(MODEL, FULL, 1)
    applicable = [letter for letter in FULL if letter.operation(MODEL) is not None]
    assert len(result.sequences) == len(applicable)
    assert all(len(sequence) == 1 for sequence in result.sequences)


def test_a_state_reached_again_is_not_extended_but_its_transition_runs():
    # resync with nothing pending returns to the initial abstract state: run, not extended.
    chosen = letters("resync", "cut xDS")
    result = plan(MODEL, chosen, 2)
    runs = {tuple(move.letter for move in sequence) for sequence in result.sequences}
    assert ("resync",) in runs
    assert not any(sequence[0] == "resync" and len(sequence) == 2 for sequence in runs)
    assert ("cut xDS", "resync") in runs and ("cut xDS", "cut xDS") in runs
    exhaustive = plan(MODEL, chosen, 2, exhaustive=True)
    assert len(exhaustive.sequences) == 4


def test_leaves_cover_every_planned_transition():
    result = plan(MODEL, COARSE, 2)
    covered = {sequence[:cut] for sequence in result.sequences for cut in range(1, 3)}
    assert result.planned <= len(covered)
    assert [len(sequence) for sequence in result.sequences] == sorted(
        len(sequence) for sequence in result.sequences
    )


def test_pruning_keeps_depth_three_small_enough_to_run():
    assert len(plan(MODEL, COARSE, 3).sequences) < len(
        plan(MODEL, COARSE, 3, exhaustive=True).sequences
    )


@pytest.mark.parametrize("depth", [-1])
def test_a_negative_depth_is_refused(depth):
    with pytest.raises(ValueError, match="depth"):
        plan(MODEL, COARSE, depth)


def test_the_operations_replay_as_a_check_would_build_them():
    sequence = plan(MODEL, letters("resync"), 1).sequences[0]
    assert sequence[0].operation == Resync()
