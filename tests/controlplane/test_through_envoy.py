"""The failure policies, the fault kinds, fail-open and the extension client, through real Envoy.

Each test drives a whole stack (echo pods, Envoy, xDS server, control plane, extension server on
loopback) and judges by what Envoy answers, what it holds (`converge`: exactly the published
snapshot) and what it refused (`update_rejections`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.lockstep.stack import Stack, StackSettings
from sut.controlplane import FailurePolicy, Outcome
from sut.extension import (
    MISSING_CLUSTER,
    MISSING_ROUTE_CONFIGURATION,
    REJECTED_HEADER,
    ExtensionStatistics,
    FailureKind,
    Fault,
    Hook,
    marker_value,
)
from sut.mutants import Mutants
from sut.xds import consistency_errors
from tests.controlplane.conftest import ONE, SITES, TWO, WEB, StackFactory
from tests.controlplane.manifests import Site, world
from tests.controlplane.observe import Answer, answer, answers, poll, ready_status

MODES = ["delta", "sotw"]
MARGIN = 0.5
"""Seconds a reconcile may take beyond its deadlines and backoffs (translation, healthy calls)."""
FAULTS = [
    Fault.UNAVAILABLE,
    Fault.HANG,
    Fault.INTERNAL,
    Fault.INVALID_REJECT,
    Fault.INVALID_DANGLING,
]
CHANGED = (ONE.changed("/v2"), TWO, WEB)
"""Route one moves to /v2: visible once published, invisible while the last good one serves."""


def _serving(sites: tuple[Site, ...], generation: int | None) -> dict[str, Answer]:
    marker = marker_value(generation) if generation is not None else None
    return {site.name: Answer(200, site.backend, marker) for site in sites}


def _error_everywhere(sites: tuple[Site, ...]) -> dict[str, Answer]:
    return {site.name: Answer(500) for site in sites}


def _assert_converged(stack: Stack) -> None:
    convergence = stack.converge()
    assert convergence.converged, convergence.describe()


def _assert_nothing_invalid_reached_envoy(stack: Stack) -> None:
    """Envoy refused nothing, and the snapshot it holds has no trace of invalid output."""
    assert stack.update_rejections() == {}
    snapshot = stack.published_snapshot()
    assert snapshot is not None
    assert consistency_errors(snapshot) == []
    for resource in snapshot:
        text = str(resource.message())
        for trace in (REJECTED_HEADER, MISSING_CLUSTER, MISSING_ROUTE_CONFIGURATION):
            assert f'"{trace}"' not in text, (resource.name, trace)


# --------------------------------------------------------------------- each failure policy


@pytest.mark.parametrize("policy", list(FailurePolicy))
@pytest.mark.parametrize("mode", MODES)
def test_failure_policy_under_a_fail_closed_hook_failure_then_recovery(
    make_stack: StackFactory, mode: str, policy: FailurePolicy
) -> None:
    stack = make_stack(mode=mode, failure_policy=policy)
    _assert_converged(stack)
    assert answers(stack, SITES) == _serving(SITES, 1)

    stack.extension_fault(Fault.INTERNAL)
    result = stack.apply(world(CHANGED))
    assert result.error and "INTERNAL" in result.error
    _assert_converged(stack)
    if policy is FailurePolicy.KEEP_LAST_GOOD:
        assert result.outcome is Outcome.KEPT_LAST_GOOD
        # The last good routes keep serving, with the last good marker; /v2 is not there yet.
        assert answers(stack, SITES) == _serving(SITES, 1)
        assert answer(stack, ONE, "/v2/x").status == 200  # "/" of the last good route 1
        assert answer(stack, ONE, "/v2/x").marker == marker_value(1)
    else:
        assert result.outcome is Outcome.FAILURE_POLICY
        assert answers(stack, CHANGED) == _error_everywhere(CHANGED)
        assert answer(stack, TWO, "/any/path").status == 500
    assert ready_status(stack) == 200

    stack.extension_recover(generation=2)
    recovered = stack.reconcile()
    assert recovered.outcome is Outcome.PUBLISHED
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _serving(CHANGED, 2)
    assert answer(stack, ONE, "/").status == 404  # route 1 now only serves /v2
    assert ready_status(stack) == 200
    assert stack.update_rejections() == {}
    assert stack.init_fetch_timeouts() == {}


# --------------------------------------------- fault kinds, fail-open and the client, shared


@pytest.fixture(scope="module", params=MODES)
def shared_stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """One rds-error stack per mode; `stack` puts it back in the healthy base state per test."""
    stack = Stack(StackSettings(mode=request.param, failure_policy=FailurePolicy.RDS_ERROR))
    try:
        for site in SITES:
            stack.scale("default", site.backend, 1)
        stack.start(world(SITES))
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(shared_stack: Stack) -> Iterator[Stack]:
    shared_stack.set_fail_open(False)
    shared_stack.extension_recover(generation=1)
    shared_stack.apply(world(SITES))
    _assert_converged(shared_stack)
    assert answers(shared_stack, SITES) == _serving(SITES, 1)
    try:
        yield shared_stack
    finally:
        shared_stack.extension_recover()  # wakes any hang at once
        shared_stack.set_fail_open(False)


@pytest.mark.parametrize(
    "hook", [None, Hook.POST_TRANSLATE_MODIFY], ids=["all-hooks", "post-translate"]
)
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_kind_is_a_hook_failure(stack: Stack, fault: Fault, hook: Hook | None) -> None:
    stack.extension_fault(fault, hook)
    result = stack.apply(world(CHANGED))
    assert result.outcome is Outcome.FAILURE_POLICY, result
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _error_everywhere(CHANGED)
    assert ready_status(stack) == 200
    _assert_nothing_invalid_reached_envoy(stack)

    stack.extension_recover(generation=2)
    assert stack.reconcile().outcome is Outcome.PUBLISHED
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _serving(CHANGED, 2)
    _assert_nothing_invalid_reached_envoy(stack)


@pytest.mark.parametrize("fault", FAULTS)
def test_fail_open_publishes_the_current_world_without_the_extensions_changes(
    stack: Stack, fault: Fault
) -> None:
    """PostTranslateModify fails, fail-open is on: the runner publishes the bare translation,
    without any of the extension's changes (not even PostRouteModify's marker)."""
    stack.set_fail_open(True)
    stack.extension_fault(fault, Hook.POST_TRANSLATE_MODIFY)
    result = stack.apply(world(CHANGED))
    assert result.outcome is Outcome.FAIL_OPEN, result
    assert result.error
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _serving(CHANGED, None)
    _assert_nothing_invalid_reached_envoy(stack)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f is not Fault.HANG])  # hang: below
def test_fail_open_on_every_hook_publishes_no_marker_at_all(stack: Stack, fault: Fault) -> None:
    stack.set_fail_open(True)
    stack.extension_fault(fault)
    assert stack.apply(world(CHANGED)).outcome is Outcome.FAIL_OPEN
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _serving(CHANGED, None)
    _assert_nothing_invalid_reached_envoy(stack)


def _client_statistics(stack: Stack) -> ExtensionStatistics:
    assert stack.extension_client is not None
    return stack.extension_client.statistics()


def test_a_hanging_extension_costs_one_deadline_per_reconcile(stack: Stack) -> None:
    settings = stack.settings
    assert stack.extension_server is not None
    before = _client_statistics(stack)
    stack.extension_fault(Fault.HANG)
    started = time.monotonic()
    result = stack.apply(world(CHANGED))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILURE_POLICY
    assert "deadline" in result.error
    # A deadline is not retried: one attempt, at least one deadline long, well under two.
    assert settings.extension_deadline * 0.9 <= elapsed
    assert elapsed < settings.extension_deadline * settings.extension_retry.max_attempts + MARGIN
    after = _client_statistics(stack)
    assert after.attempts - before.attempts == 1
    assert after.failures_of(FailureKind.DEADLINE) - before.failures_of(FailureKind.DEADLINE) == 1
    # The server's handler gives up with the caller: nothing is left hanging.
    server = stack.extension_server
    poll(lambda: sum(server.hanging(h) for h in Hook), lambda n: n == 0, 2.0, "hanging handlers")


@pytest.mark.parametrize("hook", [None, Hook.POST_ROUTE_MODIFY], ids=["server-down", "one-hook"])
def test_unavailable_is_retried_with_backoff_then_fails(stack: Stack, hook: Hook | None) -> None:
    settings = stack.settings
    assert stack.extension_server is not None
    before = _client_statistics(stack)
    stack.extension_fault(Fault.UNAVAILABLE, hook)
    assert stack.extension_server.serving is (hook is not None)
    started = time.monotonic()
    result = stack.apply(world(CHANGED))
    elapsed = time.monotonic() - started
    assert result.outcome is Outcome.FAILURE_POLICY and "unavailable" in result.error
    attempts = settings.extension_retry.max_attempts
    after = _client_statistics(stack)
    assert after.attempts - before.attempts == attempts
    assert after.retries - before.retries == attempts - 1
    backoffs = sum(settings.extension_retry.backoff(k) for k in range(1, attempts))
    assert elapsed < backoffs + MARGIN
    # The first reconcile after the server is back succeeds: no stale channel, no backoff.
    stack.extension_recover(generation=2)
    assert stack.extension_server.serving
    assert stack.reconcile().outcome is Outcome.PUBLISHED
    assert _client_statistics(stack).failures == after.failures
    _assert_converged(stack)
    assert answers(stack, CHANGED) == _serving(CHANGED, 2)


def test_an_internal_error_is_not_retried(stack: Stack) -> None:
    before = _client_statistics(stack)
    stack.extension_fault(Fault.INTERNAL)
    assert stack.apply(world(CHANGED)).outcome is Outcome.FAILURE_POLICY
    after = _client_statistics(stack)
    assert after.attempts - before.attempts == 1
    assert after.retries == before.retries


def test_fail_open_with_a_hanging_extension_waits_one_deadline_per_failing_call(
    stack: Stack,
) -> None:
    settings = stack.settings
    before = _client_statistics(stack)
    stack.set_fail_open(True)
    stack.extension_fault(Fault.HANG, Hook.POST_TRANSLATE_MODIFY)
    started = time.monotonic()
    assert stack.apply(world(CHANGED)).outcome is Outcome.FAIL_OPEN
    elapsed = time.monotonic() - started
    assert settings.extension_deadline * 0.9 <= elapsed < settings.extension_deadline + MARGIN
    after = _client_statistics(stack)
    assert after.fail_open_passes - before.fail_open_passes == 1


# ------------------------------------------------ the publish guard, shown by its mutant


def test_without_the_consistency_check_dangling_output_reaches_envoy(
    make_stack: StackFactory,
) -> None:
    """The guard matters: with the `dangling-reference` mutant the extension's output (every
    RouteConfiguration a listener names dropped) is published. Envoy keeps the RouteConfigurations
    it already had, but the new SNI filter chain never gets its own: the listener update stays
    warming and the new hostname is not served."""
    three = Site("three", "HTTPS", 443, "three.example.com", service="svc-two")
    stack = make_stack(
        (ONE, TWO),
        mutants=Mutants.of(["dangling-reference"]),
        initial_fetch_timeout=0.5,
    )
    _assert_converged(stack)
    stack.extension_fault(Fault.INVALID_DANGLING, Hook.POST_TRANSLATE_MODIFY)
    assert stack.apply(world((ONE, TWO, three))).outcome is Outcome.PUBLISHED
    snapshot = stack.published_snapshot()
    assert snapshot is not None
    assert any(three.route_configuration in problem for problem in consistency_errors(snapshot))
    convergence = stack.converge(timeout=2 * stack.settings.initial_fetch_timeout)
    assert not convergence.converged
    assert f"RouteConfiguration {three.route_configuration!r} is missing from Envoy" in (
        convergence.problems
    )
    assert answer(stack, three).status != 200
    assert answer(stack, TWO) == Answer(200, TWO.backend, marker_value(1))
