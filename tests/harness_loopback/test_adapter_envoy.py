"""Real Envoy against the reference adapter's xDS server: it converges on what Push sets, and
finds it again after Restart once the next Push comes."""

from __future__ import annotations

import time

import pytest

from harness.loopback import AdsServer, EnvoyBootstrap, EnvoyProcess
from harness.loopback.adapter import AdapterClient, AdapterProcess, reference_command
from harness.loopback.echo import EchoBackend
from harness.loopback.probe import probe
from sut.xds import Snapshot
from tests.xds.builders import cluster, listener, load_assignment, route_configuration

pytestmark = pytest.mark.envoy

NODE = "adapter-envoy"


def snapshot(port: int, *, inline: bool = False) -> Snapshot:
    return Snapshot.from_messages(
        [
            listener("L-main", None if inline else "main"),
            route_configuration("main", "app"),
            cluster("app"),
            load_assignment("app", port),
        ]
    )


def wait_status(envoy: EnvoyProcess, status: int, timeout: float = 10.0) -> None:
    """Poll a fresh request through Envoy until it answers `status`, up to `timeout`."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while time.monotonic() < deadline:
        ports = envoy.admin.listener_ports().get("L-main")
        if ports:
            seen = probe(*ports[0], "example.com", "/app").status
            if seen == status:
                return
        time.sleep(0.02)
    raise AssertionError(f"Envoy never answered {status} (last: {seen!r})")


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_converges_on_what_the_adapter_pushes(mode):
    with (
        AdapterProcess.start(reference_command()) as process,
        AdapterClient.connect(process.adapter_address) as client,
        EchoBackend("default", "app", "0") as backend,
    ):
        client.wait_ready(10)
        client.push(NODE, snapshot(backend.port))
        host, port = process.ads_address.rsplit(":", 1)
        ads = AdsServer(host, int(port), mode=mode, initial_fetch_timeout=4.0)
        with EnvoyProcess(EnvoyBootstrap(node_id=NODE, ads=ads)) as envoy:
            envoy.wait_ready(10)
            wait_status(envoy, 200)
            client.push(NODE, snapshot(backend.port, inline=True))
            wait_status(envoy, 500)
            client.restart()
            client.push(NODE, snapshot(backend.port))
            wait_status(envoy, 200)
