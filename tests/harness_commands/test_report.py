"""`check --json FILE`: a passing run and a failing one, as a CI system would read them."""

from __future__ import annotations

import json

import pytest

from harness.commands.cli import main
from harness.lockstep.replay_files import decode_operations

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def _check(tmp_path, *extra: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    arguments = ["check", "--xds", "delta", "--max-examples", "2", "--seed", "1"]
    arguments += ["--workers", "1", "--database", "none", "--json", str(report), *extra]
    code = main(arguments)
    return code, json.loads(report.read_text())


def test_a_passing_run_reports_each_variant_and_its_counts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, report = _check(tmp_path)
    assert code == 0 and report["schema"] == "routeproof.check/v1" and report["passed"] is True
    [variant] = report["variants"]
    assert variant["variant"] == "delta" and variant["passed"] is True
    assert variant["examples"] >= 2 and variant["steps"] == sum(variant["operations"].values())
    assert report["command"]["seed"] == 1 and "counterexample" not in variant


def test_a_counterexample_is_reported_with_its_steps_violations_and_replay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, report = _check(tmp_path, "--mutant", "nonce-from-version")
    assert code == 1 and report["passed"] is False
    counterexample = report["variants"][0]["counterexample"]
    assert {v["invariant"] for v in counterexample["violations"]} == {"protocol:nonce"}
    assert (tmp_path / counterexample["replay"]).exists()
    for step in counterexample["steps"]:
        decoded = decode_operations(json.dumps(step["encoded"]))
        assert [operation.describe() for operation in decoded] == step["operations"]
