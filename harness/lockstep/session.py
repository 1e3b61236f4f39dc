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
- envoy-counters and unanswered-subscription: Envoy's own counters;
- grpc-convergence, grpc-routing and grpc-csds (with `StackSettings.grpc_clients`): each
  proxyless gRPC client converged on the proxyless snapshot, its calls get what the model
  allows, it NACKed nothing (`invariants.grpc`); its monitor judges its exchange as Envoy's.

With several proxies (`StackSettings.proxies`) every invariant about a proxy holds for each one,
against the model's link of that proxy (`expect(request, proxy=i)`, `passing(after, proxy=i)`);
a proxy whose connection is held is not waited for. In a fleet, a violation's summary names its
proxy. With a second Gateway (`StackSettings.gateways`), its proxy comes after the first
Gateway's and is judged the same way against its own Gateway's specification (the model's link
of that proxy) and its own node's publications.

Invariants live in `harness.lockstep.invariants`; the session only orders them.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence

import attrs

from harness.lockstep import extensions
from harness.lockstep.envoy_state import EnvoyView
from harness.lockstep.invariants import (
    Addresses,
    InvariantViolated,
    Sample,
    Violation,
    WindowProbe,
    across_streams,
    grpc_violations,
    liveness_violations,
    readiness_violations,
    replaced_ports,
    routing_violations,
    updated_ports,
    window_violations,
)
from harness.lockstep.operations import HoldXds, Operation, RestartEnvoy
from harness.lockstep.records import Reconcile
from harness.lockstep.stack import Stack, StackSettings
from harness.lockstep.verdict import Inconclusive
from harness.lockstep.worlds import (
    NAMESPACE,
    PROBE_HOSTS,
    SECOND_GATEWAY,
    SERVICES,
    initial_world,
    load_world,
    probe_requests,
)
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
WINDOW_STRIDE = 7
"""Each step's window starts this many requests further along the catalogue."""


