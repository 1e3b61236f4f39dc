"""The translation budget: the `Budget` value, and the real client spending it against the
reference server over real gRPC."""

from __future__ import annotations

import time

import pytest
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost

from sut.errors import ExtensionError
from sut.extension import (
    Budget,
    ExtensionClient,
    ExtensionServer,
    ExtensionSettings,
    FailedAttempt,
    Fault,
    Hook,
    RetryPolicy,
)

SLACK = 0.5
"""What a loaded machine may add to a wait that the budget bounds."""


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the value ------------------------------------------------------------------------------


def test_a_budget_runs_down_on_its_clock() -> None:
    clock = FakeClock()
    budget = Budget.start(0.5, clock)
    assert (budget.remaining(), budget.timeout(0.2), budget.spent) == (0.5, 0.2, False)
    clock.advance(0.375)
    assert budget.timeout(0.2) == 0.125  # what remains, not the per-call deadline
    assert budget.covers(0.1) and not budget.covers(0.125)
    clock.advance(0.125)
    assert budget.spent and budget.remaining() == 0.0 and budget.timeout(0.2) == 0.0
    clock.advance(1.0)
    assert budget.remaining() == 0.0


def test_an_exhausted_budget_is_a_deadline_failure_naming_the_budget() -> None:
    error = Budget.start(0.3, FakeClock()).exhausted(Hook.POST_ROUTE_MODIFY.value, "why")
    assert (error.hook, error.kind) == ("PostRouteModify", "deadline")
    assert error.reason == "translation budget of 0.3 s exhausted (why)"


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("nan")])
def test_a_budget_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="seconds must be positive"):
        Budget.start(seconds, FakeClock())


# --- the client spending it -----------------------------------------------------------------


def test_a_spent_budget_fails_the_call_at_once_without_an_rpc(
    server: ExtensionServer, route: Route
) -> None:
    clock = FakeClock()
    budget = Budget.start(0.3, clock)
    clock.advance(0.3)
    with ExtensionClient(ExtensionSettings(server.address)) as client:
        with pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route, budget=budget)
        client.set_fail_open(True)
        assert client.post_route_modify(route, budget=budget) is route
        statistics = client.statistics()
    assert (raised.value.kind, raised.value.hook) == ("deadline", "PostRouteModify")
    assert "translation budget of 0.3 s exhausted" in raised.value.reason
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 0
    assert (statistics.calls, statistics.attempts) == (2, 0)
    assert statistics.failures_of("deadline") == 2
    assert statistics.fail_open_passes == 1


def test_a_hang_is_cut_at_what_remains_of_the_budget(server: ExtensionServer, route: Route) -> None:
    """The gRPC timeout is the budget's remainder, so a hanging server cannot outlast it."""
    server.set_fault(Fault.HANG, Hook.POST_ROUTE_MODIFY)
    with ExtensionClient(ExtensionSettings(server.address, deadline=10.0)) as client:
        started = time.monotonic()
        with pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route, budget=Budget.start(0.3))
        elapsed = time.monotonic() - started
    assert raised.value.kind == "deadline"
    assert "translation budget of 0.3 s exhausted (attempt 1: DEADLINE_EXCEEDED" in str(
        raised.value
    )
    assert 0.3 <= elapsed < 0.3 + SLACK
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 1


def test_retries_of_unavailable_stop_when_the_budget_is_spent(
    server: ExtensionServer, route: Route
) -> None:
    """Without the budget this would make 50 attempts over 2.5 s of backoff."""
    server.set_fault(Fault.UNAVAILABLE, Hook.POST_ROUTE_MODIFY)
    failed: list[FailedAttempt] = []
    retry = RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.05)
    settings = ExtensionSettings(server.address, deadline=0.2, retry=retry)
    with ExtensionClient(settings, on_failed_attempt=failed.append) as client:
        started = time.monotonic()
        with pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route, budget=Budget.start(0.3))
        elapsed = time.monotonic() - started
        # The budget belongs to the call it was given; a call without one retries as before.
        assert client.post_virtual_host_modify(VirtualHost(name="vh")).name == "vh"
        statistics = client.statistics()
    assert raised.value.kind == "deadline"
    assert "translation budget of 0.3 s exhausted" in raised.value.reason
    assert "UNAVAILABLE" in raised.value.reason  # what the last attempt met
    assert elapsed < 0.3 + SLACK
    attempts = server.calls(Hook.POST_ROUTE_MODIFY)
    assert 2 <= attempts <= 7  # retried while the budget lasted, never the policy's 50
    assert [f.attempt for f in failed] == list(range(1, attempts + 1))
    assert [f.will_retry for f in failed] == [True] * (attempts - 1) + [False]
    assert statistics.retries == attempts - 1


def test_a_backoff_the_budget_cannot_cover_is_not_started(
    server: ExtensionServer, route: Route
) -> None:
    server.set_fault(Fault.UNAVAILABLE, Hook.POST_ROUTE_MODIFY)
    retry = RetryPolicy(max_attempts=4, initial_backoff=1.0, max_backoff=1.0)
    with ExtensionClient(ExtensionSettings(server.address, retry=retry)) as client:
        started = time.monotonic()
        with pytest.raises(ExtensionError) as raised:
            client.post_route_modify(route, budget=Budget.start(0.5))
        elapsed = time.monotonic() - started
        statistics = client.statistics()
    assert raised.value.kind == "deadline"
    assert "translation budget of 0.5 s exhausted (attempt 1: UNAVAILABLE" in str(raised.value)
    assert elapsed < 0.5  # failed at once, not after a 1 s wait
    assert server.calls(Hook.POST_ROUTE_MODIFY) == 1
    assert statistics.retries == 0


def test_a_call_the_budget_did_not_shorten_keeps_its_own_failure(
    server: ExtensionServer, route: Route
) -> None:
    server.set_fault(Fault.HANG, Hook.POST_ROUTE_MODIFY)
    settings = ExtensionSettings(server.address, deadline=0.2)
    with ExtensionClient(settings) as client, pytest.raises(ExtensionError) as raised:
        client.post_route_modify(route, budget=Budget.start(5.0))
    assert raised.value.kind == "deadline"
    assert "translation budget" not in raised.value.reason
    assert raised.value.reason.startswith("DEADLINE_EXCEEDED")
