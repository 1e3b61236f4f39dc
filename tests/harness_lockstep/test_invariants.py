"""The step invariants on their own: liveness, the window probe and Envoy's counters.

Each has a unit test on plain values (what it reports for a violating input, and that it stays
quiet otherwise) and a test through the real stack: a mutant (or a harness misstep) that breaks
it, and the unmutated SUT that does not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest

from harness.lockstep.invariants import (
    RECONCILE_SLACK,
    EnvoyCounters,
    Sample,
    allowed_removals,
    liveness_violations,
    window_violations,
)
from harness.lockstep.operations import (
    ExtensionFault,
    HoldXds,
    Operation,
    RestartControlPlane,
    Scale,
    SetFailOpen,
    UpdateRoute,
    publish_world,
)
from harness.lockstep.session import Session
from harness.lockstep.stack import Reconcile, Stack, StackSettings
from harness.loopback.probe import ProbeResult
from model import Backend, Match, ModelState, Request, Route, Rule, Status
from sut.mutants import Mutants
from sut.xds import Snapshot
from tests.xds.builders import cluster, listener, resource

# ------------------------------------------------------------------ liveness


def test_a_reconcile_within_its_budget_is_live_and_one_beyond_it_is_not():
    quick = Reconcile(at=0.0, seconds=0.05, outcome="published")
    slow = Reconcile(at=0.0, seconds=0.5 + RECONCILE_SLACK + 0.01, outcome="published-fail-open")
    assert liveness_violations([quick], budget=0.5) == []
    (violation,) = liveness_violations([quick, slow], budget=0.5)
    assert violation.invariant == "liveness"
    assert "waiting on the extension hooks" in violation.details[0]


# --------------------------------------------------------------- the window

REQUEST = Request(8080, "http", "a.example.com", "/")
OTHER = Request(8081, "http", "a.example.com", "/")


def sample(request: Request, status: int) -> Sample:
    return Sample(request, 0.0, ProbeResult(status=status, body=b""))


def test_the_window_allows_only_answers_of_configurations_passed_through():
    allowed = {REQUEST: frozenset({Status(404), Status(503)}), OTHER: frozenset({Status(404)})}
    assert window_violations([sample(REQUEST, 503)], allowed.__getitem__, {}) == []
    (violation,) = window_violations(
        [sample(REQUEST, 503), sample(OTHER, 500)], allowed.__getitem__, {}
    )
    assert violation.invariant == "hitless" and "1 of 2" in violation.summary


def test_the_window_leaves_out_probes_without_an_answer():
    late = Sample(REQUEST, 0.0, ProbeResult(status=None, error="timed out", error_kind="timeout"))
    cut = Sample(
        REQUEST, 0.0, ProbeResult(status=None, error="IncompleteRead", error_kind="closed")
    )
    refused = Sample(REQUEST, 0.0, ProbeResult(status=None, error="refused", error_kind="refused"))
    allowed = {REQUEST: frozenset({Status(404)})}
    assert window_violations([late, cut], allowed.__getitem__, {}) == []
    assert window_violations([refused], allowed.__getitem__, {})


def test_the_window_leaves_out_listeners_that_moved():
    allowed = {OTHER: frozenset({Status(404)})}
    moved = {(8081, "http"): ("127.0.0.1", 1)}
    assert window_violations([sample(OTHER, 500)], allowed.__getitem__, moved) == []


# ---------------------------------------------------------- Envoy's counters


class Admin:
    """Stands in for Envoy's counters, as the session reads them once per check."""

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}

    def stats(self) -> Mapping[str, int]:
        return dict(self.counters)


def snapshot(*listeners: str) -> Snapshot:
    return Snapshot(frozenset(resource(listener(name, "rc")) for name in listeners))


def test_allowed_removals_add_up_along_the_published_trail():
    trail = [snapshot("a", "b"), snapshot("a"), snapshot("a", "c"), snapshot()]
    from sut.xds import ResourceType

    assert allowed_removals(trail, ResourceType.LISTENER) == 3
    assert allowed_removals(trail[:1], ResourceType.LISTENER) == 0
    clusters = [Snapshot(frozenset({resource(cluster("x"))})), Snapshot.empty()]
    assert allowed_removals(clusters, ResourceType.CLUSTER) == 1


