"""How fast do N ADS streams converge after one route changes? Prints figures; not a test.

The xDS server runs in this process; the streams come from client processes on loopback
(`tests/xds/fleet.py`, grpc.aio, one connection per stream by default, as a fleet of Envoys),
subscribed as Envoy is (CDS/LDS wildcards, then EDS/RDS by name, every response ACKed). The
config is R HTTPRoutes through the real translator (`translate_1000_routes.world`). Once every
stream holds it, one route moves; the time is from the publish until the last stream has ACKed
the RouteConfiguration carrying the move. Also: this process's peak RSS (server plus the
translations), the server's thread count with few and with all streams open, and CPU seconds
of the server (this process) and of the clients.

Usage: .venv/bin/python benchmarks/xds_streams.py --streams N [--routes 100]
       [--xds sotw|delta|both] [--clients 4] [--streams-per-connection 1]
The last line is `streams: N converged in S s, peak RSS M MB`.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.xds.fleet

from benchmarks.translate_1000_routes import world  # noqa: E402
from sut.gatewayapi import PathMatch, Resources, RouteMatch  # noqa: E402
from sut.translate import translate  # noqa: E402
from sut.xds import Snapshot, SnapshotCache, XdsServer  # noqa: E402
from tests.xds.fleet import command  # noqa: E402

NODE = "fleet"
_READY_TIMEOUT = 300.0
_CONVERGE_TIMEOUT = 120.0


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _snapshot(resources: Resources) -> Snapshot:
    return Snapshot.from_messages(translate(resources).xds.messages())


def _moved_first_route(resources: Resources, marker: str) -> Resources:
    route = resources.http_routes[0]
    rule = route.rules[0]
    moved = attrs.evolve(rule, matches=(RouteMatch(path=PathMatch("PathPrefix", f"/{marker}")),))
    return resources.with_route(attrs.evolve(route, rules=(moved, *route.rules[1:])))


class _Client:
    """One fleet process; its stdout lines arrive on `lines` as (client, line)."""

    def __init__(
        self,
        address: str,
        *,
        mode: str,
        streams: int,
        marker: str,
        per_connection: int,
        lines: queue.Queue[tuple[_Client, str]],
    ) -> None:
        self.mode, self.streams = mode, streams
        self.process = subprocess.Popen(
            command(address, NODE, mode, streams, marker, per_connection=per_connection),
            cwd=ROOT,
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.cpu = 0.0
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()

    def _read(self, lines: queue.Queue[tuple[_Client, str]]) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.put((self, line.strip()))
        lines.put((self, "exited"))

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _await_all(
    lines: queue.Queue[tuple[_Client, str]], clients: list[_Client], word: str, timeout: float
) -> dict[_Client, str]:
    """Wait until every client printed `word ...`; returns the rest of each line."""
    found: dict[_Client, str] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(clients):
        try:
            client, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise SystemExit(
                f"timed out waiting for {word!r} from {len(clients) - len(found)} clients"
            ) from None
        key, _, rest = line.partition(" ")
        if key == word:
            found[client] = rest
        elif key == "cpu":
            client.cpu = float(rest)
        elif key in ("failed", "exited"):
            raise SystemExit(f"a {client.mode} client {key}: {rest}")
    return found


def _drain(lines: queue.Queue[tuple[_Client, str]], clients: list[_Client], timeout: float) -> None:
    """Read what the closed clients print last (their CPU) until every one has exited."""
    running = set(clients)
    deadline = time.monotonic() + timeout
    while running:
        try:
            client, line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        key, _, rest = line.partition(" ")
        if key == "cpu":
            client.cpu = float(rest)
        elif key == "exited":
            running.discard(client)


def _mb(kilobytes: int) -> float:
    return kilobytes / 1024


def measure(args: argparse.Namespace) -> None:
    resources = world(args.routes)
    began = time.perf_counter()
    first = _snapshot(resources)
    translated = time.perf_counter() - began
    marker = f"moved-{uuid.uuid4().hex[:12]}"
    second = _snapshot(_moved_first_route(resources, marker))
    print(f"{args.routes} HTTPRoutes: {first.summary()}; translated in {translated * 1000:.0f} ms")
    cache = SnapshotCache()
    cache.set_snapshot(NODE, first)
    modes = ["sotw", "delta"] if args.xds == "both" else [args.xds]
    lines: queue.Queue[tuple[_Client, str]] = queue.Queue()
    clients: list[_Client] = []
    with XdsServer(cache) as server:
        threads_idle = _os_threads()
        rss_idle = _rss_mb()
        cpu_before = time.process_time()
        began = time.monotonic()
        try:
            per_mode = [
                args.streams // len(modes) + (i < args.streams % len(modes))
                for i in range(len(modes))
            ]
            for mode, count in zip(modes, per_mode, strict=True):
                share = [
                    count // args.clients + (i < count % args.clients) for i in range(args.clients)
                ]
                clients += [
                    _Client(
                        server.address,
                        mode=mode,
                        streams=n,
                        marker=marker,
                        per_connection=args.streams_per_connection,
                        lines=lines,
                    )
                    for n in share
                    if n
                ]
            _await_all(lines, clients, "ready", _READY_TIMEOUT)
            opened = time.monotonic() - began
            cpu_opened = time.process_time() - cpu_before
            threads_busy = _os_threads() - len(clients)  # not this benchmark's pipe readers
            rss_busy = _rss_mb()
            print(
                f"{args.streams} streams ({'+'.join(modes)}, {len(clients)} client processes)"
                f" ready in {opened:.2f} s; server CPU {cpu_opened:.2f} s"
            )
            live = len(server.stream_statuses())
            print(
                f"server OS threads: {threads_idle} with no stream, {threads_busy} with {live}"
                f" streams ({threading.active_count() - len(clients)} Python threads);"
                f" RSS {rss_idle:.0f} MB -> {rss_busy:.0f} MB"
            )
            cpu_before = time.process_time()
            published = time.monotonic()
            cache.set_snapshot(NODE, second)
            acked = _await_all(lines, clients, "converged", _CONVERGE_TIMEOUT)
            converged = max(float(t) for t in acked.values()) - published
            cpu_converge = time.process_time() - cpu_before
            agreed = server.wait_converged(NODE, second.version, 30)
            print(
                f"one route moved: every stream ACKed it {converged:.3f} s after the publish;"
                f" server CPU {cpu_converge:.2f} s; server sees all converged: {agreed}"
            )
        finally:
            for client in clients:
                client.close()
        _drain(lines, clients, 30)
    peak = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"client CPU {sum(c.cpu for c in clients):.2f} s in total (all phases)")
    print(f"streams: {args.streams} converged in {converged:.2f} s, peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--routes", type=int, default=100)
    parser.add_argument("--xds", choices=("sotw", "delta", "both"), default="both")
    parser.add_argument("--clients", type=int, default=4, help="client processes per xDS mode")
    parser.add_argument("--streams-per-connection", type=int, default=1)
    measure(parser.parse_args())


if __name__ == "__main__":
    main()
