"""How long does one convergence check take at 1,000 and 10,000 routes? Prints timings; not a
test.

For each route count: start a stack (no extension) serving a world of that many Envoy routes,
wait until Envoy is ready, then time `converge()` on the unchanged snapshot: the first call
(every expected form computed) and the median of the next ones (the forms are kept), with the
part spent reading Envoy's admin endpoint; then the same check after one route moved. Then the
size of the dump, and whether the read before this benchmark existed (one whole dump with a
2 s admin timeout) still works.

Worlds: `many-routes` (`tests/harness_lockstep/scale.py`; `--matches-per-rule` routes per
cluster), or `translate` (`translate_1000_routes.py`: three clusters per HTTPRoute, the world
of the 33 MB dump). Envoy builds clusters at ~1 ms each here, so a world of tens of thousands
takes a minute or more to start.

Usage: .venv/bin/python benchmarks/convergence_10k.py [--routes 1000 10000]
       [--world many-routes|translate] [--matches-per-rule 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.harness_lockstep.scale

from harness.lockstep.convergence import Convergence
from harness.lockstep.envoy_state import EnvoyView
from harness.lockstep.stack import Stack, StackSettings
from harness.loopback import AdminError
from sut.gatewayapi import PathMatch, Resources, RouteMatch
from tests.harness_lockstep.scale import SERVICES, many_routes


def _moved_first_route(world: Resources) -> Resources:
    route = world.http_routes[0]
    rule = route.rules[0]
    moved = attrs.evolve(
        rule, matches=(RouteMatch(path=PathMatch("PathPrefix", "/moved")), *rule.matches[1:])
    )
    return world.with_route(attrs.evolve(route, rules=(moved,)))


def _converged(stack: Stack) -> Convergence:
    convergence = stack.converge()
    if not convergence.converged:
        raise SystemExit(convergence.describe())
    return convergence


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f} ms"


def _world(name: str, routes: int, matches_per_rule: int) -> Resources:
    if name == "translate":
        from translate_1000_routes import world  # benchmarks/ is on sys.path

        return world(routes)
    return many_routes(routes, matches_per_rule)


def measure(world_name: str, routes: int, matches_per_rule: int, repeats: int) -> None:
    world = _world(world_name, routes, matches_per_rule)
    settings = StackSettings(extension=False, initial_fetch_timeout=60.0)
    with Stack(settings) as stack:
        for service in SERVICES:
            stack.scale("default", service, 1)
        began = time.monotonic()
        stack.start(world)
        started = time.monotonic() - began
        snapshot = stack.published_snapshot()
        assert snapshot is not None and stack.envoy is not None
        print(f"{routes} routes: {snapshot.summary()}; stack started in {started:.1f} s")
        first = _converged(stack)
        checks = [_converged(stack) for _ in range(repeats)]
        print(f"  first check       {_ms(first.seconds)} (reading Envoy {_ms(first.read_seconds)})")
        print(
            f"  next checks       {_ms(statistics.median(c.seconds for c in checks))}"
            f" (reading Envoy {_ms(statistics.median(c.read_seconds for c in checks))}),"
            f" median of {repeats}"
        )
        stack.apply(_moved_first_route(world))
        moved = _converged(stack)
        print(f"  one route moved   {_ms(moved.seconds)} (reading Envoy {_ms(moved.read_seconds)})")
        admin = stack.envoy.admin
        began = time.monotonic()
        status, body = admin.request("GET", "/config_dump", {"include_eds": "true"}, timeout=300)
        assert status == 200
        print(
            f"  config_dump       {_ms(time.monotonic() - began)} to fetch {len(body) / 1e6:.1f} MB"
        )
        began = time.monotonic()
        try:
            EnvoyView.from_config_dump(admin.config_dump(include_eds=True, timeout=2.0))
        except AdminError as error:
            spent = _ms(time.monotonic() - began)
            print(f"  the old read (2 s admin timeout) fails after {spent}: {error}")
        else:
            print(f"  the old read (2 s admin timeout) works: {_ms(time.monotonic() - began)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--matches-per-rule", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--world",
        choices=["many-routes", "translate"],
        default="many-routes",
        help="translate: translate_1000_routes.py's world (three clusters per HTTPRoute)",
    )
    arguments = parser.parse_args()
    for routes in arguments.routes:
        measure(arguments.world, routes, arguments.matches_per_rule, arguments.repeats)


if __name__ == "__main__":
    main()
