"""One example: a fresh stack and model, the same operations applied to both, invariants checked.

A step is every operation applied since the last check (one rule of the machine: one operation,
or a compound such as hold, changes, release). `apply` runs an operation on the model and the
stack side by side and, at the first operation of a step, starts the window probe; `check` ends
the step and runs every invariant:

- convergence: every stream ACKed the published snapshot and Envoy holds exactly it;
- hitless: requests sent while the step took effect got answers of configurations the proxy may
  pass through (`invariants.window`);
- liveness: every reconcile stayed within its translation budget (`invariants.liveness`);
- consistency: the published snapshot has no dangling reference;
- routing: every probe after the step gets an outcome the model allows;
- readiness: the readiness listener answers;
- protocol: the xDS monitor's rules over the bytes on the wire (`monitor`);
- nack: Envoy rejects only what the harness made it reject, once;
- envoy-counters and unanswered-subscription: Envoy's own counters.

Invariants live in `harness.lockstep.invariants`; the session only orders them.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence

import attrs

from harness.lockstep.envoy_state import EnvoyView
from harness.lockstep.invariants import (
    Addresses,
    EnvoyCounters,
    FetchTimeouts,
    InvariantViolated,
    Sample,
    Violation,
    WindowProbe,
    counters,
    liveness_violations,
    readiness_violations,
    routing_violations,
    subscriptions,
    window_violations,
)
from harness.lockstep.operations import Operation
from harness.lockstep.stack import Stack, StackSettings
from harness.lockstep.worlds import NAMESPACE, SERVICES, initial_world, load_world, probe_requests
from harness.loopback.spares import SpareEnvoys
from model import (
    Extension,
    ModelState,
    Outcome,
    ProxyConfig,
    Request,
    World,
    expected_through,
    pod_name,
)
from sut.xds import Snapshot, consistency_errors

__all__ = ["Session", "Step"]

_PROBE_WORKERS = 4
_ENVOY_STATS = f"{counters.STATS_FILTER}|{subscriptions.STATS_FILTER}"
"""Every counter the invariants read, fetched in one admin call per check."""
WINDOW_STRIDE = 7
"""Each step's window starts this many requests further along the catalogue."""


@attrs.define
class Step:
    """What happened since the last check, for the invariants that judge a whole step."""

    started: float
    before: ModelState
    configs: list[ProxyConfig | None]
    """Every configuration the proxy may have held during the step, in order."""
    live_pods: set[str]
    addresses: Addresses
    reconciles_from: int
    operations: list[Operation] = attrs.Factory(list)
    hitless: bool = True
    window: WindowProbe | None = None


def initial_pods() -> dict[str, tuple[str, ...]]:
    """Every Service starts with one pod."""
    return {service: (pod_name(service, 0),) for service in SERVICES}


