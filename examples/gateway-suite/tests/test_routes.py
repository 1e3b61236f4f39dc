"""Every route resolves after any sequence of changes, failures and recoveries."""


def test_every_route_resolves(routeproof):
    result = routeproof.check(xds="delta", failure_policy="keep-last-good")
    assert result.examples >= 3
