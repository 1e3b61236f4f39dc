"""The routing invariant: every probe through Envoy gets an outcome the model allows.

A probe sends one request on a fresh connection (keep-alive connections stay on old filter
chains) to where Envoy serves the request's Gateway port, and reads the answer in the model's
terms: 200 from a pod with or without the extension's marker, another status, or no listener.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.verdict import Violation
from harness.loopback.echo import EchoReply
from harness.loopback.probe import ProbeResult, probe
from model import Outcome, Request, Served, Status, Unreachable
from sut.extension import MARKER_HEADER

if TYPE_CHECKING:
    from harness.lockstep.stack import ListenerOrigin

__all__ = ["Addresses", "Mismatch", "observed_outcome", "routing_violations", "send"]

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


def send(addresses: Addresses, request: Request, timeout: float = 2.0) -> ProbeResult:
    address = addresses.of_request(request)
    if address is None:
        return ProbeResult(status=None, error="no Envoy listener", error_kind="refused")
    return probe(
        address[0],
        address[1],
        request.host,
        request.path,
        headers=dict(request.headers),
        scheme="https" if request.scheme == "https" else "http",
        timeout=timeout,
    )


def _detail(result: ProbeResult) -> str:
    if result.error:
        return f" ({result.error})"
    if result.status is not None and result.status != 200:
        body = result.body[:60].decode(errors="replace").strip()
        return f" (body {body!r})" if body else ""
    return ""


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
) -> list[Violation]:
    """Send every request once, in parallel; each answer must be one the model allows."""
    requests = list(expected)
    results = list(pool.map(lambda request: send(addresses, request), requests))
    found = mismatches(requests, results, expected)
    if not found:
        return []
    return [
        Violation(
            "routing",
            f"{len(found)} request(s) did not get what the model says",
            tuple(m.describe() for m in found[:8]),
        )
    ]
