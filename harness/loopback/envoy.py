"""One real Envoy process for the harness.

Rules of this module:
- Every Envoy runs in its own temporary directory (bootstrap, logs, admin address file),
  removed by `stop()`; the log tail is kept in memory after that for failure reports.
- The admin endpoint is on 127.0.0.1 port 0; its address is read from `--admin-address-path`.
- Flags follow ENVOY_FACTS.md: no hot restart (a second Envoy would fight for the base id),
  one worker, no drain time (drains delay RDS unsubscribes and hide whole bug classes),
  `config:debug` so xDS stream failures reach the log.
- A `ParkedEnvoy` is a process launched ahead of need whose bootstrap path is a FIFO nobody
  has written yet: Envoy loads and initialises itself, then blocks opening its bootstrap, before
  its server exists (no admin endpoint, listener, xDS connection, subscription or timer).
  `EnvoyProcess.start(parked=...)` writes the bootstrap into the FIFO, so everything Envoy does
  as a server starts then, as in a process spawned then. The wait shows only in the server's
  uptime, which counts from exec.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import attrs

from harness.loopback import processes
from harness.loopback.admin import EnvoyAdmin
from harness.loopback.bootstrap import EnvoyBootstrap, envoy_binary
from harness.loopback.errors import AdminError, EnvoyError, EnvoyExitedError, EnvoyTimeoutError
from harness.loopback.workdirs import make_workdir

__all__ = ["EnvoyProcess", "LaunchOptions", "ParkedEnvoy"]


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


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class LaunchOptions:
    """The part of Envoy's command line that is the same for every process of a run (the rest
    names files in the process's own directory); a parked Envoy serves only equal options."""

    log_level: str = "info"
    component_log_level: str = "config:debug,upstream:info"
    extra_args: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    envoy_path: Path | None = None

    def command(self, workdir: Path) -> list[str]:
        return [
            str(self.envoy_path or envoy_binary()),
            "-c",
            str(workdir / _BOOTSTRAP),
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
            str(workdir / _ADMIN_ADDRESS),
            "--log-path",
            str(workdir / _LOG),
            "-l",
            self.log_level,
            "--component-log-level",
            self.component_log_level,
            *self.extra_args,
        ]


_BOOTSTRAP = "bootstrap.json"
_ADMIN_ADDRESS = "admin-address"
_LOG = "envoy.log"
_STDERR = "stderr.log"


def _spawn(options: LaunchOptions, workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / _STDERR).open("wb") as stderr:
        return processes.spawn(options.command(workdir), stdout=stderr, stderr=stderr, cwd=workdir)


