"""How long a real Envoy takes from spawn to /ready LIVE, and what an admin call costs.

Also times the other per-example parts of the harness: an echo backend and the xDS relay.

Run: .venv/bin/python benchmarks/envoy_start.py [--runs N] [--log-level info]
Uses a static-only bootstrap (one direct_response listener), so no control plane is involved.
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness.loopback import DirectResponseListener, EnvoyBootstrap, EnvoyProcess
from harness.loopback.echo import EchoBackend
from harness.loopback.probe import probe
from harness.loopback.relay import TcpRelay


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _summary(name: str, seconds: list[float]) -> str:
    millis = [value * 1000 for value in seconds]
    return (
        f"{name:<28} median {statistics.median(millis):7.2f} ms   "
        f"p90 {_percentile(millis, 0.9):7.2f} ms   min {min(millis):7.2f} ms   (n={len(millis)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--component-log-level", default="config:debug,upstream:info")
    parser.add_argument("--admin-calls", type=int, default=50, help="admin calls per run")
    arguments = parser.parse_args()

    bootstrap = EnvoyBootstrap(
        node_id="benchmark", static_listeners=(DirectResponseListener("direct", body="ok"),)
    )
    to_admin: list[float] = []
    to_live: list[float] = []
    stop_times: list[float] = []
    admin_calls: list[float] = []
    probes: list[float] = []
    for _ in range(arguments.runs):
        envoy = EnvoyProcess(
            bootstrap,
            log_level=arguments.log_level,
            component_log_level=arguments.component_log_level,
        )
        try:
            envoy.start()
            assert envoy.started_at is not None
            to_admin.append(time.monotonic() - envoy.started_at)
            envoy.wait_ready()
            to_live.append(time.monotonic() - envoy.started_at)
            for _ in range(arguments.admin_calls):
                began = time.monotonic()
                envoy.admin.ready_state()
                admin_calls.append(time.monotonic() - began)
            address, port = envoy.admin.listener_ports()["direct"][0]
            for _ in range(10):
                began = time.monotonic()
                result = probe(address, port, host="bench")
                probes.append(time.monotonic() - began)
                assert result.status == 200, result
        finally:
            began = time.monotonic()
            envoy.stop()
            stop_times.append(time.monotonic() - began)
    print(f"log level {arguments.log_level}, components {arguments.component_log_level}")
    print(_summary("spawn -> admin answers", to_admin))
    print(_summary("spawn -> /ready LIVE", to_live))
    print(_summary("stop (SIGTERM -> reaped)", stop_times))
    print(_summary("admin GET /ready", admin_calls))
    print(_summary("probe direct_response", probes))

    echo_start: list[float] = []
    echo_stop: list[float] = []
    relay_start: list[float] = []
    for index in range(arguments.runs * 5):
        began = time.monotonic()
        backend = EchoBackend("bench", "svc", str(index)).start()
        echo_start.append(time.monotonic() - began)
        began = time.monotonic()
        backend.stop()
        echo_stop.append(time.monotonic() - began)
        began = time.monotonic()
        relay = TcpRelay(("127.0.0.1", 9)).start()
        relay_start.append(time.monotonic() - began)
        relay.stop()
    print(_summary("echo backend start", echo_start))
    print(_summary("echo backend stop", echo_stop))
    print(_summary("relay start", relay_start))


if __name__ == "__main__":
    main()
