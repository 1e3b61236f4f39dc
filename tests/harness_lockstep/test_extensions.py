"""A user's own operations and invariants: loaded by import path, checked for clashes, run by
`check` and `explore` like the built-in ones, and written to and read from replay files."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from harness.commands.check import CheckOptions, load_replay, run_check, save_replay
from harness.commands.explore import ExploreOptions, run_explore
from harness.lockstep import extensions
from harness.lockstep.extensions import Extensions, Letter
from harness.lockstep.machine import Failure
from harness.lockstep.operations import Resync
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Violation
from model import ModelState

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway-suite" / "tests"
PATH = "gateway_extensions:EXTENSIONS"


@pytest.fixture
def user(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    yield extensions.load(PATH)
    extensions.load.cache_clear()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "expected an import path"),
        ("no_such_module_here:X", "cannot import no_such_module_here"),
        ("harness.lockstep.extensions:NONE_AT_ALL", "NoneType, not routeproof Extensions"),
    ],
)
def test_a_bad_path_is_a_clear_error(path, message):
    with pytest.raises(ValueError, match=message):
        extensions.load(path)


def test_an_operation_may_not_take_a_built_in_kind_nor_a_letter_an_unknown_one():
    with pytest.raises(ValueError, match="kind 'resync' is taken"):
        Extensions(operations=[Resync])
    with pytest.raises(ValueError, match="builds kind 'nope'"):
        Extensions(letters=[Letter("x", "nope", lambda model: None)])


def test_an_invariant_that_raises_is_a_violation_not_a_crash():
    def broken(stack, model):
        raise KeyError("boom")

    found = Extensions(invariants=[broken]).check(None, ModelState())  # type: ignore[arg-type]
    assert found == [Violation("user-invariant", "broken raised KeyError: 'boom'")]


def test_check_draws_the_users_operation_and_runs_its_invariant(user):
    settings = StackSettings(mode="delta", extensions=PATH)
    result = run_check(CheckOptions(stack=settings, max_examples=4, steps=10, seed=3))
    assert result.passed, result.failure
    assert result.kinds.get("recreate-route", 0) > 0


def test_explore_spells_sequences_with_the_users_letters(user):
    settings = StackSettings(mode="delta", extensions=PATH)
    options = ExploreOptions(stack=settings, depth=2, letters=user.letters, workers=1)
    result = run_explore(options)
    assert result.passed, result.failure
    assert result.kinds.get("recreate-route") == 2  # the route, then the one now oldest


def test_a_replay_file_names_the_extensions_and_reads_their_operations_back(user, tmp_path):
    operation = user.applicable(ModelState().started(_world()))[0]
    settings = StackSettings(extensions=PATH)
    path = save_replay(Failure(((operation,),), (), ()), settings, tmp_path, name="user.json")
    loaded, steps = load_replay(path)
    assert loaded == settings and steps == [[operation]]
    assert attrs.evolve(loaded, extensions=None) == StackSettings()


def _world():
    from harness.lockstep.worlds import initial_world

    return initial_world({})


def test_a_stalled_healthy_extension_discards_the_example_and_is_counted():
    """Not a counterexample: the model takes a healthy extension to answer in time."""
    settings = StackSettings(mode="delta", extensions="tests.harness_lockstep.starving:EXTENSIONS")
    result = run_check(CheckOptions(stack=settings, max_examples=10, steps=8, seed=2))
    assert result.passed, result.failure
    assert result.discarded > 0
