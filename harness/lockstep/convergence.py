"""Convergence: every xDS stream ACKed the published snapshot and Envoy holds exactly it.

The bound is well under the `initial_fetch_timeout`: a correct server converges in milliseconds,
so anything slower is a subscription it failed to answer. After a reconnect (a cut, a restarted
control plane) Envoy first has to come back, so one more second is allowed then.

The bound is on the server and Envoy, not on the harness reading Envoy: a read of what Envoy
holds that begins within the bound and finds the snapshot converges, however long it took (at
10,000 routes a read takes seconds; `envoy_state`). Envoy is read once the server says every
stream ACKed, or once at the deadline to say what is missing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import attrs

from harness.lockstep.envoy_state import EnvoyView, snapshot_differences
from harness.loopback import EnvoyError

if TYPE_CHECKING:
    from harness.lockstep.stack import Stack

__all__ = ["RECONNECT_ALLOWANCE", "Convergence", "converge", "convergence_bound"]

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


def converge(stack: Stack, timeout: float | None = None) -> Convergence:
    """Wait until every stream ACKed the cache's snapshot and Envoy holds exactly it."""
    if timeout is None:
        timeout = convergence_bound(
            stack.settings.initial_fetch_timeout, reconnect=stack.reconnect_pending
        )
        stack.reconnect_pending = False
    started = time.monotonic()
    deadline = started + timeout
    snapshot = stack.published_snapshot()
    if snapshot is None:
        return Convergence(True, 0.0, "")
    assert stack.xds is not None
    node = stack.settings.node_id
    server_done = stack.xds.wait_converged(node, snapshot.version, timeout)
    problems: list[str] = []
    while True:
        view: EnvoyView | None = None
        read_started = read_done = time.monotonic()
        try:
            view = stack.envoy_view()
            read_done = time.monotonic()
            problems = snapshot_differences(view, snapshot)
        except EnvoyError as error:
            problems = [f"Envoy admin: {error}"]
        now = time.monotonic()
        if not problems and server_done:
            return Convergence(
                True,
                now - started,
                snapshot.version,
                view=view,
                read_seconds=read_done - read_started,
            )
        if now >= deadline:
            break
        if not server_done:
            server_done = stack.xds.wait_converged(node, snapshot.version, 0.05)
        else:
            time.sleep(0.01)  # polling Envoy's admin endpoint, with a deadline
    if not server_done:
        problems.insert(
            0, "the xDS server has not converged (streams still sending or awaiting ACKs)"
        )
    return Convergence(
        False,
        time.monotonic() - started,
        snapshot.version,
        tuple(problems),
        read_seconds=read_done - read_started,
    )
