"""HTTPRoute filters through real Envoy (manifests/filters.yaml).

Spec (apis/v1/httproute_types.go):
- HTTPHeaderFilter: "set" overwrites, "add" appends to existing values, "remove" deletes; header
  names are case-insensitive.
- HTTPRequestRedirectFilter.Port: "If no port is specified, the redirect port MUST be derived
  using the following rules: If redirect scheme is not-empty, the redirect port MUST be the
  well-known port associated with the redirect scheme ... If redirect scheme is empty, the
  redirect port MUST be the Gateway Listener port." "Implementations SHOULD NOT add the port
  number in the 'Location' header" for http with 80 and https with 443. Hostname: "When empty,
  the hostname in the Host header of the request is used." StatusCode defaults to 302.
- HTTPPathModifier.ReplacePrefixMatch: the table "Request Path | Prefix Match | Replace Prefix |
  Modified Path" (/foo/bar, /foo, /xyz -> /xyz/bar; /foo/bar, /foo, "" -> /bar; /foo, /foo, /
  -> /; ...).
- HTTPURLRewriteFilter.Hostname: "the value with which to replace the Host header value during
  forwarding".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.served import Served, served_manifest

GATEWAY = "default/filters"
_SCHEMES = {80: "http", 8080: "http", 443: "https"}


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("filters.yaml") as served:
        yield served


# ------------------------------------------------------------------ header modifiers


def test_request_header_modifier(served: Served) -> None:
    reply = served.get(
        GATEWAY,
        80,
        "headers.example.com",
        "/request",
        headers={
            "X-Header-Remove": "remove-val",
            "X-Header-Add-Append": "append-val-1",
            "x-header-set": "set-val",
        },
    )
    assert reply.status == 200, reply
    assert reply.request_header("X-Header-Set") == "set-overwrites-values"
    assert reply.request_header("X-Header-Add") == "header-val-1"
    assert reply.request_header("X-Header-Add-Append") == "append-val-1,header-val-2"
    assert reply.request_header("X-Header-Remove") is None


def test_response_header_modifier(served: Served) -> None:
    reply = served.get(
        GATEWAY,
        80,
        "headers.example.com",
        "/response",
        headers={
            "X-Echo-Set-Header": "X-Header-Set:backend-value,"
            "X-Header-Add-Append:append-val-1,X-Header-Remove:remove-val,X-Kept:kept"
        },
    )
    assert reply.status == 200, reply
    assert reply.header("X-Header-Set") == "set-overwrites-values"
    assert reply.header("X-Header-Add") == "header-val-1"
    assert reply.header("X-Header-Add-Append") == "append-val-1,header-val-2"
    assert reply.header("X-Header-Remove") is None
    assert reply.header("X-Kept") == "kept"


def test_header_modifiers_do_not_leak_to_other_rules(served: Served) -> None:
    reply = served.get(
        GATEWAY, 80, "headers.example.com", "/response", headers={"X-Header-Remove": "keep"}
    )
    assert reply.request_header("X-Header-Remove") == "keep"
    assert reply.request_header("X-Header-Add") is None


# ------------------------------------------------------------------ redirects

_REDIRECTS = {
    # case: {listener port: expected Location prefix}
    "/scheme-nil-and-port-nil": {
        80: "http://example.org",
        8080: "http://example.org:8080",
        443: "https://example.org",
    },
    "/scheme-nil-and-port-80": {
        80: "http://example.org",
        8080: "http://example.org",
        443: "https://example.org:80",
    },
    "/scheme-nil-and-port-8080": {
        80: "http://example.org:8080",
        8080: "http://example.org:8080",
        443: "https://example.org:8080",
    },
    "/scheme-nil-and-port-443": {
        80: "http://example.org:443",
        8080: "http://example.org:443",
        443: "https://example.org",
    },
    "/scheme-http-and-port-nil": dict.fromkeys((80, 8080, 443), "http://example.org"),
    "/scheme-http-and-port-8080": dict.fromkeys((80, 8080, 443), "http://example.org:8080"),
    "/scheme-https-and-port-nil": dict.fromkeys((80, 8080, 443), "https://example.org"),
    "/scheme-https-and-port-443": dict.fromkeys((80, 8080, 443), "https://example.org"),
    "/scheme-https-and-port-8443": dict.fromkeys((80, 8080, 443), "https://example.org:8443"),
}


@pytest.mark.parametrize("port", [80, 8080, 443])
@pytest.mark.parametrize("case", sorted(_REDIRECTS))
def test_redirect_port_and_scheme(served: Served, case: str, port: int) -> None:
    reply = served.get(GATEWAY, port, "redirect.example.com", case, scheme=_SCHEMES[port])
    assert reply.status == 302, reply
    assert reply.header("location") == _REDIRECTS[case][port] + case


@pytest.mark.parametrize(
    ("port", "location"),
    [
        (80, "http://redirect.example.com/moved"),
        (8080, "http://redirect.example.com:8080/moved"),
        (443, "https://redirect.example.com/moved"),
    ],
)
@pytest.mark.parametrize("with_local_port", [False, True])
def test_redirect_keeps_host_with_manifest_port(
    served: Served, port: int, location: str, with_local_port: bool
) -> None:
    """The Location names the manifest's port, never the port Envoy really listens on, even
    when the client's Host header carries that local port."""
    host = "redirect.example.com"
    if with_local_port:
        host += f":{served.address(GATEWAY, port)[1]}"
    reply = served.get(GATEWAY, port, host, "/same-host/x", scheme=_SCHEMES[port])
    assert reply.status == 302, reply
    assert reply.header("location") == location


