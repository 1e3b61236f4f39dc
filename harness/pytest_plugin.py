"""routeproof as a pytest plugin: the state machine as one test of a user's own suite.

Installed with routeproof as the `pytest11` entry point `routeproof`, so a project that depends on
routeproof gets the `routeproof` fixture with no configuration:

    def test_every_route_resolves_after_any_sequence(routeproof):
        routeproof.check(xds="delta", failure_policy="keep-last-good")

What a call leaves out comes from the active Hypothesis profile (`settings.default`: the one a
conftest loaded, or `--hypothesis-profile`): examples (`max_examples`), steps per example
(`stateful_step_count`), a derandomized search (`derandomize`, then a fixed seed and no
database) and whether failures are saved (`database`). A failure fails the test with the shrunk
sequence and the replay command, as `python -m harness check` prints them; the replay file goes
to `--routeproof-runs` (default `runs/`). JUnit XML is pytest's own `--junitxml`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import settings as hypothesis_settings

from harness.commands.check import (
    DEFAULT_DATABASE,
    CheckOptions,
    CheckResult,
    format_counterexample,
    run_check,
    save_replay,
)
from harness.commands.workers import check_on_workers
from harness.lockstep.stack import StackSettings
from sut.controlplane import FailurePolicy
from sut.mutants import Mutants

__all__ = ["DERANDOMIZED_SEED", "Routeproof"]

DERANDOMIZED_SEED = 20261124
"""The seed of a search the profile derandomizes (as `check` does under CI)."""


@attrs.frozen
class Routeproof:
    """What the `routeproof` fixture gives a test: `check(...)` runs the machine."""

    runs: Path
    profile: hypothesis_settings

    def check(
        self,
        *,
        xds: str = "delta",
        failure_policy: str | None = None,
        mutants: Iterable[str] = (),
        max_examples: int | None = None,
        steps: int | None = None,
        seed: int | None = None,
        workers: int = 1,
        **stack: Any,
    ) -> CheckResult:
        """Search for a counterexample; fail the calling test with it, or return the result.

        `stack` sets any other `StackSettings` field (`proxies`, `grpc_clients`, `transport`,
        `strict_protocol`, ...). ValueError for a setting that does not exist."""
        chosen = Mutants.of(mutants)
        policy = failure_policy or chosen.failure_policy() or FailurePolicy.KEEP_LAST_GOOD.value
        unknown = set(stack) - set(attrs.fields_dict(StackSettings))
        if unknown:
            raise ValueError(f"unknown routeproof settings: {', '.join(sorted(unknown))}")
        settings = StackSettings(
            mode=xds,  # type: ignore[arg-type]
            failure_policy=FailurePolicy(policy),
            mutants=chosen,
            **stack,
        )
        derandomize = bool(self.profile.derandomize)
        if seed is None and (derandomize or workers > 1):
            seed = DERANDOMIZED_SEED
        options = CheckOptions(
            stack=settings,
            max_examples=max_examples or self.profile.max_examples,
            steps=steps or self.profile.stateful_step_count,
            seed=seed,
            derandomize=derandomize,
            database=None if derandomize or self.profile.database is None else DEFAULT_DATABASE,
        )
        result = check_on_workers(options, workers, xds) if workers > 1 else run_check(options)
        if result.failure is not None:
            path = save_replay(result.failure, settings, self.runs)
            pytest.fail(
                format_counterexample(result.failure, f"python -m harness replay {path}"),
                pytrace=False,
            )
        if not result.passed:
            pytest.fail(f"routeproof: the search stopped: {result.error}", pytrace=False)
        return result


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("routeproof")
    group.addoption(
        "--routeproof-runs",
        default="runs",
        metavar="DIR",
        help="where routeproof writes replay files of counterexamples (default: runs)",
    )


@pytest.fixture
def routeproof(request: pytest.FixtureRequest) -> Routeproof:
    """The routeproof state machine, with the active Hypothesis profile's defaults."""
    return Routeproof(
        runs=Path(str(request.config.getoption("--routeproof-runs"))),
        profile=hypothesis_settings.default or hypothesis_settings(),
    )
