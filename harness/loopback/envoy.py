"""One real Envoy process for the harness.

Rules of this module:
- Every Envoy runs in its own temporary directory (bootstrap, logs, admin address file),
  removed by `stop()`; the log tail is kept in memory after that for failure reports.
- The admin endpoint is on 127.0.0.1 port 0; its address is read from `--admin-address-path`.
- Flags follow ENVOY_FACTS.md: no hot restart (a second Envoy would fight for the base id),
  one worker, no drain time (drains delay RDS unsubscribes and hide whole bug classes),
  `config:debug` so xDS stream failures reach the log.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from harness.loopback import processes
from harness.loopback.admin import EnvoyAdmin
from harness.loopback.bootstrap import EnvoyBootstrap, envoy_binary
from harness.loopback.errors import AdminError, EnvoyError, EnvoyExitedError, EnvoyTimeoutError

__all__ = ["EnvoyProcess"]


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 256 * lines))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class EnvoyProcess:
    """One real Envoy. `start()` returns once the admin endpoint answers; `wait_ready()` waits
    for /ready LIVE (which, with ADS, needs a control plane answering LDS and CDS)."""

    def __init__(
        self,
        bootstrap: EnvoyBootstrap,
        *,
        log_level: str = "info",
        component_log_level: str = "config:debug,upstream:info",
        extra_args: tuple[str, ...] = (),
        envoy_path: Path | None = None,
        admin_timeout: float = 2.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.log_level = log_level
        self.component_log_level = component_log_level
        self.extra_args = tuple(extra_args)
        self._envoy_path = envoy_path
        self._admin_timeout = admin_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._admin: EnvoyAdmin | None = None
        self._final_log: list[str] = []
        self._returncode: int | None = None
        self.started_at: float | None = None
        """time.monotonic() just before the process was spawned."""

    # paths in the working directory
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise EnvoyError("Envoy is not running")
        return self._workdir

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / "bootstrap.json"

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def _stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def _admin_address_path(self) -> Path:
        return self.workdir / "admin-address"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise EnvoyError("Envoy is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code of the last process (None while it runs or if never started)."""
        if self._process is not None:
            return self._process.poll()
        return self._returncode

    @property
    def admin(self) -> EnvoyAdmin:
        if self._admin is None:
            raise EnvoyError("Envoy is not running (or its admin endpoint is not up yet)")
        return self._admin

    def command(self) -> list[str]:
        return [
            str(self._envoy_path or envoy_binary()),
            "-c",
            str(self.bootstrap_path),
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "--drain-time-s",
            "0",
            "--drain-strategy",
            "immediate",
            "--file-flush-interval-msec",
            "100",
            "--admin-address-path",
            str(self._admin_address_path),
            "--log-path",
            str(self.log_path),
            "-l",
            self.log_level,
            "--component-log-level",
            self.component_log_level,
            *self.extra_args,
        ]

    def start(self, timeout: float = 10.0) -> EnvoyProcess:
        """Spawn Envoy and wait for its admin endpoint. Raises EnvoyError (with the log tail)."""
        if self._process is not None:
            raise EnvoyError("Envoy already started; stop() or restart() it")
        self._workdir = Path(tempfile.mkdtemp(prefix="routeproof-envoy-"))
        self._final_log = []
        self.bootstrap_path.write_text(self.bootstrap.to_json())
        stderr = self._stderr_path.open("wb")
        try:
            self.started_at = time.monotonic()
            self._process = processes.spawn(
                self.command(), stdout=stderr, stderr=stderr, cwd=self._workdir
            )
        except BaseException:
            self._cleanup_workdir()
            raise
        finally:
            stderr.close()
        try:
            self._wait_admin(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_admin(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        address = ""
        for pause in _pauses(deadline, longest=0.002):  # a file read: poll closely
            self._raise_if_exited("while starting")
            with contextlib.suppress(OSError):
                address = self._admin_address_path.read_text().strip()
            if address:
                break
            if pause is None:
                raise EnvoyTimeoutError(
                    f"Envoy wrote no admin address within {timeout:.1f}s\n{self.log_tail()}"
                )
            time.sleep(pause)
        host, _, port = address.rpartition(":")
        admin = EnvoyAdmin(host, int(port), timeout=self._admin_timeout)
        for pause in _pauses(deadline, longest=0.002):
            self._raise_if_exited("while starting")
            try:
                admin.request("GET", "/ready")
            except AdminError:
                if pause is None:
                    raise EnvoyTimeoutError(
                        f"Envoy admin at {address} did not answer within {timeout:.1f}s\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(pause)
            else:
                break
        self._admin = admin

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Poll /ready until LIVE; EnvoyTimeoutError / EnvoyExitedError with the log tail."""
        deadline = time.monotonic() + timeout
        state = "unknown"
        for pause in _pauses(deadline, longest=0.005):
            self._raise_if_exited("before becoming ready")
            with contextlib.suppress(AdminError):
                state = self.admin.ready_state()
                if state == "LIVE":
                    return
            if pause is None:
                break
            time.sleep(pause)
        raise EnvoyTimeoutError(
            f"Envoy not ready after {timeout:.1f}s (state {state})\n{self.log_tail()}"
        )

    def _raise_if_exited(self, when: str) -> None:
        if self._process is None:
            raise EnvoyExitedError("Envoy is not running")
        code = self._process.poll()
        if code is not None:
            raise EnvoyExitedError(f"Envoy exited with code {code} {when}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of Envoy's log (and of its stderr, where early failures land)."""
        if self._workdir is None:
            return "\n".join(self._final_log[-lines:])
        collected = _tail(self._stderr_path, lines) + _tail(self.log_path, lines)
        return "\n".join(collected[-lines:])

    def log_size(self) -> int:
        """Bytes of log flushed so far: remember it, then `log_text(since=...)` shows one step."""
        try:
            return self.log_path.stat().st_size
        except (OSError, EnvoyError):
            return 0

    def log_text(self, since: int = 0) -> str:
        """The log from byte offset `since` (only while running; flushed every 100 ms)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(since)
                return handle.read().decode(errors="replace")
        except (OSError, EnvoyError):
            return ""

    def wait_for_log(self, text: str, timeout: float) -> bool:
        """Wait until `text` appears in the log (flushed every 100 ms); False on timeout."""
        deadline = time.monotonic() + timeout
        for pause in _pauses(deadline):
            if text in self.log_text():
                return True
            if pause is None:
                return False
            time.sleep(max(pause, 0.01))
        return False

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, SIGKILL after `timeout`, reap, remove the working directory. Idempotent."""
        process, self._process = self._process, None
        self._admin = None
        if process is not None:
            self._returncode = processes.stop(process, timeout=timeout)
        if self._workdir is not None:
            self._final_log = self.log_tail(200).splitlines()
            self._cleanup_workdir()
        return self._returncode

    def _cleanup_workdir(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def restart(self, timeout: float = 10.0) -> EnvoyProcess:
        """Stop this Envoy and start a new process from the same bootstrap (new admin port)."""
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self._process is not None else "stopped"
        return f"EnvoyProcess({self.bootstrap.node_id}, {state})"


def _pauses(deadline: float, longest: float = 0.01) -> Iterator[float | None]:
    """Polling pauses: 1 ms growing to `longest`, then a final None once past the deadline."""
    pause = 0.001
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            yield None
            return
        yield min(pause, remaining)
        pause = min(pause * 1.5, longest)
