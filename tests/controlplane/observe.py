"""What a test sees through real Envoy: one answer per site, the readiness listener, polling."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

import attrs

from harness.lockstep.stack import Stack
from harness.loopback.echo import EchoReply
from harness.loopback.probe import ProbeResult, probe
from sut.extension import MARKER_HEADER
from sut.translate import readiness_listener_name
from tests.controlplane.manifests import Site

__all__ = ["Answer", "answer", "answers", "poll", "ready_status"]

_T = TypeVar("_T")


@attrs.frozen
class Answer:
    """Status, which Service answered ("" for Envoy itself) and the extension's marker, if any."""

    status: int | None
    service: str = ""
    marker: str | None = None


def _as_answer(result: ProbeResult) -> Answer:
    if result.status is None:
        return Answer(None, f"error: {result.error}")
    try:
        service = EchoReply.from_json(result.body).service
    except ValueError:  # Envoy's own answer (404, 500, ...), not a backend's
        service = ""
    return Answer(result.status, service, result.first_header(MARKER_HEADER))


def answer(stack: Stack, site: Site, path: str | None = None) -> Answer:
    """One request to the site's hostname (SNI and Host) on a fresh connection."""
    scheme: Literal["http", "https"] = "https" if site.protocol == "HTTPS" else "http"
    return _as_answer(stack.probe(site.port, scheme, site.hostname, path or site.prefix))


def answers(stack: Stack, sites: Iterable[Site]) -> dict[str, Answer]:
    return {site.name: answer(stack, site) for site in sites}


def ready_status(stack: Stack) -> int | None:
    """What the readiness listener answers on /ready."""
    name = readiness_listener_name(stack.translate_options)
    ((address, port), *_) = stack.listener_ports()[name]
    return probe(address, port, "localhost", "/ready").status


def poll(read: Callable[[], _T], done: Callable[[_T], bool], timeout: float, what: str) -> _T:
    """Read until `done` holds; AssertionError naming `what` and the last value on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout} s")
        time.sleep(0.02)
