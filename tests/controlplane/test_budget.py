"""The translation budget: a hanging extension with fail-open delays a reconcile by at most the
budget, not by calls x deadline.

The unit tests drive the runner with `HangingExtension`, a stand-in for `ExtensionClient` that
plays each call's wait on an injected clock, so they are exact and take no time. The last test
does the same with the real client and the reference server, on the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, cast

import attrs
import pytest

from sut.controlplane import ControlPlane, ControlPlaneSettings, Outcome
from sut.errors import ExtensionError
from sut.extension import (
    Budget,
    ExtensionClient,
    ExtensionServer,
    ExtensionSettings,
    ExtensionStatistics,
    Fault,
    Hook,
    TranslateModifyResult,
)
from sut.mutants import Mutants
from sut.translate import TranslateOptions, translate
from sut.xds import Snapshot, SnapshotCache
from tests.controlplane.conftest import RETRY, SITES
from tests.controlplane.manifests import Site, world

NODE = "node"
OPTIONS = TranslateOptions(readiness_port=0)
HOOKS = frozenset({Hook.POST_ROUTE_MODIFY, Hook.POST_TRANSLATE_MODIFY})
MORE_SITES = (
    *SITES,
    Site("api", "HTTP", 8080, "api.example.com"),
    Site("shop", "HTTP", 8080, "shop.example.com"),
)
"""Seven routes (two of them the 421 routes of the shared HTTPS port): eight hook calls."""
WORLD = world(MORE_SITES)
BARE = Snapshot.from_messages(translate(WORLD, OPTIONS).xds.messages())
ROUTES = sum(
    len(host.routes)
    for config in translate(WORLD, OPTIONS).xds.route_configurations
    for host in config.virtual_hosts
)
CALLS = ROUTES + 1  # PostRouteModify per route, then PostTranslateModify
PER_SITE_DEADLINE = 0.25
MUTANT = "per-call-deadline-only"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@attrs.frozen
class Wait:
    """One hook call as the stand-in saw it."""

    hook: Hook
    timeout: float
    """What the call would give its RPC: the deadline, cut to what remains of the budget; 0 for
    a call the spent budget refused."""
    budget: Budget | None


class HangingExtension:
    """`ExtensionClient`'s contract for the runner, with an extension that hangs (or answers
    "no change" after `healthy_cost` seconds when `hanging` is off), played on `clock`.

    A hanging call waits its whole timeout (the clock advances by it) and fails as "deadline";
    a call whose budget is spent fails at once. Fail-open answers "no change", as the client does.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        deadline: float = PER_SITE_DEADLINE,
        fail_open: bool = True,
        healthy_cost: float = 0.001,
    ) -> None:
        self.clock = clock
        self.deadline = deadline
        self.fail_open = fail_open
        self.hanging = True
        self.healthy_cost = healthy_cost
        self.waits: list[Wait] = []
        self.errors: list[ExtensionError] = []
        self._passes = 0

    def statistics(self) -> ExtensionStatistics:
        return ExtensionStatistics(
            calls=len(self.waits),
            attempts=sum(1 for wait in self.waits if wait.timeout > 0),
            retries=0,
            failures=(("deadline", len(self.errors)),) if self.errors else (),
            fail_open_passes=self._passes,
            last_error=self.errors[-1] if self.errors else None,
        )

    def post_route_modify(
        self, route: Any, context: Any = None, *, budget: Budget | None = None
    ) -> Any:
        return self._call(Hook.POST_ROUTE_MODIFY, route, budget)

    def post_virtual_host_modify(self, virtual_host: Any, *, budget: Budget | None = None) -> Any:
        return self._call(Hook.POST_VIRTUAL_HOST_MODIFY, virtual_host, budget)

    def post_http_listener_modify(
        self, listener: Any, context: Any = None, *, budget: Budget | None = None
    ) -> Any:
        return self._call(Hook.POST_HTTP_LISTENER_MODIFY, listener, budget)

    def post_translate_modify(
        self,
        clusters: Iterable[Any],
        secrets: Iterable[Any],
        listeners: Iterable[Any],
        routes: Iterable[Any],
        context: Any = None,
        *,
        budget: Budget | None = None,
    ) -> TranslateModifyResult:
        sent = TranslateModifyResult(
            tuple(clusters), tuple(secrets), tuple(listeners), tuple(routes)
        )
        return self._call(Hook.POST_TRANSLATE_MODIFY, sent, budget)

    def _call(self, hook: Hook, unchanged: Any, budget: Budget | None) -> Any:
        if budget is not None and budget.spent:
            self.waits.append(Wait(hook, 0.0, budget))
            return self._fail(budget.exhausted(hook.value, "no attempt made"), unchanged)
        timeout = self.deadline if budget is None else budget.timeout(self.deadline)
        self.waits.append(Wait(hook, timeout, budget))
        if not self.hanging:
            self.clock.advance(self.healthy_cost)
            return unchanged
        self.clock.advance(timeout)
        error = ExtensionError(hook.value, "deadline", "DEADLINE_EXCEEDED: Deadline Exceeded")
        if budget is not None and timeout < self.deadline:
            error = budget.exhausted(hook.value, f"attempt 1: {error.reason}")
        return self._fail(error, unchanged)

    def _fail(self, error: ExtensionError, unchanged: Any) -> Any:
        self.errors.append(error)
        if not self.fail_open:
            raise error
        self._passes += 1
        return unchanged


