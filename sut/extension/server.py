"""The reference extension server: a real gRPC server whose behaviour the harness switches live.

What it answers is decided by `behaviour.respond`; this module only carries that out and keeps
the state the harness sets: a fault per hook, the generation of the healthy change, and a record
of the calls received.

Rules of this module:
- `unavailable` on every hook stops the gRPC server (connections are refused); leaving that state
  restarts it on the same port. While at least one hook works, an `unavailable` hook answers with
  status UNAVAILABLE instead.
- The port survives restarts because a placeholder socket bound with SO_REUSEPORT (never
  listening) holds it from `start()` to `close()`; the gRPC server binds beside it. Without it,
  another process could take the port while the server is down.
- A `hang` never holds a thread for ever: it ends when the caller gives up (deadline or cancel),
  the hook's fault or the generation changes (then the new behaviour answers), the server stops, or
  `hang_limit` passes.
- State is guarded by one condition variable; starting and stopping are serialised by a second
  lock and never run while the condition's lock is held (a stopping server waits for handlers,
  and handlers need the condition to wake).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent import futures
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import grpc
from google.protobuf.message import Message

from sut.extension import behaviour
from sut.extension.generated import extension_pb2_grpc
from sut.extension.hooks import Fault, Hook

__all__ = ["ExtensionServer", "ServerTLS", "main"]


@attrs.frozen
class ServerTLS:
    """PEM certificate chain and private key the server presents."""

    certificate_chain: bytes = attrs.field(validator=attrs.validators.instance_of(bytes))
    private_key: bytes = attrs.field(repr=False, validator=attrs.validators.instance_of(bytes))


def _as_hooks(hooks: Hook | str | Iterable[Hook | str] | None) -> tuple[Hook, ...]:
    if hooks is None:
        return tuple(Hook)
    if isinstance(hooks, str):
        return (Hook(hooks),)
    return tuple(Hook(hook) for hook in hooks)


class ExtensionServer:
    """Serves the extension service on 127.0.0.1; `with ExtensionServer() as server: ...`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ServerTLS | None = None,
        generation: int = 0,
        max_workers: int = 8,
        hang_limit: float = 60.0,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._tls = tls
        self._max_workers = max_workers
        self._hang_limit = hang_limit
        self._state = threading.Condition()
        self._lifecycle = threading.Lock()
        self._faults: dict[Hook, Fault] = dict.fromkeys(Hook, Fault.HEALTHY)
        self._generation = generation
        self._epoch = 0
        """Bumped on every change that should wake a hang."""
        self._calls: dict[Hook, int] = dict.fromkeys(Hook, 0)
        self._last_requests: dict[Hook, Message | None] = dict.fromkeys(Hook)
        self._hanging: dict[Hook, int] = dict.fromkeys(Hook, 0)
        self._stopping = False
        self._placeholder: socket.socket | None = None
        self._port = 0
        self._server: Any = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._starts = 0

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ExtensionServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Reserve the port and start serving (unless every hook is already `unavailable`)."""
        with self._lifecycle:
            if self._placeholder is not None:
                raise RuntimeError("ExtensionServer already started")
            placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                placeholder.bind((self._host, self._requested_port))
            except OSError:
                placeholder.close()
                raise
            self._placeholder = placeholder
            self._port = placeholder.getsockname()[1]
            if not self._all_unavailable():
                self._start_grpc()

    def close(self) -> None:
        """Stop serving, wake every hang, join the worker threads and release the port."""
        with self._lifecycle:
            self._stop_grpc()
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        """host:port, valid from `start()` on, across restarts."""
        return f"{self._host}:{self._port}"

    @property
    def serving(self) -> bool:
        return self._server is not None

    @property
    def starts(self) -> int:
        """How many times the gRPC server was started (restarts after `unavailable` included)."""
        return self._starts

    # --- what the harness sets ------------------------------------------------------------

    def set_fault(
        self, fault: Fault | str, hooks: Hook | str | Iterable[Hook | str] | None = None
    ) -> None:
        """Switch the fault of the given hooks (default: all) and stop/restart as needed."""
        fault = Fault(fault)
        targets = _as_hooks(hooks)
        with self._lifecycle:
            with self._state:
                for hook in targets:
                    self._faults[hook] = fault
                self._epoch += 1
                self._state.notify_all()
            if self._placeholder is None:
                return
            if self._all_unavailable():
                self._stop_grpc()
            elif self._server is None:
                self._start_grpc()

    def fault(self, hook: Hook | str) -> Fault:
        with self._state:
            return self._faults[Hook(hook)]

    def set_generation(self, generation: int) -> None:
        """The N in `gen-<N>` of the healthy change; later replies use it."""
        if not isinstance(generation, int) or generation < 0:
            raise ValueError(f"generation must be a non-negative int, got {generation!r}")
        with self._state:
            self._generation = generation
            self._epoch += 1
            self._state.notify_all()

    @property
    def generation(self) -> int:
        with self._state:
            return self._generation

    # --- what the harness reads -----------------------------------------------------------

    def calls(self, hook: Hook | str) -> int:
        """Requests received for this hook, whatever the answer."""
        with self._state:
            return self._calls[Hook(hook)]

    def last_request(self, hook: Hook | str) -> Message | None:
        """A copy of the last request received for this hook."""
        with self._state:
            request = self._last_requests[Hook(hook)]
        if request is None:
            return None
        duplicate = type(request)()
        duplicate.CopyFrom(request)
        return duplicate

    def hanging(self, hook: Hook | str) -> int:
        """Handlers of this hook waiting inside a `hang` right now."""
        with self._state:
            return self._hanging[Hook(hook)]

    def wait_for_calls(self, hook: Hook | str, count: int, timeout: float) -> bool:
        """Wait until `count` requests for the hook have arrived; False on timeout."""
        key = Hook(hook)
        with self._state:
            return self._state.wait_for(lambda: self._calls[key] >= count, timeout)

    def wait_for_hanging(self, hook: Hook | str, count: int, timeout: float) -> bool:
        """Wait until `count` handlers of the hook are inside a `hang`; False on timeout."""
        key = Hook(hook)
        with self._state:
            return self._state.wait_for(lambda: self._hanging[key] >= count, timeout)

    # --- handling one request (called by the servicer) ------------------------------------

    def _handle(self, hook: Hook, request: Message, context: Any) -> Message:
        with self._state:
            self._calls[hook] += 1
            self._last_requests[hook] = request
            self._state.notify_all()
        while True:
            with self._state:
                fault, generation, epoch = self._faults[hook], self._generation, self._epoch
            outcome = behaviour.respond(hook, fault, request, generation)
            if isinstance(outcome, behaviour.Reply):
                return outcome.response
            if isinstance(outcome, behaviour.Abort):
                context.abort(grpc.StatusCode[outcome.code], outcome.details)
                raise AssertionError("context.abort returned")  # it always raises
            if not self._hang(hook, epoch, context):
                # The caller is gone, the server is stopping or the hang limit passed.
                context.abort(grpc.StatusCode.UNAVAILABLE, f"routeproof extension: {hook} hung")
                raise AssertionError("context.abort returned")

    def _hang(self, hook: Hook, epoch: int, context: Any) -> bool:
        """Wait while nothing changes; True if a change of fault or generation ended the wait."""
        finished = threading.Event()

        def on_termination() -> None:
            finished.set()
            with self._state:
                self._state.notify_all()

        if not context.add_callback(on_termination):
            return False  # the RPC has already terminated
        deadline = time.monotonic() + self._hang_limit
        with self._state:
            self._hanging[hook] += 1
            self._state.notify_all()
            try:
                while True:
                    if finished.is_set() or self._stopping:
                        return False
                    if self._epoch != epoch:
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._state.wait(remaining)
            finally:
                self._hanging[hook] -= 1

    # --- internals ------------------------------------------------------------------------

    def _all_unavailable(self) -> bool:
        with self._state:
            return all(fault is Fault.UNAVAILABLE for fault in self._faults.values())

    def _start_grpc(self) -> None:
        """Start a fresh gRPC server on the reserved port (a stopped one cannot be restarted)."""
        executor = futures.ThreadPoolExecutor(
            max_workers=self._max_workers, thread_name_prefix="routeproof-extension"
        )
        server = grpc.server(executor, options=[("grpc.so_reuseport", 1)])
        extension_pb2_grpc.add_EnvoyGatewayExtensionServicer_to_server(_Servicer(self), server)
        target = f"{self._host}:{self._port}"
        try:
            if self._tls is None:
                bound = server.add_insecure_port(target)
            else:
                credentials = grpc.ssl_server_credentials(
                    [(self._tls.private_key, self._tls.certificate_chain)]
                )
                bound = server.add_secure_port(target, credentials)
        except RuntimeError as error:
            executor.shutdown(wait=False)
            raise RuntimeError(f"extension server cannot bind {target}: {error}") from error
        if bound != self._port:
            executor.shutdown(wait=False)
            raise RuntimeError(f"extension server bound {bound}, expected {self._port}")
        server.start()
        self._server, self._executor = server, executor
        self._starts += 1

    def _stop_grpc(self) -> None:
        server, executor = self._server, self._executor
        if server is None:
            return
        with self._state:
            self._stopping = True
            self._epoch += 1
            self._state.notify_all()
        try:
            server.stop(grace=None).wait()
            if executor is not None:
                executor.shutdown(wait=True)
        finally:
            self._server, self._executor = None, None
            with self._state:
                self._stopping = False


class _Servicer(extension_pb2_grpc.EnvoyGatewayExtensionServicer):
    """Thin adapter: every rpc goes to `ExtensionServer.handle`."""

    def __init__(self, server: ExtensionServer) -> None:
        self._server = server

    def PostRouteModify(self, request: Any, context: Any) -> Any:
        return self._server._handle(Hook.POST_ROUTE_MODIFY, request, context)

    def PostVirtualHostModify(self, request: Any, context: Any) -> Any:
        return self._server._handle(Hook.POST_VIRTUAL_HOST_MODIFY, request, context)

    def PostHTTPListenerModify(self, request: Any, context: Any) -> Any:
        return self._server._handle(Hook.POST_HTTP_LISTENER_MODIFY, request, context)

    def PostTranslateModify(self, request: Any, context: Any) -> Any:
        return self._server._handle(Hook.POST_TRANSLATE_MODIFY, request, context)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sut.extension.server --port 0`: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m sut.extension.server",
        description="Run routeproof's reference extension server (healthy on every hook).",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--generation", type=int, default=0, help="N of the gen-<N> marker")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key (with --tls-cert)")
    parser.add_argument(
        "--fault",
        choices=[fault.value for fault in Fault],
        default=Fault.HEALTHY.value,
        help="fault of every hook at start",
    )
    arguments = parser.parse_args(argv)
    if (arguments.tls_cert is None) != (arguments.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = None
    if arguments.tls_cert is not None:
        try:
            tls = ServerTLS(arguments.tls_cert.read_bytes(), arguments.tls_key.read_bytes())
        except OSError as error:
            print(f"extension server: {error}", file=sys.stderr)
            return 2
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = ExtensionServer(port=arguments.port, tls=tls, generation=arguments.generation)
    server.set_fault(arguments.fault)
    try:
        server.start()
    except (OSError, RuntimeError) as error:
        print(f"extension server: {error}", file=sys.stderr)
        return 2
    try:
        print(server.address, flush=True)
        stop.wait()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
