"""The seed bug (BRIEF.md section 1, Envoy Gateway issue 5595) reproduced through real Envoy.

Two HTTPS Gateway listeners on one port, selected by SNI, each with its own RouteConfiguration
and one HTTPRoute. The extension fails on PostTranslateModify; route 1 changes; the extension
recovers (making the same change as before, so route 2's RouteConfiguration is byte-identical to
what Envoy held before the failure); route 1 changes again.
"""

from __future__ import annotations

import pytest

from harness.lockstep.stack import Stack
from sut.controlplane import FailurePolicy, Outcome
from sut.extension import Fault, Hook, marker_value
from sut.mutants import Mutants
from tests.controlplane.conftest import ONE, TWO, StackFactory
from tests.controlplane.manifests import Site, world
from tests.controlplane.observe import Answer, answer, poll

MODES = ["delta", "sotw"]
FETCH_TIMEOUT = 0.5
ROUTE_1_CHANGED = ONE.changed("/v2")
ROUTE_1_CHANGED_AGAIN = ONE.changed("/v3")


def _serving(site: Site) -> Answer:
    return Answer(200, site.backend, marker_value(1))


def _assert_converged(stack: Stack) -> None:
    convergence = stack.converge()
    assert convergence.converged, convergence.describe()


def _start(make_stack: StackFactory, mode: str, policy: FailurePolicy, *mutants: str) -> Stack:
    stack = make_stack(
        (ONE, TWO),
        mode=mode,
        failure_policy=policy,
        mutants=Mutants.of(mutants),
        initial_fetch_timeout=FETCH_TIMEOUT,
    )
    _assert_converged(stack)
    assert answer(stack, ONE) == _serving(ONE)
    assert answer(stack, TWO) == _serving(TWO)
    return stack


def _fail_then_change_route_1(stack: Stack, policy: FailurePolicy) -> None:
    stack.extension_fault(Fault.INTERNAL, Hook.POST_TRANSLATE_MODIFY)
    failed = stack.apply(world((ROUTE_1_CHANGED, TWO)))
    expected = (
        Outcome.KEPT_LAST_GOOD if policy is FailurePolicy.KEEP_LAST_GOOD else Outcome.FAILURE_POLICY
    )
    assert failed.outcome is expected
    _assert_converged(stack)
    if policy is not FailurePolicy.KEEP_LAST_GOOD:
        assert answer(stack, ROUTE_1_CHANGED).status == 500
        assert answer(stack, TWO).status == 500


def _recover_and_change_route_1_again(stack: Stack) -> None:
    stack.extension_recover()  # same generation: the extension's change is the same as before
    assert stack.apply(world((ROUTE_1_CHANGED_AGAIN, TWO))).outcome is Outcome.PUBLISHED


def _await_rds_timeout(stack: Stack, *sites: Site) -> None:
    """Envoy gave up waiting for these sites' RouteConfigurations (initial_fetch_timeout)."""
    wanted = {f"http.https-443.rds.{site.route_configuration}.init_fetch_timeout" for site in sites}
    poll(
        stack.init_fetch_timeouts,
        lambda found: wanted <= set(found),
        4 * FETCH_TIMEOUT + 1.0,
        f"RDS initial fetch timeouts for {sorted(wanted)}",
    )


def test_seed_inline_error_with_resubscribe_ignored_leaves_route_2_at_404(
    make_stack: StackFactory,
) -> None:
    stack = _start(make_stack, "delta", FailurePolicy.INLINE_ERROR, "resubscribe-ignored")
    _fail_then_change_route_1(stack, FailurePolicy.INLINE_ERROR)
    _recover_and_change_route_1_again(stack)
    _await_rds_timeout(stack, TWO)
    assert answer(stack, ROUTE_1_CHANGED_AGAIN) == _serving(ROUTE_1_CHANGED_AGAIN)
    assert answer(stack, TWO).status == 404
    assert stack.update_rejections() == {}
    convergence = stack.converge(timeout=0.2)
    assert f"RouteConfiguration {TWO.route_configuration!r} is missing from Envoy" in (
        convergence.problems
    )


@pytest.mark.parametrize(
    ("mode", "mutant"), [("delta", "resubscribe-ignored"), ("sotw", "sotw-new-names-ignored")]
)
def test_seed_without_route_changes_leaves_every_route_at_404(
    make_stack: StackFactory, mode: str, mutant: str
) -> None:
    """The same failure and recovery with no route change in between (controller resyncs only):
    every RouteConfiguration comes back unchanged, so Envoy's re-subscription is the only thing
    that can bring them back. In SotW this is the only form of the seed the mutant shows: a route
    change at recovery changes the RDS version, which the mutant does answer."""
    stack = _start(make_stack, mode, FailurePolicy.INLINE_ERROR, mutant)
    stack.extension_fault(Fault.INTERNAL, Hook.POST_TRANSLATE_MODIFY)
    assert stack.reconcile().outcome is Outcome.FAILURE_POLICY
    _assert_converged(stack)
    assert answer(stack, ONE).status == 500
    stack.extension_recover()
    assert stack.reconcile().outcome is Outcome.PUBLISHED
    _await_rds_timeout(stack, ONE, TWO)
    assert answer(stack, ONE).status == 404
    assert answer(stack, TWO).status == 404


@pytest.mark.parametrize("policy", list(FailurePolicy))
@pytest.mark.parametrize("mode", MODES)
def test_seed_without_a_mutant_serves_both_routes(
    make_stack: StackFactory, mode: str, policy: FailurePolicy
) -> None:
    stack = _start(make_stack, mode, policy)
    _fail_then_change_route_1(stack, policy)
    _recover_and_change_route_1_again(stack)
    _assert_converged(stack)
    assert answer(stack, ROUTE_1_CHANGED_AGAIN) == _serving(ROUTE_1_CHANGED_AGAIN)
    assert answer(stack, TWO) == _serving(TWO)
    assert stack.init_fetch_timeouts() == {}
    assert stack.update_rejections() == {}


@pytest.mark.parametrize("mode", MODES)
def test_seed_without_route_changes_and_without_a_mutant_serves_both_routes(
    make_stack: StackFactory, mode: str
) -> None:
    stack = _start(make_stack, mode, FailurePolicy.INLINE_ERROR)
    stack.extension_fault(Fault.INTERNAL, Hook.POST_TRANSLATE_MODIFY)
    stack.reconcile()
    _assert_converged(stack)
    stack.extension_recover()
    stack.reconcile()
    _assert_converged(stack)
    assert answer(stack, ONE) == _serving(ONE)
    assert answer(stack, TWO) == _serving(TWO)
    assert stack.init_fetch_timeouts() == {}