def _control_plane(
    extension: HangingExtension | ExtensionClient,
    clock: FakeClock | None = None,
    *,
    budget: float | None,
    mutants: tuple[str, ...] = (),
) -> ControlPlane:
    settings = ControlPlaneSettings(
        node_id=NODE,
        translate_options=OPTIONS,
        hooks=HOOKS,
        mutants=Mutants.of(mutants),
        translation_budget=budget,
    )
    return ControlPlane(
        settings, SnapshotCache(), cast(ExtensionClient, extension), clock=clock or time.monotonic
    )


def _timeouts(extension: HangingExtension) -> list[float]:
    return [wait.timeout for wait in extension.waits]


def test_the_world_makes_enough_calls_to_matter() -> None:
    assert ROUTES >= 7
    assert CALLS * PER_SITE_DEADLINE > 1.0


def test_with_a_budget_the_waits_add_up_to_the_budget_and_later_calls_do_not_wait() -> None:
    clock = FakeClock()
    extension = HangingExtension(clock)
    control_plane = _control_plane(extension, clock, budget=0.625)
    result = control_plane.apply(WORLD)
    # Two calls get their whole deadline, the third what remains, the rest nothing.
    assert _timeouts(extension) == [0.25, 0.25, 0.125] + [0.0] * (CALLS - 3)
    assert sum(_timeouts(extension)) <= 0.625
    assert [wait.hook for wait in extension.waits] == [Hook.POST_ROUTE_MODIFY] * ROUTES + [
        Hook.POST_TRANSLATE_MODIFY
    ]
    # One budget for the whole reconcile, started on the injected clock.
    budgets = {wait.budget for wait in extension.waits}
    assert len(budgets) == 1
    (budget,) = budgets
    assert budget is not None and budget.seconds == 0.625 and budget.expires_at == 1000.625
    assert result.hook_seconds == 0.625
    # Fail-open publishes the bare translation, as after any failed call.
    assert result.outcome is Outcome.FAIL_OPEN
    assert "translation budget of 0.625 s exhausted" in result.error
    assert control_plane.published_snapshot == BARE
    assert all(error.kind == "deadline" for error in extension.errors)
    assert all("translation budget" in str(error) for error in extension.errors[2:])


def test_fail_open_within_the_budget_publishes_the_bare_translation() -> None:
    clock = FakeClock()
    control_plane = _control_plane(HangingExtension(clock), clock, budget=0.3)
    result = control_plane.apply(WORLD)
    assert result.outcome is Outcome.FAIL_OPEN and result.published
    assert control_plane.published_snapshot == BARE
    assert result.hook_seconds == pytest.approx(0.3)


def test_a_budget_below_the_deadline_cuts_the_first_call() -> None:
    clock = FakeClock()
    extension = HangingExtension(clock)
    result = _control_plane(extension, clock, budget=0.125).apply(WORLD)
    assert _timeouts(extension) == [0.125] + [0.0] * (CALLS - 1)
    assert result.hook_seconds == 0.125
    assert result.outcome is Outcome.FAIL_OPEN


def test_fail_closed_applies_the_failure_policy_to_the_budget_failure() -> None:
    clock = FakeClock()
    extension = HangingExtension(clock, fail_open=False)
    control_plane = _control_plane(extension, clock, budget=0.125)
    result = control_plane.apply(WORLD)
    assert result.outcome is Outcome.KEPT_LAST_GOOD and not result.published
    assert "PostRouteModify failed (deadline): translation budget of 0.125 s exhausted" in (
        result.error
    )
    assert _timeouts(extension) == [0.125]  # fail-closed stops at the first failed call
    assert control_plane.published_snapshot is None


