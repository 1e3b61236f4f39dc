"""The routing invariant: every probe through Envoy gets an outcome the model allows.

A probe sends one request to where Envoy serves the request's Gateway port and reads the answer
in the model's terms: 200 from a pod with or without the extension's marker, another status, or
no listener. The sweep after a step runs once Envoy converged, so it is one moment: its requests
share kept-alive connections, one per listener port and SNI (`probe_many`); anything that can
run while Envoy changes (the window probe) sends each request on a fresh connection (`send`),
since a kept-alive connection stays on the filter chain it was accepted on.

One thing still moves after convergence: Envoy's main thread reports a new listener active (and
the server sees its ACK) before the worker has started accepting on it, so on a busy machine a
listener that replaced another (a Gateway listener renamed on its port) can refuse the sweep's
first connections. A request that gets no listener where the model expects an answer is
therefore sent again, on fresh connections, until it gets an answer or `UNREACHABLE_RETRY`
seconds have passed (`retry_unreachable`); only its last answer is judged. Nothing else is
retried: a wrong status or pod is a violation at once, and a listener that never comes is still
one, a second later.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.verdict import Violation
from harness.loopback.echo import EchoReply
from harness.loopback.probe import (
    ProbeRequest,
    ProbeResult,
    group_by_connection,
    probe_many,
    probe_request,
)
from model import Outcome, Request, Served, Status, Unreachable
from sut.extension import MARKER_HEADER

if TYPE_CHECKING:
    from harness.lockstep.stack import ListenerOrigin

__all__ = [
    "UNREACHABLE_RETRY",
    "Addresses",
    "Mismatch",
    "observed_outcome",
    "retry_unreachable",
    "routing_violations",
    "send",
]

UNREACHABLE_RETRY = 1.0
"""Seconds a request that finds no listener where the model expects an answer is retried for:
the time a worker may take to start accepting on a listener its main thread reported active."""

RETRY_INTERVAL = 0.02
"""Seconds between two rounds of retries."""

Ports = Mapping[str, tuple[tuple[str, int], ...]]


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


@attrs.frozen
class Addresses:
    """Where Envoy serves each (Gateway port, scheme), read once from its admin endpoint."""

    by_port: Mapping[tuple[int, str], tuple[str, int]]

    @classmethod
    def of(cls, ports: Ports, origins: Mapping[str, ListenerOrigin]) -> Addresses:
        found: dict[tuple[int, str], tuple[str, int]] = {}
        for name, bound in sorted(ports.items()):
            origin = origins.get(name)
            if origin is not None and bound:
                found.setdefault((origin.port, origin.protocol.lower()), bound[0])
        return cls(found)

    def of_request(self, request: Request) -> tuple[str, int] | None:
        return self.by_port.get((request.port, request.scheme))


_NO_LISTENER = ProbeResult(status=None, error="no Envoy listener", error_kind="refused")


def _probe_request(address: tuple[str, int], request: Request, timeout: float) -> ProbeRequest:
    return ProbeRequest(
        address[0],
        address[1],
        request.host,
        request.path,
        headers=request.headers,
        scheme="https" if request.scheme == "https" else "http",
        timeout=timeout,
    )


def send(addresses: Addresses, request: Request, timeout: float = 2.0) -> ProbeResult:
    """One request on a fresh connection: right at any moment, even while Envoy changes."""
    address = addresses.of_request(request)
    if address is None:
        return _NO_LISTENER
    return probe_request(_probe_request(address, request, timeout))


def _detail(result: ProbeResult) -> str:
    if result.error:
        return f" ({result.error})"
    if result.status is not None and result.status != 200:
        body = result.body[:60].decode(errors="replace").strip()
        return f" (body {body!r})" if body else ""
    return ""


def _wrongly_unreachable(result: ProbeResult, allowed: frozenset[Outcome]) -> bool:
    return isinstance(observed_outcome(result), Unreachable) and Unreachable() not in allowed


Mapper = Callable[[Callable[[Request], ProbeResult], Iterable[Request]], Iterator[ProbeResult]]


def retry_unreachable(
    requests: Sequence[Request],
    results: Sequence[ProbeResult],
    allowed: Mapping[Request, frozenset[Outcome]],
    send: Callable[[Request], ProbeResult],
    *,
    retry_for: float = UNREACHABLE_RETRY,
    interval: float = RETRY_INTERVAL,
    mapper: Mapper = map,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ProbeResult]:
    """`results`, where each request that found no listener though `allowed` expects an answer
    has its last answer instead: such requests are sent again with `send` (fresh connections; a
    round at a time through `mapper`) every `interval` seconds until each gets another outcome
    or `retry_for` seconds have passed."""
    final = list(results)
    pending = [i for i, r in enumerate(final) if _wrongly_unreachable(r, allowed[requests[i]])]
    deadline = clock() + retry_for
    while pending and clock() + interval <= deadline:
        sleep(interval)  # polling the listener, with a deadline
        for i, result in zip(pending, mapper(send, [requests[i] for i in pending]), strict=True):
            final[i] = result
        pending = [i for i in pending if _wrongly_unreachable(final[i], allowed[requests[i]])]
    return final


def mismatches(
    requests: Iterable[Request],
    results: Iterable[ProbeResult],
    allowed: Mapping[Request, frozenset[Outcome]],
) -> list[Mismatch]:
    found = []
    for request, result in zip(requests, results, strict=True):
        actual = observed_outcome(result)
        if actual not in allowed[request]:
            found.append(Mismatch(request, allowed[request], actual, _detail(result)))
    return found


def routing_violations(
    pool: concurrent.futures.Executor,
    addresses: Addresses,
    expected: Mapping[Request, frozenset[Outcome]],
    timeout: float = 2.0,
    retry_for: float = UNREACHABLE_RETRY,
) -> list[Violation]:
    """Send every request once, the connections' shares in parallel; each answer must be one
    the model allows. Only once Envoy holds still: requests share kept-alive connections. A
    request that found no listener where the model expects an answer is retried for up to
    `retry_for` seconds on fresh connections (`retry_unreachable`)."""
    requests = list(expected)
    results: dict[int, ProbeResult] = {}
    routed: list[tuple[int, ProbeRequest]] = []
    for index, request in enumerate(requests):
        address = addresses.of_request(request)
        if address is None:
            results[index] = _NO_LISTENER
        else:
            routed.append((index, _probe_request(address, request, timeout)))
    groups = group_by_connection([item for _, item in routed])
    answered = pool.map(lambda group: probe_many([routed[i][1] for i in group]), groups)
    for group, answers in zip(groups, answered, strict=True):
        for i, answer in zip(group, answers, strict=True):
            results[routed[i][0]] = answer
    final = retry_unreachable(
        requests,
        [results[index] for index in range(len(requests))],
        expected,
        lambda request: send(addresses, request, timeout),
        retry_for=retry_for,
        mapper=pool.map,
    )
    found = [
        attrs.evolve(m, detail=f"{m.detail}, still after {retry_for:.1f} s of retries")
        if isinstance(m.actual, Unreachable) and retry_for > 0
        else m
        for m in mismatches(requests, final, expected)
    ]
    if not found:
        return []
    return [
        Violation(
            "routing",
            f"{len(found)} request(s) did not get what the model says",
            tuple(m.describe() for m in found[:8]),
        )
    ]
