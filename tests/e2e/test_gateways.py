"""Several Gateways on one manifest port, and GatewayClass selection (manifests/gateways.yaml).

Each Gateway is its own proxy in a real cluster; here each gets its own local port, so Gateways
that share port 80 in the manifests answer independently, each with only the routes attached
to it. `--gateway-class` (TranslateOptions.gateway_class) serves only Gateways of that class;
by default every Gateway is served, even when its GatewayClass object is absent, as conformance
manifests expect.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.served import Served, served_manifest

HOST = "app.example.com"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("gateways.yaml") as served:
        yield served


def test_gateways_sharing_a_port_get_their_own_local_ports(served: Served) -> None:
    addresses = {served.address(f"default/{name}", 80) for name in ("alpha", "beta", "gamma")}
    assert len(addresses) == 3


@pytest.mark.parametrize(
    ("gateway", "port", "host", "service"),
    [
        ("default/alpha", 80, HOST, "alpha"),
        ("default/beta", 80, HOST, "beta"),
        # Class "other": served by default. (Its hostname-less route does not get
        # app.example.com, which the "shared" route names.)
        ("default/gamma", 80, "gamma.example.com", "gamma"),
        ("default/delta", 8080, "delta.example.com", "delta"),  # class not in the manifests
    ],
)
def test_each_gateway_answers_with_its_own_routes(
    served: Served, gateway: str, port: int, host: str, service: str
) -> None:
    reply = served.get(gateway, port, host, "/")
    assert reply.status == 200, reply
    assert reply.service == service


@pytest.mark.parametrize(
    ("gateway", "port"),
    [("default/alpha", 80), ("default/beta", 80), ("default/gamma", 80), ("default/delta", 8080)],
)
def test_route_attached_to_several_gateways_answers_on_each(
    served: Served, gateway: str, port: int
) -> None:
    reply = served.get(gateway, port, HOST, "/shared/x")
    assert reply.status == 200, reply
    assert reply.service == "shared"


def test_route_of_one_gateway_is_absent_from_the_other(served: Served) -> None:
    alpha = served.get("default/alpha", 80, HOST, "/moved/x")
    beta = served.get("default/beta", 80, HOST, "/moved/x")
    assert alpha.status == 302, alpha
    assert alpha.header("location") == "http://app.example.com/here"
    assert beta.status == 200, beta
    assert beta.service == "beta"


def test_unknown_gateway_or_port_is_reported_not_sent(served: Served) -> None:
    for gateway, port in (("default/nope", 80), ("default/alpha", 8080), ("other/alpha", 80)):
        reply = served.get(gateway, port, HOST, "/")
        assert reply.status is None
        assert reply.error


def test_https_to_an_http_port_is_reported_not_sent(served: Served) -> None:
    reply = served.get("default/alpha", 80, HOST, "/", scheme="https")
    assert reply.status is None
    assert reply.error is not None and "HTTP" in reply.error


def test_gateway_class_selects_gateways() -> None:
    with served_manifest("gateways.yaml", gateway_class="routeproof") as served:
        assert served.get("default/alpha", 80, HOST, "/").service == "alpha"
        assert served.get("default/beta", 80, HOST, "/").service == "beta"
        for gateway, port in (("default/gamma", 80), ("default/delta", 8080)):
            reply = served.get(gateway, port, "gamma.example.com", "/")
            assert reply.status is None
            assert reply.error is not None and "not served" in reply.error
