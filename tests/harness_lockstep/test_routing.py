"""The probe sweep's retry of requests that found no listener (a new listener's worker not yet
accepting), without Envoy: a send callable and a clock stand in for the network and time."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.lockstep.invariants.routing import (
    Addresses,
    observed_outcome,
    retry_unreachable,
    routing_violations,
)
from harness.loopback.probe import ProbeResult
from model import Outcome, Request, Status, Unreachable

HTTPS = Request(8443, "https", "a.example.com", "/")
HTTP = Request(8080, "http", "b.example.com", "/")
REFUSED = ProbeResult(status=None, error="ConnectionRefusedError", error_kind="refused")
NOT_FOUND = ProbeResult(status=404)
OK = ProbeResult(status=200)


class _Clock:
    """Time that passes only when slept."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Listener:
    """Refuses the first `refusals` connections, then answers `then`."""

    def __init__(self, refusals: int, then: ProbeResult = NOT_FOUND) -> None:
        self.refusals = refusals
        self.then = then
        self.sent: list[Request] = []

    def __call__(self, request: Request) -> ProbeResult:
        self.sent.append(request)
        return REFUSED if len(self.sent) <= self.refusals else self.then


def _retry(
    results: list[ProbeResult],
    allowed: dict[Request, frozenset[Outcome]],
    send: _Listener,
    clock: _Clock,
) -> list[ProbeResult]:
    return retry_unreachable(
        list(allowed),
        results,
        allowed,
        send,
        retry_for=1.0,
        interval=0.1,
        clock=clock,
        sleep=clock.sleep,
    )


def test_a_listener_that_starts_accepting_within_the_deadline_is_judged_by_its_answer():
    clock = _Clock()
    listener = _Listener(refusals=3)
    allowed = {HTTPS: frozenset({Status(404)})}
    assert _retry([REFUSED], allowed, listener, clock) == [NOT_FOUND]
    assert len(listener.sent) == 4
    assert clock.now == pytest.approx(0.4)


def test_a_listener_that_never_comes_is_still_unreachable_after_the_deadline():
    clock = _Clock()
    listener = _Listener(refusals=1000)
    allowed = {HTTPS: frozenset({Status(404)})}
    assert _retry([REFUSED], allowed, listener, clock) == [REFUSED]
    assert len(listener.sent) == 10
    assert clock.now == pytest.approx(1.0)


def test_only_the_last_answer_is_judged_even_when_it_is_wrong():
    listener = _Listener(refusals=1, then=OK)
    allowed = {HTTPS: frozenset({Status(404)})}
    assert _retry([REFUSED], allowed, listener, _Clock()) == [OK]


@pytest.mark.parametrize(
    ("result", "allowed"),
    [
        (NOT_FOUND, frozenset({Status(503)})),  # a wrong answer is not a listener still coming
        (REFUSED, frozenset({Unreachable()})),  # the model expects no listener
        (REFUSED, frozenset({Unreachable(), Status(404)})),  # either is right
    ],
)
def test_nothing_else_is_retried(result, allowed):
    listener = _Listener(refusals=0)
    assert _retry([result], {HTTP: allowed}, listener, _Clock()) == [result]
    assert listener.sent == []


def test_each_round_retries_only_the_requests_still_without_a_listener():
    clock = _Clock()
    other = Request(8443, "https", "c.example.com", "/")
    answers = {HTTPS: [REFUSED, NOT_FOUND], other: [REFUSED, REFUSED, NOT_FOUND]}
    sent: list[Request] = []

    def send(request: Request) -> ProbeResult:
        sent.append(request)
        return answers[request].pop(0)

    allowed = {
        HTTPS: frozenset({Status(404)}),
        HTTP: frozenset({Status(404)}),
        other: frozenset({Status(404)}),
    }
    final = retry_unreachable(
        list(allowed),
        [REFUSED, NOT_FOUND, REFUSED],
        allowed,
        send,
        interval=0.1,
        clock=clock,
        sleep=clock.sleep,
    )
    assert [observed_outcome(result) for result in final] == [Status(404)] * 3
    assert sent == [HTTPS, other, HTTPS, other, other]


@pytest.fixture
def late_listener() -> Iterator[tuple[int, threading.Event]]:
    """A port bound but not listening (connections are refused) until the event is set; then
    every connection gets a 404."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    start = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        start.wait()
        server.listen()
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], start
    finally:
        start.set()
        stop.set()
        thread.join()
        server.close()


def test_the_sweep_waits_for_a_listener_that_accepts_late(late_listener):
    port, start = late_listener
    addresses = Addresses({(8080, "http"): ("127.0.0.1", port)})
    expected = {HTTP: frozenset({Status(404)})}
    threading.Timer(0.2, start.set).start()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        assert routing_violations(pool, addresses, expected, timeout=1.0) == []
        assert 0.2 <= time.monotonic() - began < 1.0


def test_the_sweep_reports_a_listener_that_never_comes(late_listener):
    port, _ = late_listener
    addresses = Addresses({(8080, "http"): ("127.0.0.1", port)})
    expected = {HTTP: frozenset({Status(404)})}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        (violation,) = routing_violations(pool, addresses, expected, timeout=1.0, retry_for=0.3)
    (detail,) = violation.details
    assert detail.startswith(f"{HTTP.describe()}: expected 404; Envoy answered no listener")
    assert detail.endswith("still after 0.3 s of retries")
