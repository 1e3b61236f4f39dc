"""The moments between steps: a continuous low-rate probe while operations take effect.

Steps end on a converged state, so the sweep after each step never sees what the proxy serves
while an update is on its way. A `WindowProbe` sends one request at a time, each on a fresh
connection, from the first operation of a step until the step has converged, cycling through the
probe requests from a rotating offset so successive steps sample different ones.

Hitless updates (the rule it checks): a request whose expected outcome is the same before and
after the step must not get anything else in between; one whose outcome changes may only get an
answer of a configuration the proxy may pass through (`ModelState.passing`: the old one, what a
held connection queued, the new one). Steps that restart the proxy are not hitless by nature,
and requests to a listener that serves on another address after the step, or that the control
plane removed at some moment of the step, are left out (a listener replaced rather than updated
in place binds anew, and the OS may hand it the very port it had), as are probes without an
answer (`INCONCLUSIVE`; the sweep after the step still judges every request). Over per-type
streams a changing request may also meet a mix of two configurations (`across_streams`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.invariants.routing import Addresses, Mismatch, observed_outcome, send
from harness.lockstep.verdict import Violation
from harness.loopback.probe import ProbeResult
from model import Outcome, ProxyConfig, Request, Status, Unreachable, serving_clusters
from sut.xds import ResourceType, Snapshot

if TYPE_CHECKING:
    from harness.lockstep.stack import ListenerOrigin

__all__ = [
    "Sample",
    "WindowProbe",
    "across_streams",
    "replaced_ports",
    "updated_ports",
    "window_violations",
]

INCONCLUSIVE = frozenset({"timeout", "closed", "reset"})
"""Probe failures that say nothing about which configuration served: no answer in time (a
loaded machine), or a connection that ended inside the exchange. The harness runs Envoy with no
drain time, so an in-place filter-chain update closes the connections of the old chains at once,
answers in flight included; that is the harness's choice of flags, not the control plane's
doing. A refused connection or a failed TLS handshake (no listener) is judged."""

PACE_SECONDS = 0.003
"""Pause between two window probes: low-rate, so the probe does not starve Envoy or the SUT of
CPU on a small machine, yet several requests land inside a typical update."""


@attrs.frozen
class Sample:
    request: Request
    sent: float
    result: ProbeResult


class WindowProbe:
    """One thread sending `requests` in a loop until `stop()`; each answer is kept as a Sample."""

    def __init__(
        self,
        addresses: Addresses,
        requests: Sequence[Request],
        *,
        offset: int = 0,
        pace: float = PACE_SECONDS,
        timeout: float = 1.0,
    ) -> None:
        self.addresses = addresses
        self._requests = list(requests)
        self._offset = offset
        self._pace = pace
        self._timeout = timeout
        self._stop = threading.Event()
        self._samples: list[Sample] = []
        self._thread = threading.Thread(target=self._run, name="routeproof-window", daemon=True)

    @property
    def samples_taken(self) -> int:
        return len(self._samples)

    def start(self) -> WindowProbe:
        if self._requests:
            self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        """Stop after the request in flight; return every sample in the order sent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._timeout + 1.0)
        return list(self._samples)

    def _run(self) -> None:
        index = self._offset
        while not self._stop.is_set():
            request = self._requests[index % len(self._requests)]
            index += 1
            sent = time.monotonic()
            self._samples.append(
                Sample(request, sent, send(self.addresses, request, self._timeout))
            )
            self._stop.wait(self._pace)


