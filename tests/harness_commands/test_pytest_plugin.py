"""The pytest plugin, as another project uses it: `examples/gateway-suite` runs the machine with
one test, and a failing search fails its test with the counterexample and a replay command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gateway-suite"


def _pytest(directory: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.pop("HYPOTHESIS_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_example_project_runs_the_machine_with_its_own_profile(tmp_path):
    report = tmp_path / "junit.xml"
    done = _pytest(EXAMPLE, f"--junitxml={report}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout  # the machine, then with the project's own extensions
    assert 'tests="2"' in report.read_text()


def test_a_counterexample_fails_the_users_test_with_a_replay_command(tmp_path):
    (tmp_path / "test_mutant.py").write_text(
        "from hypothesis import settings\n"
        "settings.register_profile('t', max_examples=20, stateful_step_count=6, deadline=None)\n"
        "settings.load_profile('t')\n"
        "def test_mutant(routeproof):\n"
        "    routeproof.check(xds='delta', mutants=['nonce-from-version'], seed=1)\n"
    )
    done = _pytest(tmp_path, f"--routeproof-runs={tmp_path / 'runs'}")
    assert done.returncode == 1
    assert "counterexample (shrunk):" in done.stdout
    assert "protocol:nonce" in done.stdout
    assert "python -m harness replay" in done.stdout and "Traceback" not in done.stdout
    assert list((tmp_path / "runs").glob("counterexample-delta-*.json"))


def test_an_unknown_setting_is_a_clear_error(tmp_path):
    (tmp_path / "test_typo.py").write_text(
        "def test_typo(routeproof):\n    routeproof.check(proxys=2)\n"
    )
    done = _pytest(tmp_path)
    assert done.returncode == 1 and "unknown routeproof settings: proxys" in done.stdout
