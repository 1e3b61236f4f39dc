"""Fixtures for the extension tests: a reference server per test, routes to send, TLS material."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from envoy.config.route.v3.route_components_pb2 import Route, RouteAction, RouteMatch

from sut.extension import ExtensionServer

WORKER_PREFIX = "routeproof-extension"


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_PREFIX)]


@pytest.fixture
def server():
    with ExtensionServer(generation=1) as running:
        yield running
    assert worker_threads() == []


@pytest.fixture
def route() -> Route:
    return Route(
        name="httproute/default/one/rule/0/match/0/www_example_com",
        match=RouteMatch(prefix="/"),
        route=RouteAction(cluster="httproute/default/one/rule/0"),
    )


def _openssl(*arguments: str, cwd: Path) -> None:
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    directory = tmp_path_factory.mktemp("tls")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=routeproof-test-ca",
        cwd=directory,
    )
    _openssl(
        "req",
        *curve,
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=routeproof-extension",
        cwd=directory,
    )
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        cwd=directory,
    )
    _openssl(
        "req",
        "-x509",
        *curve,
        "-keyout",
        "other.key",
        "-out",
        "other.crt",
        "-days",
        "1",
        "-subj",
        "/CN=some-other-ca",
        cwd=directory,
    )
    return {
        name: (directory / name).read_bytes()
        for name in ("ca.crt", "server.crt", "server.key", "other.crt")
    }