def window_violations(
    samples: Sequence[Sample],
    allowed: Callable[[Request], frozenset[Outcome]],
    moved: Mapping[tuple[int, str], object],
    updated: Collection[tuple[int, str]] = frozenset(),
) -> list[Violation]:
    """Every sample must be an answer `allowed` permits; requests to a moved listener aside.

    `updated`: ports whose listener changed in place during the step. Envoy (no drain time)
    closes the connections of a changed filter chain at once, handshakes in flight included, and
    a TLS handshake the server closes looks the same as one no filter chain accepted: there a
    failed handshake says nothing (the sweep after the step still judges the port)."""
    found: list[Mismatch] = []
    for sample in samples:
        port = (sample.request.port, sample.request.scheme)
        if port in moved:
            continue
        if sample.result.error_kind in INCONCLUSIVE:
            continue
        if sample.result.error_kind == "tls" and port in updated:
            continue
        actual = observed_outcome(sample.result)
        expected = allowed(sample.request)
        if actual not in expected:
            detail = f" (sent while the step took effect; {sample.result.error or 'answered'})"
            found.append(Mismatch(sample.request, expected, actual, detail))
    if not found:
        return []
    return [
        Violation(
            "hitless",
            f"{len(found)} of {len(samples)} request(s) sent during the step got an answer of no"
            " configuration the proxy may pass through",
            tuple(m.describe() for m in found[:8]),
        )
    ]


UNORDERED: frozenset[Outcome] = frozenset({Status(503), Unreachable()})
"""What a proxy holding types of two configurations answers: 503 when a RouteConfiguration names
a Cluster it does not hold (gone, or not there yet; Envoy's `cluster_not_found_response_code`
default), no answer when a filter chain's Secret or RouteConfiguration is not there (yet)."""


def across_streams(
    allowed: Callable[[Request], frozenset[Outcome]],
    configs: Sequence[ProxyConfig | None],
) -> Callable[[Request], frozenset[Outcome]]:
    """`allowed` for a proxy fetching each type on a stream of its own (the per-type transport).

    The protocol orders nothing across separate streams (xds_protocol.rst "Eventual consistency
    considerations": sequencing is what ADS is for; the SUT orders each stream alone), so while
    a step's update is on its way the proxy may hold new Clusters under old RouteConfigurations,
    or a Listener without its Secret, or the other way round. A request may then also get
    `UNORDERED` when the configurations the proxy passes through (`configs`) answer it
    differently, or serve it from different Clusters (`serving_clusters`: a route moved to
    another rule names a Cluster of another name, which may arrive after the route even when
    the answer stays the same). The model has no such mixed configurations; a request served
    alike, from the same Clusters, throughout the step is judged as strictly as over ADS."""

    def allowed_across(request: Request) -> frozenset[Outcome]:
        outcomes = allowed(request)
        served_from = {serving_clusters(config, request) for config in configs}
        if len(outcomes) > 1 or len(served_from) > 1:
            return outcomes | UNORDERED
        return outcomes

    return allowed_across


def replaced_ports(
    snapshots: Sequence[Snapshot], origins: Mapping[str, ListenerOrigin]
) -> frozenset[tuple[int, str]]:
    """Gateway ports (port, scheme) whose Envoy listener one of `snapshots` (what the proxy held
    at the step's start, then what was published during it, in order) removed from the one
    before: that listener was replaced, not updated in place. Its address may be the same after
    the step, so comparing addresses cannot tell."""
    return _changed_ports(snapshots, origins, in_place=False)


def updated_ports(
    snapshots: Sequence[Snapshot], origins: Mapping[str, ListenerOrigin]
) -> frozenset[tuple[int, str]]:
    """Gateway ports whose Envoy listener one of `snapshots` changed, in place or not."""
    return _changed_ports(snapshots, origins, in_place=True)


def _changed_ports(
    snapshots: Sequence[Snapshot], origins: Mapping[str, ListenerOrigin], *, in_place: bool
) -> frozenset[tuple[int, str]]:
    changed: set[tuple[int, str]] = set()
    for before, after in pairwise(snapshots):
        old, new = before.of_type(ResourceType.LISTENER), after.of_type(ResourceType.LISTENER)
        names = {name for name in old if name not in new}
        if in_place:
            names |= {name for name, item in old.items() if name in new and new[name] != item}
        for name in names:
            origin = origins.get(name)
            if origin is not None:
                changed.add((origin.port, origin.protocol.lower()))
    return frozenset(changed)
