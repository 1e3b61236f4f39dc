"""One example: a fresh stack and model, the same operations applied to both, invariants checked.

Invariants after every step (BRIEF.md section 4), each independent of the SUT's own bookkeeping
wherever possible:
- convergence: every xDS stream ACKed the cache's snapshot and Envoy holds exactly it (read from
  Envoy's config_dump), with nothing warming, within a bound well under twice the
  initial_fetch_timeout;
- consistency: the published snapshot has no dangling reference;
- routing: every probe through real Envoy gets an outcome the model allows;
- NACKs: Envoy rejects nothing but the updates the harness made it reject, each exactly once;
- subscriptions: no Envoy subscription timed out waiting for the server (init_fetch_timeout).
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from harness.lockstep.operations import Operation
from harness.lockstep.stack import Stack, StackSettings
from harness.lockstep.worlds import NAMESPACE, SERVICES, initial_world, probe_requests, to_resources
from harness.loopback.echo import EchoReply
from harness.loopback.probe import ProbeResult, probe
from model import (
    Extension,
    ModelState,
    Outcome,
    ProxyConfig,
    Request,
    Served,
    Service,
    Status,
    Unreachable,
    World,
    expected_outcomes,
)
from sut.extension import MARKER_HEADER, READINESS_PREFIX
from sut.xds import Exchange, consistency_errors

__all__ = ["InvariantViolated", "Mismatch", "Session", "Violation", "observed_outcome"]


@attrs.frozen
class Mismatch:
    request: Request
    expected: frozenset[Outcome]
    actual: Outcome
    detail: str

    def describe(self) -> str:
        expected = " or ".join(sorted(outcome.describe() for outcome in self.expected))
        return (
            f"{self.request.describe()}: expected {expected}; Envoy answered"
            f" {self.actual.describe()}{self.detail}"
        )


@attrs.frozen
class Violation:
    invariant: str
    summary: str
    details: tuple[str, ...] = ()

    def describe(self) -> str:
        lines = [f"invariant '{self.invariant}' violated: {self.summary}"]
        lines += [f"  - {detail}" for detail in self.details]
        return "\n".join(lines)


class InvariantViolated(AssertionError):
    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("\n".join(v.describe() for v in violations))
        self.violations = tuple(violations)


def observed_outcome(result: ProbeResult) -> Outcome:
    """What a probe through Envoy got, in the model's terms."""
    if result.status is None:
        return Unreachable()
    if result.status != 200:
        return Status(result.status)
    try:
        reply = EchoReply.from_json(result.body)
    except ValueError:
        return Status(200)
    marker = result.first_header(MARKER_HEADER)
    generation = int(marker.removeprefix("gen-")) if marker and marker.startswith("gen-") else None
    return Served(reply.service, reply.pod, generation)


_PROBE_WORKERS = 4
INITIAL_REPLICAS = {"svc-a": 1, "svc-b": 1, "svc-c": 1}


