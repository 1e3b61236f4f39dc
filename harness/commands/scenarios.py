"""Fixed scenarios: known reproductions, run deterministically through the same operations and
invariants as the state machine.

`seed` is Envoy Gateway issue 5595 (BRIEF.md section 1): two HTTPS Gateway listeners with SNI,
one HTTPRoute each on its own hostname; the extension fails on PostTranslate; route 1 changes;
the extension recovers; route 1 changes again. Route 2 must still resolve. On a fleet
(`--proxies N`), the last replica reconnects once the extension has recovered, so one replica
re-subscribes on a new stream while the others keep theirs; every replica must still resolve
both routes.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from harness.lockstep.invariants import observed_outcome
from harness.lockstep.operations import (
    CutXds,
    ExtensionFault,
    ExtensionRecover,
    Operation,
    UpdateRoute,
)
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.lockstep.worlds import LISTENERS
from model import Backend, Match, Request, Route, Rule, Service, World

__all__ = ["SEED_ROUTES", "run_seed", "seed_operations", "seed_world"]

SEED_ROUTES = {
    "route-1": Request(8443, "https", "a.example.com", "/"),
    "route-2": Request(8443, "https", "b.example.com", "/"),
}


def _route(name: str, listener: str, hostname: str, *rules: Rule) -> Route:
    return Route(name, int(name[-1]), rules, hostnames=(hostname,), section=listener)


def seed_world(pods: dict[str, tuple[str, ...]]) -> World:
    return World(
        listeners=(LISTENERS["https-a"], LISTENERS["https-b"]),
        routes=(
            _route(
                "route-1",
                "https-a",
                "a.example.com",
                Rule((Match("PathPrefix", "/"),), (Backend("svc-a"),)),
            ),
            _route(
                "route-2",
                "https-b",
                "b.example.com",
                Rule((Match("PathPrefix", "/"),), (Backend("svc-b"),)),
            ),
        ),
        services=tuple(Service(name, pods.get(name, ())) for name in ("svc-a", "svc-b", "svc-c")),
    )


def seed_operations(proxies: int = 1) -> list[Operation]:
    base = Rule((Match("PathPrefix", "/"),), (Backend("svc-a"),))
    first_change = _route(
        "route-1",
        "https-a",
        "a.example.com",
        base,
        Rule((Match("PathPrefix", "/v2"),), (Backend("svc-c"),)),
    )
    second_change = _route(
        "route-1",
        "https-a",
        "a.example.com",
        base,
        Rule((Match("PathPrefix", "/v3"),), (Backend("svc-c"),)),
    )
    reconnect: list[Operation] = [CutXds(proxy=proxies - 1)] if proxies > 1 else []
    return [
        ExtensionFault("internal", "PostTranslateModify"),
        UpdateRoute(first_change),
        ExtensionRecover(new_generation=False),
        *reconnect,
        UpdateRoute(second_change),
    ]


def run_seed(settings: StackSettings, say: Callable[[str], None] = print) -> bool:
    """Run the seed scenario; True when every route resolves as the model says."""
    session = Session(attrs.evolve(settings, extension=True))
    try:
        session.start(seed_world)
        say(f"start: {session.stack.converge().describe()}")
        operations = seed_operations(settings.proxies)
        for number, operation in enumerate(operations, start=1):
            session.apply(operation)
            result = (
                session.stack.control_plane.last_result if session.stack.control_plane else None
            )
            outcome = f" -> control plane: {result.outcome}" if result is not None else ""
            say(f"step {number}: {operation.describe()}{outcome}")
            convergence = session.stack.converge()
            say(f"        {convergence.describe()}")
        # Judge first, then show the routes: the invariants wait out the convergence bound and
        # the monitor's answer bound, so every answer below is of the state they judged (a
        # probe sent before then may catch a listener still warming and tell another story).
        violations = session.check()
        all_good = not violations
        for proxy in range(settings.proxies):
            which = f" (proxy {proxy})" if settings.proxies > 1 else ""
            for route, request in SEED_ROUTES.items():
                expected = session.model.expect(request, proxy=proxy)
                actual = observed_outcome(
                    session.stack.probe(
                        request.port, "https", request.host, request.path, proxy=proxy
                    )
                )
                verdict = "ok" if actual in expected else "WRONG"
                all_good &= actual in expected
                wanted = " or ".join(sorted(item.describe() for item in expected))
                say(f"{route}{which} {request.describe()}: expected {wanted}")
                say(f"{' ' * len(route + which)} got {actual.describe()} -> {verdict}")
        say(f"xDS exchange of step {len(operations)} on the wire (decoded by the monitor):")
        for line in session.exchanges_of_step():
            say(f"  {line}")
        for violation in violations:
            say(violation.describe())
        return all_good
    finally:
        session.stop()
