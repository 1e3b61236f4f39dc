"""An update Envoy must reject: how the harness makes one, and waits for the NACK on the wire.

It models a control-plane bug that lets an invalid resource escape validation: one
RouteConfiguration Envoy holds gains a route whose regex is not RE2, is published directly into
the cache, and once the wire shows Envoy's NACK the good snapshot is published again. The bad
content is handed to the protocol monitors, whose `nack` rule accepts NACKs of it and nothing
else. The good snapshot returns `ROLLBACK_AFTER` after the NACKs. With several proxies, every
one holds the RouteConfiguration and NACKs it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from envoy.config.route.v3 import route_pb2

from harness.lockstep.monitor.monitor import ProtocolMonitor
from sut.xds import Resource, ResourceType

if TYPE_CHECKING:
    from harness.lockstep.stack import Stack

__all__ = ["ROLLBACK_AFTER", "push_rejected_update"]

ROLLBACK_AFTER = 0.05
"""Seconds the bad snapshot stays published after the last NACK: a control plane takes a
moment to notice a NACK and roll back. What the server does with the NACK meanwhile (resend the
rejected response, or stay quiet as it should) is on the wire for the monitor to judge; rolling
back the instant the NACK crosses the relay would leave the server no time to do anything."""


def push_rejected_update(stack: Stack, timeout: float = 2.0) -> tuple[bool, str]:
    """Returns whether every Envoy NACKed within `timeout`, and the rejected snapshot's
    version."""
    node = stack.settings.node_id
    good = stack.cache.get_snapshot(node)
    if good is None:
        return False, ""  # nothing published: nothing to corrupt
    monitors = [proxy.monitor for proxy in stack.proxies if proxy.node_id == node]
    routes = good.of_type(ResourceType.ROUTE)
    candidates = sorted(
        name
        for name in routes
        if all(name in monitor.subscribed(ResourceType.ROUTE.type_url) for monitor in monitors)
    )
    if not candidates:
        return False, ""  # some Envoy holds no RouteConfiguration to reject
    bad = Resource.from_message(_unacceptable(routes[candidates[0]].message()))
    stack.rejected.append(bad)
    for monitor in monitors:
        monitor.rejected(bad.body)
    rejected = good.replacing(bad)
    seen = [len(monitor.nacks) for monitor in monitors]
    stack.cache.set_snapshot(node, rejected)
    stack.published(rejected)
    deadline = time.monotonic() + timeout
    nacked = all(
        _wait_for_nack(monitor, count, deadline)
        for monitor, count in zip(monitors, seen, strict=True)
    )
    time.sleep(ROLLBACK_AFTER)  # a modelled duration, not a wait for anything
    stack.cache.set_snapshot(node, good)
    stack.published(good)
    return nacked, rejected.version


def _unacceptable(message: object) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration()
    config.CopyFrom(message)
    host = config.virtual_hosts.add(name="routeproof-rejected", domains=["rejected.invalid"])
    route = host.routes.add(name="routeproof-rejected")
    route.match.safe_regex.regex = "(?=lookahead-is-not-re2)"
    route.direct_response.status = 200
    return config


def _wait_for_nack(monitor: ProtocolMonitor, seen: int, deadline: float) -> bool:
    """Until the wire shows a NACK beyond the first `seen` (re-tested as the relay delivers)."""

    def nacked() -> bool:
        monitor.sync()
        return len(monitor.nacks) > seen

    return monitor.wait_until(nacked, max(deadline - time.monotonic(), 0.0))
