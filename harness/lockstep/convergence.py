"""Convergence: every xDS stream of a proxy ACKed the published snapshot and its Envoy holds
exactly it; the fleet converged when every proxy did.

Judged from the wire and from Envoy, for every xDS server alike: the proxy's protocol monitor
says whether its streams are at rest on the snapshot (`ProtocolMonitor.at_rest`: nothing waiting
for an ACK, the content last delivered per type equal to the snapshot's, versions left aside as
an external server owns them), and Envoy's config_dump says what it holds. The server's own
introspection is never read.

The bound is well under the `initial_fetch_timeout`: a correct server converges in milliseconds,
so anything slower is a subscription it failed to answer. After a reconnect (a cut, a restarted
control plane) Envoy first has to come back, so one more second is allowed then.

The bound is on the server and Envoy, not on the harness reading Envoy: a read of what Envoy
holds that begins within the bound and finds the snapshot converges, however long it took (at
10,000 routes a read takes seconds; `envoy_state`). Envoy is read once the wire shows every
stream at rest, or once at the deadline to say what is missing.

Each proxy has its own relay and monitor, so its streams are its monitor's. The proxies of a
fleet are waited for one after the other against one deadline, since they converge side by side.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.envoy_state import EnvoyView, snapshot_differences
from harness.lockstep.monitor.rest import by_type
from harness.lockstep.proxy import Proxy
from harness.loopback import EnvoyError

if TYPE_CHECKING:
    from harness.lockstep.stack import Stack

__all__ = [
    "RECONNECT_ALLOWANCE",
    "Convergence",
    "converge",
    "convergence_bound",
    "fleet_convergence",
]

RECONNECT_ALLOWANCE = 1.0
"""Seconds Envoy may take to come back after a cut or a control-plane restart (its reconnect
back-off tops out at 0.5 s here)."""


@attrs.frozen
class Convergence:
    converged: bool
    seconds: float
    snapshot_version: str
    problems: tuple[str, ...] = ()
    view: EnvoyView | None = attrs.field(default=None, eq=False, repr=False)
    """What Envoy held when it had converged (None if it did not, or held nothing to compare)."""
    read_seconds: float = attrs.field(default=0.0, eq=False)
    """How long the last read of what Envoy holds took, comparison left out (part of `seconds`)."""

    def describe(self) -> str:
        if self.converged:
            return (
                f"converged on {self.snapshot_version or 'nothing'} in {self.seconds * 1000:.0f} ms"
                f" (reading Envoy {self.read_seconds * 1000:.0f} ms)"
            )
        return f"not converged after {self.seconds:.1f} s: " + "; ".join(self.problems)


def convergence_bound(initial_fetch_timeout: float, *, reconnect: bool) -> float:
    return 0.5 * initial_fetch_timeout + (RECONNECT_ALLOWANCE if reconnect else 0.0)


def converge(
    stack: Stack, proxy: Proxy, timeout: float | None = None, *, started: float | None = None
) -> Convergence:
    """Wait until every stream of `proxy` is at rest on the published snapshot (its monitor) and
    its Envoy holds exactly it; the bound counts from `started` (default: now)."""
    if timeout is None:
        timeout = convergence_bound(
            stack.settings.initial_fetch_timeout, reconnect=proxy.reconnect_pending
        )
        proxy.reconnect_pending = False
    started = time.monotonic() if started is None else started
    deadline = started + timeout
    snapshot = stack.published_snapshot(proxy.index)
    if snapshot is None:
        return Convergence(True, 0.0, "")
    expected = by_type({(item.type.type_url, item.name): item.body for item in snapshot.resources})
    monitor = proxy.monitor
    wire: list[str] = []

    def at_rest() -> bool:
        wire[:] = monitor.at_rest(expected)
        return not wire

    wire_done = monitor.wait_until(at_rest, max(deadline - time.monotonic(), 0.0))
    problems: list[str] = []
    while True:
        view: EnvoyView | None = None
        read_started = read_done = time.monotonic()
        try:
            view = proxy.envoy_view(len(snapshot.resources))
            read_done = time.monotonic()
            problems = snapshot_differences(view, snapshot)
        except EnvoyError as error:
            problems = [f"Envoy admin: {error}"]
        now = time.monotonic()
        if not problems and wire_done:
            return Convergence(
                True,
                now - started,
                snapshot.version,
                view=view,
                read_seconds=read_done - read_started,
            )
        if now >= deadline:
            break
        if not wire_done:
            wire_done = monitor.wait_until(at_rest, min(0.05, max(deadline - now, 0.0)))
        else:
            time.sleep(0.01)  # polling Envoy's admin endpoint, with a deadline
    if not wire_done:
        problems[:0] = ["the wire shows streams not at rest on the snapshot:", *wire[:6]]
    return Convergence(
        False,
        time.monotonic() - started,
        snapshot.version,
        tuple(problems),
        read_seconds=read_done - read_started,
    )


def fleet_convergence(convergences: Mapping[int, Convergence]) -> Convergence:
    """Every proxy's convergence as one: the fleet's (a single proxy's as it is); each problem
    names its proxy, the view is left out."""
    if len(convergences) == 1:
        return next(iter(convergences.values()))
    items = sorted(convergences.items())
    return Convergence(
        all(item.converged for _, item in items),
        max((item.seconds for _, item in items), default=0.0),
        next((item.snapshot_version for _, item in items if item.snapshot_version), ""),
        tuple(f"proxy {index}: {problem}" for index, item in items for problem in item.problems),
        read_seconds=max((item.read_seconds for _, item in items), default=0.0),
    )
