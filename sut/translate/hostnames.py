"""Hostname arithmetic of the Gateway API: wildcard coverage, intersection and specificity.

A wildcard `*.example.com` covers any hostname with at least one more label (`a.example.com`,
`a.b.example.com`) but not `example.com`; `None` (no hostname) covers everything. These rules
decide route attachment (NoMatchingListenerHostname), the virtual host a route lands on, and
Listener Isolation between listeners that share a port.
"""

from __future__ import annotations

__all__ = ["covers", "intersect", "more_specific", "route_hostnames_on_listener"]


def covers(pattern: str | None, hostname: str) -> bool:
    """Does `pattern` (a hostname, or None for all) match every host that `hostname` matches?"""
    if pattern is None or pattern == hostname:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".example.com"
    if hostname.startswith("*."):
        return hostname[1:].endswith(suffix)
    return hostname.endswith(suffix)


def intersect(listener_hostname: str | None, route_hostname: str) -> str | None:
    """The hostnames both accept, as one hostname (the more specific), or None when disjoint."""
    if covers(listener_hostname, route_hostname):
        return route_hostname
    if listener_hostname is not None and covers(route_hostname, listener_hostname):
        return listener_hostname
    return None


def route_hostnames_on_listener(
    listener_hostname: str | None, route_hostnames: tuple[str, ...]
) -> tuple[str, ...]:
    """The virtual host domains a route gets on a listener; empty means no intersection.

    A route without hostnames takes the listener's (or `*`); route hostnames that do not
    intersect the listener's are ignored, as the spec requires.
    """
    if not route_hostnames:
        return (listener_hostname or "*",)
    found = {intersect(listener_hostname, hostname) for hostname in route_hostnames}
    found.discard(None)
    return tuple(sorted(name for name in found if name is not None))


def more_specific(candidate: str | None, than: str | None) -> bool:
    """Is `candidate` strictly narrower than `than`? (exact < *.a.b < *.b < None)."""
    if candidate == than or candidate is None:
        return False
    return covers(than, candidate)