def test_every_reconcile_has_a_budget_of_its_own() -> None:
    clock = FakeClock()
    extension = HangingExtension(clock)
    control_plane = _control_plane(extension, clock, budget=0.5)
    first = control_plane.apply(WORLD)
    waits_before = len(extension.waits)
    second = control_plane.reconcile()
    again = _timeouts(extension)[waits_before:]
    assert again == [0.25, 0.25] + [0.0] * (CALLS - 2)
    assert first.hook_seconds == second.hook_seconds == 0.5
    assert extension.waits[0].budget != extension.waits[-1].budget


def test_a_healthy_extension_within_the_budget_is_untouched_by_it() -> None:
    clock = FakeClock()
    extension = HangingExtension(clock, healthy_cost=0.01)
    extension.hanging = False
    result = _control_plane(extension, clock, budget=0.5).apply(WORLD)
    assert result.outcome is Outcome.PUBLISHED and not result.error
    assert _timeouts(extension)[0] == 0.25
    assert all(0.25 >= timeout > 0.0 for timeout in _timeouts(extension))
    assert result.hook_seconds == pytest.approx(CALLS * 0.01)


@pytest.mark.parametrize(
    ("budget", "mutants"), [(0.625, (MUTANT,)), (None, ())], ids=["mutant", "no-budget"]
)
def test_without_a_budget_every_call_waits_its_whole_deadline(
    budget: float | None, mutants: tuple[str, ...]
) -> None:
    """The mutant (and a runner with no budget set, today's behaviour): N calls x deadline."""
    clock = FakeClock()
    extension = HangingExtension(clock)
    result = _control_plane(extension, clock, budget=budget, mutants=mutants).apply(WORLD)
    assert _timeouts(extension) == [PER_SITE_DEADLINE] * CALLS
    assert {wait.budget for wait in extension.waits} == {None}
    assert result.hook_seconds == pytest.approx(CALLS * PER_SITE_DEADLINE)
    assert result.hook_seconds > 0.625
    assert result.outcome is Outcome.FAIL_OPEN
    assert "translation budget" not in result.error


def test_without_hooks_nothing_is_waited_on() -> None:
    control_plane = ControlPlane(
        ControlPlaneSettings(node_id=NODE, translate_options=OPTIONS, translation_budget=0.5),
        SnapshotCache(),
    )
    result = control_plane.apply(WORLD)
    assert result.outcome is Outcome.PUBLISHED and result.hook_seconds == 0.0


@pytest.mark.parametrize("budget", [0.0, -0.5])
def test_the_budget_must_be_positive(budget: float) -> None:
    with pytest.raises(ValueError, match="translation_budget"):
        ControlPlaneSettings(node_id=NODE, translation_budget=budget)


# --- on the wall clock, with the real client and the reference server ------------------------


@pytest.fixture
def hanging_server(extension_server: ExtensionServer) -> Iterator[ExtensionServer]:
    """The reference server hanging on PostRouteModify; hangs are woken when the test ends."""
    extension_server.set_fault(Fault.HANG, Hook.POST_ROUTE_MODIFY)
    yield extension_server
    extension_server.set_fault(Fault.HEALTHY)


def _timed_reconcile(server: ExtensionServer, mutants: tuple[str, ...]) -> tuple[float, Any]:
    settings = ExtensionSettings(
        server.address, deadline=PER_SITE_DEADLINE, retry=RETRY, fail_open=True
    )
    with ExtensionClient(settings) as client:
        control_plane = _control_plane(client, budget=0.3, mutants=mutants)
        started = time.monotonic()
        result = control_plane.apply(WORLD)
        elapsed = time.monotonic() - started
        assert result.outcome is Outcome.FAIL_OPEN
        assert control_plane.published_snapshot == BARE
        assert result.hook_seconds <= elapsed
    return elapsed, result


def test_a_hanging_extension_costs_the_budget_not_calls_x_deadline(
    hanging_server: ExtensionServer,
) -> None:
    elapsed, result = _timed_reconcile(hanging_server, ())
    assert elapsed < 0.3 + 1.0, elapsed
    assert "translation budget of 0.3 s exhausted" in result.error
    # The budget allows one whole deadline and part of another: at most two calls were made.
    assert 1 <= hanging_server.calls(Hook.POST_ROUTE_MODIFY) <= 2
    assert hanging_server.calls(Hook.POST_TRANSLATE_MODIFY) == 0

    elapsed, result = _timed_reconcile(hanging_server, (MUTANT,))
    assert elapsed > 0.3, elapsed
    assert elapsed >= ROUTES * PER_SITE_DEADLINE, elapsed  # every route waited its deadline
    assert result.hook_seconds > 0.3
    assert "translation budget" not in result.error
