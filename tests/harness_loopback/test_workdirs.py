"""Temp directories of dead owners are swept, those of live owners (other workers) never."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harness.loopback.workdirs import make_workdir, owner_alive, sweep_stale

PREFIX = "routeproof-test-"


def test_a_sigkilled_owners_directory_is_swept_by_the_next_run(tmp_path):
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path;"
            "from harness.loopback.workdirs import make_workdir;"
            f"print(make_workdir({PREFIX!r}, Path({str(tmp_path)!r})), flush=True);"
            "os.kill(os.getpid(), 9)",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert child.returncode == -9
    left = tmp_path / child.stdout.strip().rsplit("/", 1)[-1]
    assert left.is_dir() and owner_alive(left) is False

    mine = make_workdir(PREFIX, tmp_path)  # the first of this process sweeps
    assert not left.exists()
    assert mine.is_dir() and owner_alive(mine) is True


def test_a_live_owners_directory_and_a_fresh_unowned_one_are_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f"{PREFIX}theirs"
        theirs.mkdir()
        stat = Path(f"/proc/{sleeper.pid}/stat").read_text()
        start = stat.rsplit(")", 1)[1].split()[19]
        (theirs / "owner").write_text(f"{sleeper.pid} {start}\n")
        being_made = tmp_path / f"{PREFIX}being-made"
        being_made.mkdir()
        reused_pid = tmp_path / f"{PREFIX}reused"
        reused_pid.mkdir()
        (reused_pid / "owner").write_text(f"{os.getpid()} 1\n")  # live pid, other start time
        abandoned = tmp_path / f"{PREFIX}abandoned"
        abandoned.mkdir()
        old = time.time() - 3600
        os.utime(abandoned, (old, old))

        removed = set(sweep_stale(PREFIX, tmp_path))

        assert removed == {reused_pid, abandoned}
        assert theirs.is_dir() and being_made.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