class Session:
    """Drives one stack and one model through the same operations."""

    def __init__(self, settings: StackSettings, spares: SpareEnvoys | None = None) -> None:
        self.settings = settings
        self.stack = Stack(settings, spares)
        extension = Extension(fail_open=settings.fail_open) if settings.extension else None
        self.model = ModelState(extension=extension, policy=str(settings.failure_policy))
        self.steps: list[tuple[Operation, ...]] = []
        """The operations of each checked step, in order."""
        self.step_started_seq = 0
        self._step: Step | None = None
        self._window_offset = 0
        self._counters = EnvoyCounters()
        self._fetch_timeouts = FetchTimeouts()
        self._trail_from = 0
        """Index of the publication Envoy held at the last counters check."""
        self._rejections_checked = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=_PROBE_WORKERS)

    # -------------------------------------------------------------- lifecycle

    @property
    def world(self) -> World:
        return self.model.world

    @property
    def held(self) -> bool:
        return self.model.held

    def start(
        self, world_of: Callable[[dict[str, tuple[str, ...]]], World] = initial_world
    ) -> None:
        """Start the stack on the world `world_of` builds from the initial pods."""
        world = world_of(initial_pods())
        for service in world.services:
            self.stack.start_pods(NAMESPACE, service.name, service.pods)
        endpoints = {service.name: service.pods for service in world.services}
        # The initial world goes through YAML and the real loader; operations build Resources
        # directly (`to_resources`), held equal to this path by tests/harness_lockstep.
        self.stack.start(load_world(world, world.load_balancer), endpoints={NAMESPACE: endpoints})
        self.model = self.model.started(world)
        self._envoy_started()

    def stop(self) -> None:
        try:
            if self._step is not None and self._step.window is not None:
                self._step.window.stop()
            if self.model.held:
                self.stack.release_xds()
        finally:
            self.stack.stop()
            self._pool.shutdown(wait=True)

    def _envoy_started(self) -> None:
        assert self.stack.envoy is not None
        # Started with nothing to fetch, its initial fetches time out by design.
        counting = self.stack.published_snapshot() is not None
        self._fetch_timeouts.reset(self.stack.envoy, counting=counting)

    # ------------------------------------------------------------ operations

    def apply(self, operation: Operation) -> None:
        """Apply one operation to the model and the stack; the first of a step starts it."""
        if self._step is None:
            self._begin_step()
        step = self._step
        assert step is not None
        before = self.model
        after = operation.on_model(before)
        step.operations.append(operation)
        step.hitless = step.hitless and operation.hitless
        step.live_pods |= after.live_pods
        operation.on_stack(self.stack, before, after)
        self.model = after
        step.configs += before.passing(after)[1:]
        if operation.kind == "restart-envoy":
            self._envoy_started()

    @property
    def trace(self) -> tuple[tuple[Operation, ...], ...]:
        """Every step so far, the one under way included."""
        ongoing = (tuple(self._step.operations),) if self._step is not None else ()
        return (*self.steps, *ongoing)

    def current_window(self) -> WindowProbe | None:
        """The window probe of the step under way, if one is."""
        return self._step.window if self._step is not None else None

    def _begin_step(self) -> None:
        self.stack.monitor.sync()
        self.step_started_seq = self.stack.monitor.last_seq
        addresses = Addresses.of(self.stack.listener_ports(), self.stack.origins)
        requests = list(probe_requests(self.world))
        self._window_offset = (self._window_offset + WINDOW_STRIDE) % max(len(requests), 1)
        self._step = Step(
            started=time.monotonic(),
            before=self.model,
            configs=[self.model.proxy],
            live_pods=set(self.model.live_pods),
            addresses=addresses,
            reconciles_from=len(self.stack.reconciles),
            window=WindowProbe(addresses, requests, offset=self._window_offset).start(),
        )

    # ------------------------------------------------------------- invariants

    def check(self) -> list[Violation]:
        """End the step and check every invariant; an empty list when all hold."""
        step, self._step = self._step, None
        if step is not None:
            self.steps.append(tuple(step.operations))
        violations: list[Violation] = []
        converged = True
        view: EnvoyView | None = None
        if not self.model.held:
            convergence = self.stack.converge()
            converged, view = convergence.converged, convergence.view
            if not converged:
                violations.append(
                    Violation("convergence", convergence.describe(), convergence.problems)
                )
        samples = step.window.stop() if step is not None and step.window is not None else []
        ports = self.stack.listener_ports(view)
        addresses = Addresses.of(ports, self.stack.origins)
        if step is not None:
            violations += self._step_violations(step, samples, addresses)
        if converged:
            self._settle()
        snapshot = self.stack.published_snapshot()
        if snapshot is not None:
            errors = consistency_errors(snapshot)
            if errors:
                violations.append(
                    Violation(
                        "consistency", "the published snapshot is not consistent", tuple(errors)
                    )
                )
        expected = {request: self.model.expect(request) for request in probe_requests(self.world)}
        violations += routing_violations(self._pool, addresses, expected)
        if self.model.proxy is not None:
            violations += readiness_violations(ports)
        monitor = self.stack.monitor
        monitor.settle(timeout=monitor.answer_bound + 0.1)
        violations += monitor.judge(strict=self.settings.strict_protocol)
        if not self.model.held:
            violations += self._envoy_counter_violations()
        return violations

    def check_or_raise(self) -> None:
        violations = self.check()
        if violations:
            raise InvariantViolated(violations)

    def _step_violations(
        self, step: Step, samples: Sequence[Sample], addresses: Addresses
    ) -> list[Violation]:
        violations = liveness_violations(
            self.stack.reconciles[step.reconciles_from :], self.settings.translation_budget
        )
        if step.hitless and samples:
            configs = tuple(step.configs)
            pods = frozenset(step.live_pods)

            def allowed(request: Request) -> frozenset[Outcome]:
                return expected_through(configs, request, pods)

            moved = {
                key: address
                for key, address in step.addresses.by_port.items()
                if addresses.by_port.get(key) not in (None, address)
            }
            violations += window_violations(samples, allowed, moved)
        return violations

    def _settle(self) -> None:
        """The proxy holds what the model says: withdrawn pods nothing names any more stop."""
        settled = self.model.settled()
        stopping = self.model.live_pods - settled.live_pods
        if stopping:
            self.stack.stop_pods(stopping)
        self.model = settled

    def _envoy_counter_violations(self) -> list[Violation]:
        assert self.stack.envoy is not None
        publications = self.stack.publications
        trail: list[Snapshot] = [item.snapshot for item in publications[self._trail_from :]]
        self._trail_from = max(len(publications) - 1, 0)
        made = self.model.rejected_updates - self._rejections_checked
        self._rejections_checked = self.model.rejected_updates
        stats = self.stack.envoy.admin.stats(filter=_ENVOY_STATS)
        return self._counters.check(self.stack.envoy, stats, trail, made) + (
            self._fetch_timeouts.check(self.stack.envoy, stats)
        )

    # ---------------------------------------------------------------- reports

    def exchanges_of_step(self, limit: int = 60) -> list[str]:
        """The xDS exchange of the last step as the monitor decoded it from the wire."""
        self.stack.monitor.sync()
        return self.stack.monitor.log(since=self.step_started_seq)[:limit]