@attrs.define
class Step:
    """What happened since the last check, for the invariants that judge a whole step."""

    started: float
    before: ModelState
    configs: list[list[ProxyConfig | None]]
    """Per proxy, every configuration it may have held during the step, in order."""
    live_pods: set[str]
    addresses: list[Addresses]
    """Per proxy, where it served when the step began."""
    reconciles_from: int
    operations: list[Operation] = attrs.Factory(list)
    disrupted: set[int] = attrs.Factory(set)
    """Proxies an operation of the step may disrupt (not hitless)."""
    windows: list[WindowProbe] = attrs.Factory(list)
    """Per proxy, the window probe."""


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
        self.model = self.model.with_proxies(settings.proxies)
        if settings.gateways == 2:
            self.model = self.model.with_fleet(SECOND_GATEWAY)
        self.steps: list[tuple[Operation, ...]] = []
        """The operations of each checked step, in order."""
        self.step_started_seq = [0] * len(self.stack.proxies)
        """Per proxy, the last entry of its monitor's log when the last step began."""
        self.grpc_started_seq = [0] * settings.grpc_clients
        """Per proxyless gRPC client, the same."""
        self._step: Step | None = None
        self._window_offset = 0
        self._held_since: dict[int, float] = {}
        """Per proxy whose connection is held, when the hold began (`_step_violations`)."""
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
        resources = load_world(world, world.load_balancer, grpc=self.settings.grpc_clients > 0)
        self.stack.start(resources, endpoints={NAMESPACE: endpoints})
        self.model = self.model.started(world)
        for index in range(len(self.stack.proxies)):
            self._envoy_started(index)

    def stop(self) -> None:
        try:
            if self._step is not None:
                for window in self._step.windows:
                    window.stop()
            for index, link in enumerate(self.model.all_links):
                if link.held:
                    self.stack.release_xds(index)
        finally:
            self.stack.stop()
            self._pool.shutdown(wait=True)

    def _envoy_started(self, proxy: int) -> None:
        # Started with nothing to fetch, its initial fetches time out by design.
        counting = self.stack.published_snapshot(proxy) is not None
        self.stack.proxies[proxy].envoy_started(counting=counting)

    @property
    def _fleet(self) -> range:
        return range(len(self.stack.proxies))

    def _named(self, proxy: int, violations: Sequence[Violation]) -> list[Violation]:
        """In a fleet, each violation's summary names the proxy it is about."""
        if len(self.stack.proxies) == 1:
            return list(violations)
        return [attrs.evolve(v, summary=f"proxy {proxy}: {v.summary}") for v in violations]

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
        step.disrupted |= operation.disrupts(len(self.stack.proxies))
        step.live_pods |= after.live_pods
        reconciled = len(self.stack.reconciles)
        operation.on_stack(self.stack, before, after)
        self.model = after
        starved = starved_extension(
            self.stack.reconciles[reconciled:], before, after, self.stack.settings
        )
        if starved:
            raise Inconclusive(starved)
        for index, configs in enumerate(step.configs):
            configs.extend(before.passing(after, proxy=index)[1:])
        if isinstance(operation, RestartEnvoy):
            self._envoy_started(operation.target)
        if isinstance(operation, HoldXds):
            self._held_since.setdefault(operation.target, time.monotonic())

    @property
    def trace(self) -> tuple[tuple[Operation, ...], ...]:
        """Every step so far, the one under way included."""
        ongoing = (tuple(self._step.operations),) if self._step is not None else ()
        return (*self.steps, *ongoing)

    def current_window(self, proxy: int = 0) -> WindowProbe | None:
        """A proxy's window probe in the step under way, if one is."""
        return self._step.windows[proxy] if self._step is not None else None

    def _begin_step(self) -> None:
        proxies = self.stack.proxies
        for proxy in proxies:
            proxy.monitor.sync()
        self.step_started_seq = [proxy.monitor.last_seq for proxy in proxies]
        for grpc in self.stack.grpc.clients:
            grpc.monitor.sync()
        self.grpc_started_seq = [grpc.monitor.last_seq for grpc in self.stack.grpc.clients]
        addresses = [Addresses.of(proxy.listener_ports(), self.stack.origins) for proxy in proxies]
        requests = list(probe_requests(self.world))
        self._window_offset = (self._window_offset + WINDOW_STRIDE) % max(len(requests), 1)
        self._step = Step(
            started=time.monotonic(),
            before=self.model,
            configs=[[link.proxy] for link in self.model.all_links],
            live_pods=set(self.model.live_pods),
            addresses=addresses,
            reconciles_from=len(self.stack.reconciles),
        )
        self._step.windows = [
            WindowProbe(where, requests, offset=self._window_offset).start() for where in addresses
        ]

    # ------------------------------------------------------------- invariants

    def check(self) -> list[Violation]:
        """End the step and check every invariant; an empty list when all hold."""
        step, self._step = self._step, None
        if step is not None:
            self.steps.append(tuple(step.operations))
        violations: list[Violation] = []
        flowing = [index for index in self._fleet if not self.model.link(index).held]
        views: dict[int, EnvoyView | None] = {}
        converged = True
        for index, convergence in self.stack.convergences(flowing).items():
            views[index] = convergence.view
            if not convergence.converged:
                converged = False
                violation = Violation("convergence", convergence.describe(), convergence.problems)
                violations += self._named(index, [violation])
        samples = [window.stop() for window in step.windows] if step is not None else []
        ports = [self.stack.listener_ports(views.get(index), index) for index in self._fleet]
        addresses = [Addresses.of(bound, self.stack.origins) for bound in ports]
        if step is not None:
            violations += self._step_violations(step, samples, addresses)
        for index in list(self._held_since):
            if not self.model.link(index).held:
                del self._held_since[index]
        violations += self._grpc_violations()
        if converged:
            self._settle()
        for node in self.settings.node_ids:
            snapshot = self.stack.cache.get_snapshot(node)
            errors = consistency_errors(snapshot) if snapshot is not None else []
            if errors:
                where = "" if node == self.settings.node_id else f" of {node}"
                violations.append(
                    Violation(
                        "consistency",
                        f"the published snapshot{where} is not consistent",
                        tuple(errors),
                    )
                )
        requests = list(probe_requests(self.world))
        for index in self._fleet:
            expected = {request: self.model.expect(request, proxy=index) for request in requests}
            found = routing_violations(self._pool, addresses[index], expected)
            violations += self._named(index, found)
        for index in self._fleet:
            if self.model.link(index).proxy is not None:
                violations += self._named(index, readiness_violations(ports[index]))
        for index, proxy in enumerate(self.stack.proxies):
            monitor = proxy.monitor
            monitor.settle(timeout=monitor.answer_bound + 0.1)
            found = monitor.judge(strict=self.settings.strict_protocol)
            violations += self._named(index, found)
        violations += extensions.load(self.settings.extensions).check(self.stack, self.model)
        for index, grpc in enumerate(self.stack.grpc.clients):
            grpc.monitor.settle(timeout=grpc.monitor.answer_bound + 0.1)
            found = grpc.monitor.judge(strict=self.settings.strict_protocol)
            violations += [
                attrs.evolve(v, summary=f"grpc client {index}: {v.summary}") for v in found
            ]
        for index in flowing:
            violations += self._named(index, self._envoy_counter_violations(index))
        return violations

    def _grpc_violations(self) -> list[Violation]:
        """Each proxyless client converged on the last proxyless snapshot published (kept while
        a restarted control plane has none), and its calls get what the model allows
        (`invariants.grpc`)."""
        violations: list[Violation] = []
        snapshot = self.stack.grpc.held
        for index, grpc in enumerate(self.stack.grpc.clients):
            assert grpc.client is not None
            violations += grpc_violations(
                grpc.client,
                name=f"grpc client {index}",
                snapshot=snapshot,
                model=self.model,
                hosts=PROBE_HOSTS,
                delivered=grpc.monitor.delivered,
            )
        return violations

    def check_or_raise(self) -> None:
        violations = self.check()
        if violations:
            raise InvariantViolated(violations)

    def _step_violations(
        self, step: Step, samples: Sequence[Sequence[Sample]], addresses: Sequence[Addresses]
    ) -> list[Violation]:
        violations = liveness_violations(
            self.stack.reconciles[step.reconciles_from :], self.settings.translation_budget
        )
        pods = frozenset(step.live_pods)
        # Per (node, first publication of the trail): its replaced and updated ports, which
        # the replicas of one node share.
        changed: dict[tuple[str, int], tuple[frozenset[tuple[int, str]], ...]] = {}
        for index, taken in enumerate(samples):
            if index in step.disrupted or not taken:
                continue
            publications = self.stack.publications_of(index)
            # Behind a held connection the proxy meets, at the release, what was published
            # since the hold began: its trail starts there, not at this step.
            since = min(step.started, self._held_since.get(index, step.started))
            first = max((i for i, item in enumerate(publications) if item.at < since), default=0)
            key = (self.stack.node_of(index), first)
            if key not in changed:
                trail = [item.snapshot for item in publications[first:]]
                changed[key] = (
                    replaced_ports(trail, self.stack.origins),
                    updated_ports(trail, self.stack.origins),
                )
            replaced, updated = changed[key]
            configs = tuple(step.configs[index])

            def allowed(
                request: Request, configs: tuple[ProxyConfig | None, ...] = configs
            ) -> frozenset[Outcome]:
                return expected_through(configs, request, pods)

            moved = {
                key: address
                for key, address in step.addresses[index].by_port.items()
                if addresses[index].by_port.get(key) not in (None, address) or key in replaced
            }
            per_type = self.settings.transport == "per-type"
            judged = across_streams(allowed, configs) if per_type else allowed
            violations += self._named(index, window_violations(taken, judged, moved, updated))
        return violations

    def _settle(self) -> None:
        """The proxy holds what the model says: withdrawn pods nothing names any more stop."""
        settled = self.model.settled()
        stopping = self.model.live_pods - settled.live_pods
        if stopping:
            self.stack.stop_pods(stopping)
        self.model = settled

    def _envoy_counter_violations(self, proxy: int) -> list[Violation]:
        snapshots: list[Snapshot] = [item.snapshot for item in self.stack.publications_of(proxy)]
        made = self.model.link(proxy).rejected_updates
        return self.stack.proxies[proxy].counter_violations(snapshots, made)

    # ---------------------------------------------------------------- reports

    def exchanges_of_step(self, limit: int = 60) -> list[str]:
        """The xDS exchange of the last step as the monitors decoded it from the wire (in a
        fleet, each line names its proxy; a gRPC client's lines name it)."""
        fleet = len(self.stack.proxies)
        lines: list[str] = []
        for index, proxy in enumerate(self.stack.proxies):
            proxy.monitor.sync()
            log = proxy.monitor.log(since=self.step_started_seq[index])[: limit // fleet]
            lines += log if fleet == 1 else [f"proxy {index}: {line}" for line in log]
        for index, grpc in enumerate(self.stack.grpc.clients):
            grpc.monitor.sync()
            log = grpc.monitor.log(since=self.grpc_started_seq[index])[: limit // fleet]
            lines += [f"grpc client {index}: {line}" for line in log]
        return lines


def starved_extension(
    reconciles: Sequence[Reconcile], before: ModelState, after: ModelState, settings: StackSettings
) -> str:
    """Why a step is inconclusive, or "": a healthy extension's hook waited out its whole
    deadline. The model takes a healthy extension to answer in time; on a starved machine (the
    harness, the extension server and the xDS server share one Python process) it may not, and
    the control plane then rightly applies the failure policy. A hook that fails faster than
    its deadline, or with any other error, is still the SUT's to answer for."""
    if not all(
        model.extension is not None and model.extension.failing is None for model in (before, after)
    ):
        return ""
    for reconcile in reconciles:
        waited = reconcile.hook_seconds >= settings.extension_deadline
        if waited and "(deadline)" in reconcile.error:
            return (
                f"the healthy extension missed its {settings.extension_deadline:.2f} s deadline "
                f"(hooks took {reconcile.hook_seconds:.2f} s): {reconcile.error}"
            )
    return ""