class ParkedEnvoy:
    """An Envoy process waiting for its bootstrap (see the rules above). Hand it to exactly one
    `EnvoyProcess.start(parked=...)`, or `stop()` it."""

    def __init__(self, options: LaunchOptions | None = None) -> None:
        self.options = options or LaunchOptions()
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self.launched_at: float | None = None
        """time.monotonic() just before the process was spawned."""

    def launch(self) -> ParkedEnvoy:
        """Spawn Envoy now; it parks at its bootstrap FIFO without anyone waiting for it."""
        if self.launched_at is not None:
            raise EnvoyError("a parked Envoy is launched once")
        workdir = make_workdir()
        try:
            os.mkfifo(workdir / _BOOTSTRAP, 0o600)
            self.launched_at = time.monotonic()
            self._process = _spawn(self.options, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self._workdir = workdir
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise EnvoyError("no parked Envoy process")
        return self._process.pid

    @property
    def workdir(self) -> Path | None:
        """Its directory (bootstrap FIFO, logs) until stopped or handed over."""
        return self._workdir

    @property
    def running(self) -> bool:
        """Launched, still alive, and not handed over yet."""
        return self._process is not None and self._process.poll() is None

    def age(self) -> float:
        """Seconds since launch (0 before)."""
        return 0.0 if self.launched_at is None else time.monotonic() - self.launched_at

    def hand_over(self) -> tuple[subprocess.Popen[bytes], Path]:
        """The process and its directory, now the caller's to stop and remove."""
        process, workdir = self._process, self._workdir
        if process is None or workdir is None:
            raise EnvoyError("this parked Envoy was stopped or handed over already")
        self._process, self._workdir = None, None
        return process, workdir

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process (it dies of SIGTERM: it installs no handler before its bootstrap)
        and remove its directory. Idempotent; does nothing once handed over."""
        process, self._process = self._process, None
        workdir, self._workdir = self._workdir, None
        if process is not None:
            processes.stop(process, timeout=timeout)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self._process is not None else "not parked"
        return f"ParkedEnvoy({state}, age {self.age():.2f}s)"


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
        self.options = LaunchOptions(log_level, component_log_level, extra_args, envoy_path)
        self._admin_timeout = admin_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._admin: EnvoyAdmin | None = None
        self._final_log: list[str] = []
        self._returncode: int | None = None
        self.started_at: float | None = None
        """time.monotonic() just before Envoy got its bootstrap: when spawned, or when handed
        it if it was parked (its server, and every clock of it, starts then)."""

    # paths in the working directory
    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise EnvoyError("Envoy is not running")
        return self._workdir

    @property
    def bootstrap_path(self) -> Path:
        return self.workdir / _BOOTSTRAP

    @property
    def log_path(self) -> Path:
        return self.workdir / _LOG

    @property
    def _stderr_path(self) -> Path:
        return self.workdir / _STDERR

    @property
    def _admin_address_path(self) -> Path:
        return self.workdir / _ADMIN_ADDRESS

    @property
    def log_level(self) -> str:
        return self.options.log_level

    @property
    def component_log_level(self) -> str:
        return self.options.component_log_level

    @property
    def extra_args(self) -> tuple[str, ...]:
        return self.options.extra_args

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
        return self.options.command(self.workdir)

    def start(self, timeout: float = 10.0, *, parked: ParkedEnvoy | None = None) -> EnvoyProcess:
        """Spawn Envoy, or hand the bootstrap to `parked` (launched with equal options), and wait
        for its admin endpoint. Raises EnvoyError (with the log tail); a failed start stops the
        process, the parked one included."""
        if self._process is not None:
            if parked is not None:
                parked.stop()
            raise EnvoyError("Envoy already started; stop() or restart() it")
        if parked is not None and parked.options != self.options:
            parked.stop()
            raise EnvoyError(f"parked Envoy has {parked.options}, this one needs {self.options}")
        self._final_log = []
        deadline = time.monotonic() + timeout
        if parked is None:
            self._workdir = make_workdir()
            try:
                self.bootstrap_path.write_text(self.bootstrap.to_json())
                self.started_at = time.monotonic()
                self._process = _spawn(self.options, self._workdir)
            except BaseException:
                self._cleanup_workdir()
                raise
        else:
            self._process, self._workdir = parked.hand_over()
            self.started_at = time.monotonic()
        try:
            if parked is not None:
                self._hand_bootstrap(deadline)
            self._wait_admin(max(deadline - time.monotonic(), 0.0))
        except BaseException:
            self.stop()
            raise
        return self

    def _hand_bootstrap(self, deadline: float) -> None:
        """Write the bootstrap into the FIFO a parked Envoy reads, once it has opened it; then
        leave a plain file in its place, as a fresh start would."""
        fifo = self.bootstrap_path
        text = self.bootstrap.to_json()
        descriptor = -1
        for pause in _pauses(deadline, longest=0.002):
            self._raise_if_exited("while parked")
            try:
                # Non-blocking: succeeds only once Envoy holds the FIFO open for reading.
                descriptor = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
            else:
                break
            if pause is None:
                raise EnvoyTimeoutError(
                    f"parked Envoy never opened its bootstrap\n{self.log_tail()}"
                )
            time.sleep(pause)
        os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "wb") as pipe:
            pipe.write(text.encode())
        # Envoy reads the bootstrap once; it holds the FIFO open, so the name may be reused.
        replacement = fifo.with_name(fifo.name + ".tmp")
        replacement.write_text(text)
        replacement.replace(fifo)

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
