"""`scenario seed` tells one story: each route's answer is the one the invariants judged, and the
decoded exchange shows the re-subscription the seed bug leaves unanswered."""

from __future__ import annotations

import re

import pytest

from harness.commands.cli import main

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def test_the_unmutated_control_plane_resolves_every_route(capsys):
    assert main(["scenario", "seed"]) == 0
    out = capsys.readouterr().out
    assert "scenario seed: ok" in out and "WRONG" not in out


def test_the_seed_bug_tells_one_consistent_story(capsys):
    assert main(["scenario", "seed", "--mutant", "seed", "--failure-policy", "inline-error"]) == 1
    out = capsys.readouterr().out
    got = re.search(r"route-2 https://b\.example\.com:8443/: .*\n\s+got (\d+) -> WRONG", out)
    assert got is not None, out
    judged = re.search(r"https://b\.example\.com:8443/: expected [^;]*; Envoy answered (\d+)", out)
    assert judged is not None and judged.group(1) == got.group(1)
    exchange = out[out.index("xDS exchange of step 4") :]
    assert re.search(r"envoy -> server RDS subscribe=\[[^]]*default/gw/https-b", exchange)
    assert "protocol:answered" in out and "'default/gw/https-b'" in out


def test_on_a_fleet_the_replica_that_kept_its_stream_is_the_one_the_seed_bug_breaks(capsys):
    arguments = ["scenario", "seed", "--proxies", "2", "--mutant", "seed"]
    assert main([*arguments, "--failure-policy", "inline-error"]) == 1
    out = capsys.readouterr().out
    assert "cut the xDS connection of proxy 1" in out
    assert re.search(r"route-2 \(proxy 0\) .*\n\s+got 404 -> WRONG", out)
    assert re.search(r"route-2 \(proxy 1\) .*\n\s+got 200 from svc-b-0.* -> ok", out)
    assert "invariant 'routing' violated: proxy 0:" in out
    assert "routing' violated: proxy 1" not in out