@pytest.mark.parametrize("port", [80, 8080])
def test_redirect_to_https_drops_the_port(served: Served, port: int) -> None:
    reply = served.get(GATEWAY, port, "redirect.example.com", "/upgrade/page")
    assert reply.status == 302, reply
    assert reply.header("location") == "https://redirect.example.com/upgrade/page"


def test_redirect_status_code(served: Served) -> None:
    reply = served.get(GATEWAY, 80, "redirect.example.com", "/permanent")
    assert reply.status == 301, reply
    assert reply.header("location") == "http://example.org/permanent"


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/old/page", "http://example.org/new/page"),
        ("/old", "http://example.org/new"),
        ("/old/", "http://example.org/new/"),
        ("/strip/page", "http://example.org/page"),
        ("/strip", "http://example.org/"),
        ("/strip/", "http://example.org/"),
        ("/same-host/deep/path", "http://redirect.example.com/moved"),
    ],
)
def test_redirect_path(served: Served, path: str, location: str) -> None:
    reply = served.get(GATEWAY, 80, "redirect.example.com", path)
    assert reply.status == 302, reply
    assert reply.header("location") == location


def test_redirect_never_reaches_a_backend(served: Served) -> None:
    reply = served.get(GATEWAY, 80, "redirect.example.com", "/permanent")
    assert reply.echo is None


# ------------------------------------------------------------------ URL rewrites


@pytest.mark.parametrize(
    ("path", "rewritten"),
    [
        ("/prefix/one/two", "/one/two"),
        ("/prefix/one", "/one"),
        ("/prefix/one/", "/one/"),
        ("/prefix/one/two?q=1", "/one/two?q=1"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/strip-prefix/", "/"),
        ("/trailing/bar", "/xyz/bar"),
        ("/trailing", "/xyz"),
        ("/full/one/two", "/one"),
        ("/full/one", "/one"),
    ],
)
def test_url_rewrite_path(served: Served, path: str, rewritten: str) -> None:
    reply = served.get(GATEWAY, 80, "rewrite.example.com", path)
    assert reply.status == 200, reply
    assert reply.echo is not None
    assert reply.echo["path"] == rewritten
    assert reply.echo["host"] == "rewrite.example.com"


def test_url_rewrite_hostname(served: Served) -> None:
    reply = served.get(GATEWAY, 80, "rewrite.example.com", "/host/page")
    assert reply.status == 200, reply
    assert reply.echo is not None
    assert reply.echo["host"] == "internal.example.net"
    assert reply.echo["path"] == "/host/page"


def test_url_rewrite_with_header_modifier(served: Served) -> None:
    reply = served.get(
        GATEWAY, 80, "rewrite.example.com", "/both/x", headers={"X-Header-Set": "old"}
    )
    assert reply.status == 200, reply
    assert reply.echo is not None
    assert (reply.echo["host"], reply.echo["path"]) == ("internal.example.net", "/test")
    assert reply.request_header("X-Header-Set") == "set-overwrites-values"