class Session:
    """Drives one stack and one model through the same operations."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.stack = Stack(settings)
        extension = Extension(fail_open=settings.fail_open) if settings.extension else None
        self.model = ModelState(extension=extension, policy=str(settings.failure_policy))
        self.trace: list[Operation] = []
        self.next_created = 10
        self.load_balancer: str | None = None
        """The Gateway-wide BackendTrafficPolicy's load balancer type, if there is one."""
        self.held: ProxyConfig | None = None
        self.is_held = False
        self._rejected_versions: set[str] = set()
        self._nacks_expected = 0
        self._nacks_seen: set[tuple[int, str]] = set()
        self._init_timeouts_baseline: dict[str, int] = {}
        self._rejections_baseline: dict[str, int] = {}
        self._rejections_allowed = 0
        self._envoy_starts_seen = 0
        self.step_started_seq = 0
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=_PROBE_WORKERS)

    # -------------------------------------------------------------- lifecycle

    @property
    def world(self) -> World:
        return self.model.world

    def start(
        self, world_of: Callable[[dict[str, tuple[str, ...]]], World] = initial_world
    ) -> None:
        """Start the stack on the world `world_of(pods)` builds from the initial pods."""
        for service, replicas in INITIAL_REPLICAS.items():
            self.stack.scale(NAMESPACE, service, replicas)
        world = world_of(self._pods())
        self.stack.start(to_resources(world))
        self.model = self.model.with_live_pods(self.stack.live_pods()).with_world(world)
        self._envoy_started()

    def stop(self) -> None:
        try:
            if self.is_held:
                self.stack.release_xds()
        finally:
            self.stack.stop()
            self._pool.shutdown(wait=True)

    def _pods(self) -> dict[str, tuple[str, ...]]:
        return {
            service: tuple(backend.pod for backend in self.stack.pods.backends(NAMESPACE, service))
            for service in SERVICES
        }

    # ------------------------------------------------------ what operations use

    def apply(self, operation: Operation) -> None:
        self.step_started_seq = self.stack.exchanges()[-1].seq if self.stack.exchanges() else 0
        self.trace.append(operation)
        operation.run(self)

    def change_world(self, world: World) -> None:
        self.stack.apply(to_resources(world, self.load_balancer))
        self.model = self.model.with_world(world)

    def set_load_balancer(self, load_balancer: str | None) -> None:
        """Cluster tuning only: the model's world, and so every expected answer, stays put."""
        self.load_balancer = load_balancer
        self.change_world(self.world)

    def scale(self, service: str, replicas: int) -> None:
        self.stack.scale(NAMESPACE, service, replicas)
        pods = self._pods()[service]
        self.model = self.model.with_live_pods(self.stack.live_pods())
        self.change_world(self.world.with_service(Service(service, pods)))

    def hold(self) -> None:
        self.stack.hold_xds()
        self.is_held = True
        self.held = self.model.proxy

    def cut(self) -> None:
        """Cut the xDS connection; a held one ends too, and its undelivered bytes are lost, so
        Envoy comes back on a new stream naming versions older than the server's."""
        self.stack.cut_xds()
        if self.is_held:
            self.release()

    def release(self) -> None:
        self.stack.release_xds()
        self.is_held = False
        self.held = None

    def restart_envoy(self) -> None:
        self.stack.restart_envoy()
        self.model = self.model.proxy_restarted()
        self._envoy_started()

    def rejected_update(self) -> None:
        nacked, version = self.stack.push_rejected_update()
        if version:
            self._rejected_versions.add(version)
            self._nacks_expected += 1
            self._rejections_allowed += 1
        del nacked  # checked by the NACK invariant, from the server's and Envoy's records

    def _envoy_started(self) -> None:
        self._envoy_starts_seen = self.stack.envoy_starts
        self._init_timeouts_baseline = {}
        self._rejections_baseline = {}
        if self.stack.published_snapshot() is None:
            # Started with nothing to fetch: its initial fetches time out by design.
            self._init_timeouts_baseline = {"*": 1}

    # ------------------------------------------------------------- invariants

    def check(self) -> list[Violation]:
        """Every invariant; an empty list when all hold."""
        violations: list[Violation] = []
        snapshot = self.stack.published_snapshot()
        if not self.is_held:
            convergence = self.stack.converge()
            if not convergence.converged:
                violations.append(
                    Violation("convergence", convergence.describe(), convergence.problems)
                )
        if snapshot is not None:
            errors = consistency_errors(snapshot)
            if errors:
                violations.append(
                    Violation(
                        "consistency", "the published snapshot is not consistent", tuple(errors)
                    )
                )
        mismatches = self.routing_mismatches()
        if mismatches:
            violations.append(
                Violation(
                    "routing",
                    f"{len(mismatches)} request(s) did not get what the model says",
                    tuple(m.describe() for m in mismatches[:8]),
                )
            )
        violations += self._readiness_violations()
        violations += self._nack_violations()
        if not self.is_held:
            violations += self._envoy_counter_violations()
        return violations

    def check_or_raise(self) -> None:
        violations = self.check()
        if violations:
            raise InvariantViolated(violations)

    def routing_mismatches(self, requests: Iterable[Request] | None = None) -> list[Mismatch]:
        config = self.held if self.is_held else self.model.proxy
        requests = list(requests if requests is not None else probe_requests(self.world))
        ports = self.stack.listener_ports()
        addresses: dict[tuple[int, str], tuple[str, int] | None] = {}
        for request in requests:
            key = (request.port, request.scheme)
            if key not in addresses:
                addresses[key] = self._address(ports, request.port, request.scheme.upper())

        def send(request: Request) -> ProbeResult:
            address = addresses[(request.port, request.scheme)]
            if address is None:
                return ProbeResult(status=None, error="no Envoy listener", error_kind="refused")
            return probe(
                address[0],
                address[1],
                request.host,
                request.path,
                headers=dict(request.headers),
                scheme="https" if request.scheme == "https" else "http",
                timeout=2.0,
            )

        results = list(self._pool.map(send, requests))
        mismatches = []
        for request, result in zip(requests, results, strict=True):
            expected = expected_outcomes(config, request, self.model.live_pods)
            actual = observed_outcome(result)
            if actual not in expected:
                detail = ""
                if result.error:
                    detail = f" ({result.error})"
                elif result.status is not None and result.status != 200:
                    body = result.body[:60].decode(errors="replace").strip()
                    detail = f" (body {body!r})" if body else ""
                mismatches.append(Mismatch(request, expected, actual, detail))
        return mismatches

    def _address(
        self, ports: Mapping[str, tuple[tuple[str, int], ...]], port: int, protocol: str
    ) -> tuple[str, int] | None:
        for name, bound in ports.items():
            origin = self.stack.origins.get(name)
            if origin is not None and origin.port == port and origin.protocol == protocol and bound:
                return bound[0]
        return None

    def _readiness_violations(self) -> list[Violation]:
        """The readiness listener answers /ready 200 whenever the proxy holds a configuration:
        no failure policy may rewrite it."""
        if self.model.proxy is None:
            return []
        for name, bound in self.stack.listener_ports().items():
            if name.startswith(READINESS_PREFIX) and bound:
                address, port = bound[0]
                result = probe(address, port, "localhost", "/ready", timeout=2.0)
                if result.status == 200:
                    return []
                got = result.status if result.status is not None else result.error
                return [Violation("readiness", f"/ready on {name} answered {got}, not 200")]
        return [Violation("readiness", "Envoy has no readiness listener")]

    def _nack_violations(self) -> list[Violation]:
        assert self.stack.xds is not None
        problems = []
        new_nacks = 0
        for status in self.stack.xds.stream_statuses(self.settings.node_id, live_only=False):
            for type_status in status.types:
                for nack in type_status.nacks:
                    key = (status.stream_id, nack.nonce)
                    if key in self._nacks_seen:
                        continue
                    self._nacks_seen.add(key)
                    new_nacks += 1
                    if nack.snapshot_version not in self._rejected_versions:
                        problems.append(
                            f"Envoy NACKed {type_status.type_short} of published snapshot"
                            f" {nack.snapshot_version} (nonce {nack.nonce}): {nack.message[:200]}"
                        )
        if new_nacks > self._nacks_expected:
            problems.append(
                f"{new_nacks} NACK(s) in this step for {self._nacks_expected} rejected update(s):"
                " the server sent rejected configuration again"
            )
        self._nacks_expected = 0
        if problems:
            return [
                Violation(
                    "nack", "Envoy rejected configuration it should not have", tuple(problems)
                )
            ]
        return []

    def _envoy_counter_violations(self) -> list[Violation]:
        if self._init_timeouts_baseline.get("*"):
            # This Envoy started without configuration; count from its first good state on.
            self._init_timeouts_baseline = self.stack.init_fetch_timeouts()
            self._rejections_baseline = self.stack.update_rejections()
            return []
        violations = []
        timeouts = self.stack.init_fetch_timeouts()
        new = {k: v for k, v in timeouts.items() if v > self._init_timeouts_baseline.get(k, 0)}
        if new:
            violations.append(
                Violation(
                    "unanswered-subscription",
                    "Envoy gave up waiting for the server (initial_fetch_timeout)",
                    tuple(f"{name} = {value}" for name, value in sorted(new.items())),
                )
            )
        self._init_timeouts_baseline = timeouts
        rejections = self.stack.update_rejections()
        increased = {
            name: value - self._rejections_baseline.get(name, 0)
            for name, value in rejections.items()
            if value > self._rejections_baseline.get(name, 0)
        }
        # One rejected response raises the counter of every subscription of its type, so only
        # "rejections where the harness caused none" can be told from Envoy's side.
        allowed = self._rejections_allowed
        if increased and not allowed:
            violations.append(
                Violation(
                    "nack",
                    "Envoy rejected an update the harness did not make it reject",
                    tuple(f"{name} +{value}" for name, value in sorted(increased.items())),
                )
            )
        self._rejections_baseline = rejections
        self._rejections_allowed = 0
        return violations

    # ---------------------------------------------------------------- reports

    def exchanges_of_step(self, limit: int = 60) -> list[Exchange]:
        exchanges = self.stack.exchanges(self.step_started_seq)
        return exchanges[:limit]
