"""Proxyless gRPC clients after a step: what each holds (its CSDS) and what its calls get.

1. Convergence: within `CONVERGENCE_BOUND`, every resource a client subscribed to that the
   proxyless snapshot has is ACKED at a version under which the wire delivered it the published
   content (its monitor saw that delivery: a server sends a by-name client only what changed of
   its names, so the version may be older than the snapshot's type version), and every other
   Listener or Cluster is DOES_NOT_EXIST or REQUESTED (gRPC subscribes by name; a name the
   server lacks stays REQUESTED until gRPC's 15 s does-not-exist timer fires). SotW never
   deletes a RouteConfiguration or ClusterLoadAssignment (only full-state types say absence),
   so one the snapshot lacks may stay as the client last got it.
2. CSDS: nothing is NACKED; a Listener (a hostname) is DOES_NOT_EXIST or REQUESTED only when
   the model says it is not published, and ACKED only when it is.
3. Calls: for every probe hostname and method, the outcome is one the model allows
   (`model.grpc`). A hostname the model does not publish is called once, with a short deadline;
   the calls of a step go out side by side, so they cost about the longest deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from harness.lockstep.monitor.view import FULL_STATE_TYPES
from harness.lockstep.verdict import Violation
from harness.loopback.proxyless import CsdsResource, ProxylessClient, ProxylessError
from model import (
    CallOutcome,
    GrpcCall,
    GrpcServed,
    GrpcStatus,
    ModelState,
    proxyless_hosts,
)
from sut.xds import ResourceType, Snapshot

__all__ = [
    "CONVERGENCE_BOUND",
    "PROBE_METHODS",
    "csds_problems",
    "grpc_violations",
    "pending",
]

CONVERGENCE_BOUND = 5.0
CALL_TIMEOUT = 2.0
"""A published hostname's call: long enough for a new channel to subscribe and resolve."""
ABSENT_TIMEOUT = 0.1
"""A hostname the model does not publish: the call waits for a Listener that never comes."""
PROBE_METHODS = ("/routeproof.Echo/Call", "/app/x", "/app/v1", "/api/x", "/apix/x")
"""Method paths (always `/service/method`) meeting the catalogue's prefixes `/`, `/app`,
`/app/v1`, `/api` and none of them but `/`."""
_ABSENT = frozenset({"DOES_NOT_EXIST", "REQUESTED"})
_POLL = 0.02


def _published_body(snapshot: Snapshot | None, item: CsdsResource) -> bytes | None:
    """The content the snapshot has under the resource's type and name, if it has one."""
    if snapshot is None:
        return None
    try:
        kind = ResourceType.from_type_url(item.type_url)
    except ValueError:
        return None
    resource = snapshot.get(kind, item.name)
    return resource.body if resource is not None else None


Delivered = Callable[[str, str, str], bytes | None]
"""(type_url, name, version) -> the content the wire delivered under them, if it did."""


def pending(
    resources: Iterable[CsdsResource], snapshot: Snapshot | None, delivered: Delivered
) -> list[str]:
    """Rule 1: what keeps the client from having converged on `snapshot` (NACKs excluded)."""
    waiting = []
    for item in resources:
        if item.status == "NACKED":
            continue
        published = _published_body(snapshot, item)
        if published is not None and (
            item.status != "ACKED" or delivered(item.type_url, item.name, item.version) != published
        ):
            waiting.append(
                f"{item.type_name} {item.name}: {item.status} at {item.version or '-'},"
                " not the published content"
            )
        elif published is None and item.type_url in FULL_STATE_TYPES and item.status not in _ABSENT:
            waiting.append(f"{item.type_name} {item.name}: {item.status}, not published")
    return waiting


def csds_problems(resources: Iterable[CsdsResource], published: frozenset[str]) -> list[str]:
    """Rule 2; `published` is the hostnames the model says have a Listener."""
    problems = []
    for item in resources:
        if item.status == "NACKED":
            problems.append(f"{item.type_name} {item.name} NACKED: {item.error}")
        elif item.type_name == "Listener" and item.status in _ABSENT and item.name in published:
            problems.append(f"Listener {item.name} is {item.status}; the model publishes it")
        elif item.type_name == "Listener" and item.status == "ACKED" and item.name not in published:
            problems.append(f"Listener {item.name} is ACKED; the model does not publish it")
    return problems


def _observed(code: str, pod: str, service: str) -> CallOutcome:
    return GrpcServed(service, pod) if code == "OK" else GrpcStatus(code)


def _describe(outcomes: Iterable[CallOutcome]) -> str:
    return " | ".join(sorted(item.describe() for item in outcomes))


def _converge(
    client: ProxylessClient, snapshot: Snapshot | None, delivered: Delivered
) -> tuple[list[str], float]:
    started = time.monotonic()
    while True:
        resources = client.csds()
        waiting = pending(resources, snapshot, delivered)
        nacked = any(item.status == "NACKED" for item in resources)
        if not waiting or nacked or time.monotonic() - started > CONVERGENCE_BOUND:
            return waiting, time.monotonic() - started
        time.sleep(_POLL)


def grpc_violations(
    client: ProxylessClient,
    *,
    name: str,
    snapshot: Snapshot | None,
    model: ModelState,
    hosts: Sequence[str],
    delivered: Delivered,
) -> list[Violation]:
    """Rules 1-3 for one client; each summary starts with `name` ("grpc client 0");
    `delivered` is what the client's monitor saw sent (`ProtocolMonitor.delivered`)."""
    try:
        return _violations(
            client, name=name, snapshot=snapshot, model=model, hosts=hosts, delivered=delivered
        )
    except ProxylessError as error:
        return [Violation("grpc-client", f"{name}: the client failed", (str(error),))]


def _violations(
    client: ProxylessClient,
    *,
    name: str,
    snapshot: Snapshot | None,
    model: ModelState,
    hosts: Sequence[str],
    delivered: Delivered,
) -> list[Violation]:
    violations: list[Violation] = []
    published = proxyless_hosts(model.proxyless.world) if model.proxyless else frozenset()
    waiting, _ = _converge(client, snapshot, delivered)
    if waiting:
        violations.append(
            Violation(
                "grpc-convergence",
                f"{name}: not converged on {snapshot.version if snapshot else 'nothing'}"
                f" within {CONVERGENCE_BOUND:.0f} s",
                tuple(waiting[:10]),
            )
        )
    planned = [
        (GrpcCall(host, method), CALL_TIMEOUT if host in published else ABSENT_TIMEOUT)
        for host in hosts
        for method in (PROBE_METHODS if host in published else PROBE_METHODS[:1])
    ]
    outcomes = client.calls([(call.host, call.method, timeout) for call, timeout in planned])
    mismatches = []
    for (call, _), got in zip(planned, outcomes, strict=True):
        expected = model.expect_grpc(call)
        observed = _observed(got.code, got.pod, got.service)
        if observed not in expected:
            mismatches.append(
                f"{call.describe()}: got {observed.describe()}"
                + (f" ({got.details})" if got.details else "")
                + f", model allows {_describe(expected)}"
            )
    if mismatches:
        violations.append(
            Violation(
                "grpc-routing", f"{name}: {len(mismatches)} call(s) disagree", tuple(mismatches)
            )
        )
    _converge(client, snapshot, delivered)  # what the calls subscribed to, before judging
    problems = csds_problems(client.csds(), published)
    if problems:
        violations.append(Violation("grpc-csds", f"{name}: {problems[0]}", tuple(problems)))
    return violations
