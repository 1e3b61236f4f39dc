"""Envoy's temp directories, and the ones a killed run left behind.

A directory is removed by whoever stops its Envoy. A harness killed with SIGKILL runs no Python
code, so its Envoys die with it (`processes`: PR_SET_PDEATHSIG) but their directories stay. Each
directory therefore names its owner, a pid and that process's start time (a pid alone may have
been reused), and the first directory a process makes sweeps away those whose owner is gone.
Directories of live owners, concurrent workers included, are never touched; one with no owner
file yet is being made, unless it is older than `_UNOWNED_GRACE`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["ENVOY_PREFIX", "make_workdir", "owner_alive", "sweep_stale"]

ENVOY_PREFIX = "routeproof-envoy-"
_OWNER = "owner"
_UNOWNED_GRACE = 300.0
"""Seconds after which a directory that never got an owner file is taken as abandoned."""

_swept: set[str] = set()
_swept_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None
    if no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _owner_line(pid: int) -> str:
    return f"{pid} {_start_time(pid) or ''}\n"


def owner_alive(directory: Path) -> bool | None:
    """True if the directory's owner still runs, False if it is gone, None if it names none."""
    try:
        text = (directory / _OWNER).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    if not text or not text[0].isdigit():
        return None
    pid = int(text[0])
    started = _start_time(pid)
    if started is None:
        return False
    return len(text) < 2 or text[1] == started


def sweep_stale(prefix: str = ENVOY_PREFIX, root: Path | None = None) -> list[Path]:
    """Remove the `prefix*` directories under `root` (the temp dir) whose owner is gone;
    return them."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    now = time.time()
    for directory in root.glob(f"{prefix}*"):
        if not directory.is_dir() or directory.is_symlink():
            continue
        alive = owner_alive(directory)
        if alive is None:
            try:
                abandoned = now - directory.stat().st_mtime > _UNOWNED_GRACE
            except OSError:
                continue
            if not abandoned:
                continue
        elif alive:
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def make_workdir(prefix: str = ENVOY_PREFIX, root: Path | None = None) -> Path:
    """A new private directory owned by this process; the first one of each prefix and root
    sweeps away those of dead owners."""
    key = f"{root}:{prefix}"
    with _swept_lock:
        first = key not in _swept
        _swept.add(key)
    if first:
        sweep_stale(prefix, root)
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    (directory / _OWNER).write_text(_owner_line(os.getpid()))
    return directory