def test_removals_beyond_what_was_published_are_a_violation():
    admin, counters, process = Admin(), EnvoyCounters(), object()
    trail = [snapshot("a", "b"), snapshot("a", "b")]
    assert counters.check(process, admin.stats(), trail, 0) == []
    admin.counters["listener_manager.listener_removed"] = 2
    (violation,) = counters.check(process, admin.stats(), trail, 0)
    assert violation.invariant == "envoy-counters"
    admin.counters["listener_manager.listener_removed"] = 3
    assert counters.check(process, admin.stats(), [snapshot("a", "b"), snapshot("a")], 0) == []


def test_warming_after_convergence_and_unasked_rejections_are_violations():
    admin, counters, process = Admin(), EnvoyCounters(), object()
    admin.counters["listener_manager.total_listeners_warming"] = 1
    admin.counters["listener_manager.lds.update_rejected"] = 1
    found = {v.invariant for v in counters.check(process, admin.stats(), [], 0)}
    assert found == {"envoy-counters", "nack"}
    admin.counters["listener_manager.total_listeners_warming"] = 0
    admin.counters["listener_manager.lds.update_rejected"] = 2
    assert counters.check(process, admin.stats(), [], 1) == []


def test_a_new_envoy_starts_its_counters_again():
    admin, counters = Admin(), EnvoyCounters()
    admin.counters["listener_manager.listener_removed"] = 5
    trail = [snapshot("a")]
    assert counters.check(object(), admin.stats(), trail, 0)  # 5 removals nobody published
    assert counters.check(
        object(), admin.stats(), trail, 0
    )  # a new process: compared with zero again


# ---------------------------------------------- through the real stack


def run(settings: StackSettings, operations: list[Operation]) -> set[str]:
    """Apply each operation as its own step; the invariants violated at any step."""
    session = Session(settings)
    broken: set[str] = set()
    try:
        session.start()
        broken |= {v.invariant for v in session.check()}
        for operation in operations:
            session.apply(operation)
            broken |= {v.invariant for v in session.check()}
    finally:
        session.stop()
    return broken


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_a_hanging_extension_breaks_liveness_only_without_a_translation_budget(mode):
    operations: list[Operation] = [
        SetFailOpen(True),
        ExtensionFault("hang", "PostRouteModify"),
        UpdateRoute(
            Route("route-0", 0, (Rule((Match("PathPrefix", "/v2"),), (Backend("svc-a"),)),))
        ),
    ]
    assert "liveness" not in run(StackSettings(mode=mode), operations)
    mutant = StackSettings(mode=mode, mutants=Mutants.of(["per-call-deadline-only"]))
    assert "liveness" in run(mutant, operations)


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_counters_see_a_control_plane_that_serves_nothing_before_it_translates(mode):
    operations: list[Operation] = [RestartControlPlane()]
    assert "envoy-counters" not in run(StackSettings(mode=mode), operations)
    mutant = StackSettings(mode=mode, mutants=Mutants.of(["empty-snapshot-on-start"]))
    assert "envoy-counters" in run(mutant, operations)


class _ScaleStoppingPodsFirst(Scale):
    """A harness misstep, for this test only: the pod stops before its endpoint is withdrawn,
    as when Kubernetes kills a pod without a terminating grace. Envoy still routes to it."""

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.stop_pods(after.terminating)
        publish_world(stack, after.world)


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_the_window_probe_sees_a_blip_that_a_careful_scale_down_avoids(mode):
    """Behind a held connection Envoy keeps the old endpoints. Withdrawing a pod's endpoint
    before stopping it keeps every answer allowed; stopping it first makes requests fail while
    the step is under way (the window), which is what a terminating pod's grace prevents."""
    assert "hitless" not in _held_scale_down(mode, Scale("svc-a", 1))
    assert "hitless" in _held_scale_down(mode, _ScaleStoppingPodsFirst("svc-a", 1))


def _held_scale_down(mode: str, scale: Scale) -> set[str]:
    session = Session(StackSettings(mode=mode))
    try:
        session.start()
        session.apply(Scale("svc-a", 2))
        assert not session.check()
        session.apply(HoldXds())
        session.apply(scale)
        window = session.current_window()
        assert window is not None
        deadline = time.monotonic() + 10.0
        while window.samples_taken < 30 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the probe thread's progress, with a deadline
        assert window.samples_taken >= 30
        return {v.invariant for v in session.check()}
    finally:
        session.stop()
