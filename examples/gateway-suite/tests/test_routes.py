"""Every route resolves after any sequence of changes, failures and recoveries."""


def test_every_route_resolves(routeproof):
    result = routeproof.check(xds="delta", failure_policy="keep-last-good")
    assert result.examples >= 3


def test_every_route_resolves_with_our_own_operations(routeproof):
    """Our operation and invariant (`gateway_extensions`) join the built-in ones."""
    result = routeproof.check(xds="sotw", extensions="gateway_extensions:EXTENSIONS", steps=12)
    assert result.kinds.get("recreate-route", 0) > 0
