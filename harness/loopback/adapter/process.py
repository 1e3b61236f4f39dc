"""An adapter as a child process: start it, learn its addresses from its first line, stop it.

An adapter announces itself with one JSON line on stdout once it serves,
`{"adapter": "HOST:PORT", "ads": "HOST:PORT"}`; the reference adapter does, and a foreign one
can follow the same convention (or be started by hand and given to the harness by address).
"""

from __future__ import annotations

import json
import os
import select
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import IO

from harness.loopback import processes
from harness.loopback.adapter.client import AdapterError

__all__ = ["AdapterProcess", "reference_command"]

_LINE_LIMIT = 64 * 1024


def reference_command(
    mutants: Iterable[str] = (), *, port: int = 0, xds_port: int = 0
) -> list[str]:
    """The command line that starts routeproof's reference adapter."""
    command = [sys.executable, "-m", "harness.loopback.adapter.reference"]
    command += ["--port", str(port), "--xds-port", str(xds_port)]
    for name in mutants:
        command += ["--mutant", name]
    return command


class AdapterProcess:
    """A started adapter process; `stop` (or leaving the `with`) always ends and reaps it."""

    def __init__(
        self, process: subprocess.Popen[bytes], stderr: IO[bytes], adapter: str, ads: str
    ) -> None:
        self.process = process
        self._stderr = stderr
        self._said = ""
        self.adapter_address = adapter
        self.ads_address = ads

    @classmethod
    def start(cls, command: Sequence[str], *, timeout: float = 10.0) -> AdapterProcess:
        """Start `command` and wait (up to `timeout`) for its announcement line."""
        # Kept open for the process's life (a pipe nobody reads could fill and block it).
        stderr = tempfile.TemporaryFile(prefix="routeproof-adapter-")  # noqa: SIM115
        try:
            process = processes.spawn(command, stdout=subprocess.PIPE, stderr=stderr)
        except BaseException:
            stderr.close()
            raise
        try:
            adapter, ads = _announcement(process, timeout, shlex.join(command), stderr)
        except BaseException:
            processes.stop(process)
            if process.stdout is not None:
                process.stdout.close()
            stderr.close()
            raise
        return cls(process, stderr, adapter, ads)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (negative: killed by a signal)."""
        try:
            return processes.stop(self.process, timeout)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            if not self._stderr.closed:
                self._said = self.stderr_text()
                self._stderr.close()

    def stderr_text(self) -> str:
        """What the adapter wrote on stderr so far (all of it, once stopped)."""
        if self._stderr.closed:
            return self._said
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def __enter__(self) -> AdapterProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _announcement(
    process: subprocess.Popen[bytes], timeout: float, command: str, stderr: IO[bytes]
) -> tuple[str, str]:
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    deadline = time.monotonic() + timeout
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([descriptor], [], [], max(remaining, 0.0))
        if not readable:
            raise AdapterError("start", command, "TIMEOUT", f"no announcement in {timeout} s")
        chunk = os.read(descriptor, 4096)
        if not chunk or len(received) > _LINE_LIMIT:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            stderr.seek(0)
            said = stderr.read().decode(errors="replace").strip()[-2000:]
            raise AdapterError("start", command, f"EXITED {process.returncode}", said)
        received += chunk
    line = received.split(b"\n", 1)[0]
    try:
        announced = json.loads(line)
        return str(announced["adapter"]), str(announced["ads"])
    except (ValueError, KeyError, TypeError):
        raise AdapterError(
            "start", command, "BAD_ANNOUNCEMENT", f"expected a JSON line, got {line[:200]!r}"
        ) from None
