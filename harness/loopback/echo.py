"""Echo backends: every answer names the pod that gave it and the request that arrived.

The JSON follows the Gateway API conformance echo server ("echo-basic"): `path` (with query),
`host`, `method`, `proto`, `headers` (canonical name -> values, Host excluded), `namespace`,
`ingress`, `service`, `pod`. Two request controls, as in that server: `X-Echo-Set-Header:
Name:value,Name2:value2` adds response headers, and the path `/status/NNN` picks the status
(unlike echo-basic, the body is still the echo JSON, so even a 503 says who answered).

A backend may carry a gRPC sibling (`grpc=True`): a `GrpcEchoPod` under the same pod name on a
port of its own, started and stopped with it, for proxyless gRPC clients.

A backend is a ThreadingHTTPServer on 127.0.0.1 port 0 with Nagle off (Python's default costs
~23 ms per response). Stopping a backend also shuts its open connections down: a stopped pod
must not keep answering on connections Envoy pooled before it was removed.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import sys
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import attrs

from harness.loopback.grpc_echo import GrpcEchoPod

__all__ = ["EchoBackend", "EchoFleet", "EchoReply", "canonical_header_name"]

_STATUS_PATH = re.compile(r"^/status/(\d{3})$")
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def canonical_header_name(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey (echo-basic's header names): `x-echo-set-header` ->
    `X-Echo-Set-Header`; names that are not HTTP tokens stay as they are."""
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _freeze_headers(
    value: Any,
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    items = value.items() if isinstance(value, dict) else value
    return tuple(sorted((str(name), tuple(str(v) for v in values)) for name, values in items))


@attrs.frozen
class EchoReply:
    """The echo JSON as a value: who answered and what arrived."""

    path: str
    host: str
    method: str
    proto: str
    headers: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(converter=_freeze_headers)
    namespace: str
    ingress: str
    service: str
    pod: str

    @classmethod
    def from_json(cls, body: bytes | str) -> EchoReply:
        """Parse an echo body; ValueError if it is not one (e.g. an Envoy-generated reply)."""
        try:
            document = json.loads(body)
            return cls(
                path=document["path"],
                host=document["host"],
                method=document["method"],
                proto=document["proto"],
                headers=document["headers"] or {},
                namespace=document["namespace"],
                ingress=document["ingress"],
                service=document["service"],
                pod=document["pod"],
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not an echo reply: {error!r}") from error

    def header(self, name: str) -> tuple[str, ...]:
        """Request header values as the backend saw them (any case)."""
        return dict(self.headers).get(canonical_header_name(name), ())


@attrs.frozen
class _PodIdentity:
    namespace: str
    service: str
    pod: str
    ingress: str


class _EchoServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, identity: _PodIdentity) -> None:
        self.identity = identity
        self.requests_served = 0
        self._counter_lock = threading.Lock()
        self._open_connections: set[socket.socket] = set()
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.socket.setblocking(False)

    def serve_until_woken(self) -> None:
        """Accept until `wake()`; unlike serve_forever, stopping costs no poll interval."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                events = selector.select()
                if any(key.fileobj is self._wake_reader for key, _ in events):
                    return
                try:
                    request, client_address = self.socket.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                request.setblocking(True)
                self.process_request(request, client_address)

    def wake(self) -> None:
        self._wake_writer.send(b"!")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection cut by stop() or by the peer is not worth a traceback on stderr."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def count_request(self) -> None:
        with self._counter_lock:
            self.requests_served += 1

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._counter_lock:
            self._open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._counter_lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def cut_open_connections(self) -> None:
        with self._counter_lock:
            connections = tuple(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # an idle kept-alive connection frees its thread eventually
    server: _EchoServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line."""

    def _read_body(self) -> None:
        """Consume the request body so the connection can carry the next request."""
        length = self.headers.get("Content-Length")
        if length is not None:
            remaining = int(length)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                self.rfile.read(size + 2)

    def _status(self) -> int:
        path = self.path.split("?", 1)[0]
        if not path.startswith("/status/"):
            return 200
        match = _STATUS_PATH.match(path)
        if match is None or not 200 <= int(match.group(1)) <= 599:
            return 400
        return int(match.group(1))

    def _requested_headers(self) -> list[tuple[str, str]]:
        merged: dict[str, str] = {}
        for header_list in self.headers.get_all("X-Echo-Set-Header") or []:
            for item in header_list.split(","):
                name, _, value = item.strip().partition(":")
                name = name.strip()
                if not name:
                    continue
                merged[name] = (
                    f"{merged[name]},{value.strip()}" if name in merged else value.strip()
                )
        return list(merged.items())

    def _echo(self) -> None:
        try:
            self._read_body()
        except ValueError:
            self.send_error(400, "unreadable body")
            return
        identity = self.server.identity
        request_headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            if name.lower() == "host":
                continue
            request_headers.setdefault(canonical_header_name(name), []).append(value)
        document = {
            "path": self.path,
            "host": self.headers.get("Host", ""),
            "method": self.command,
            "proto": self.request_version,
            "headers": request_headers,
            "namespace": identity.namespace,
            "ingress": identity.ingress,
            "service": identity.service,
            "pod": identity.pod,
        }
        body = json.dumps(document).encode()
        status = self._status()
        self.server.count_request()
        self.send_response(status)
        for name, value in self._requested_headers():
            self.send_header(name, value)
        if status not in _NO_BODY_STATUSES:
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and status not in _NO_BODY_STATUSES:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_TRACE = _echo


class EchoBackend:
    """One echo pod `<service>-<suffix>` listening on 127.0.0.1 (port chosen by the OS)."""

    def __init__(
        self, namespace: str, service: str, suffix: str, *, ingress: str = "", grpc: bool = False
    ) -> None:
        if not namespace or not service or not suffix:
            raise ValueError("namespace, service and suffix must be non-empty")
        self.identity = _PodIdentity(
            namespace=namespace, service=service, pod=f"{service}-{suffix}", ingress=ingress
        )
        self.grpc = GrpcEchoPod(namespace, service, self.identity.pod) if grpc else None
        """The pod's gRPC server, if it has one."""
        self._server: _EchoServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    @property
    def namespace(self) -> str:
        return self.identity.namespace

    @property
    def service(self) -> str:
        return self.identity.service

    @property
    def pod(self) -> str:
        return self.identity.pod

    @property
    def endpoint(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError(f"echo backend {self.pod} was never started")
        return self._address

    @property
    def grpc_endpoint(self) -> tuple[str, int] | None:
        """Where the gRPC sibling listens (None without one)."""
        return self.grpc.endpoint if self.grpc is not None else None

    @property
    def address(self) -> str:
        return self.endpoint[0]

    @property
    def port(self) -> int:
        return self.endpoint[1]

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def requests_served(self) -> int:
        return self._server.requests_served if self._server is not None else 0

    def start(self) -> EchoBackend:
        if self._server is not None:
            return self
        if self.grpc is not None:
            self.grpc.start()
        server = _EchoServer(self.identity)
        host, port = server.server_address[:2]
        self._address = (str(host), int(port))
        thread = threading.Thread(
            target=server.serve_until_woken,
            name=f"echo-{self.pod}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop accepting, cut open connections, close the socket. Idempotent."""
        if self.grpc is not None:
            self.grpc.stop()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.wake()
        if thread is not None:
            thread.join()
        server.cut_open_connections()
        server.server_close()

    def __enter__(self) -> EchoBackend:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self._address[0]}:{self._address[1]}" if self._address else "not started"
        return f"EchoBackend({self.namespace}/{self.pod} at {where})"


class EchoFleet:
    """The pods of every Service: scale each up or down (to zero too) by starting/stopping
    backends. Suffixes are never reused, so a pod name always means one process lifetime."""

    def __init__(self, *, ingress: str = "", grpc: bool = False) -> None:
        """`grpc`: every pod also runs a gRPC echo server (`EchoBackend.grpc`)."""
        self._ingress = ingress
        self._grpc = grpc
        self._pods: dict[tuple[str, str], list[EchoBackend]] = {}
        self._next_suffix: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def scale(self, namespace: str, service: str, replicas: int) -> tuple[tuple[str, int], ...]:
        """Make `replicas` pods run for the Service (newest stopped first); return endpoints."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, not {replicas}")
        key = (namespace, service)
        with self._lock:
            pods = self._pods.setdefault(key, [])
            while len(pods) < replicas:
                suffix = self._next_suffix.get(key, 0)
                self._next_suffix[key] = suffix + 1
                backend = EchoBackend(
                    namespace, service, str(suffix), ingress=self._ingress, grpc=self._grpc
                )
                pods.append(backend.start())
            while len(pods) > replicas:
                pods.pop().stop()
            return tuple(pod.endpoint for pod in pods)

    def start_pods(self, namespace: str, service: str, pods: Iterable[str]) -> None:
        """Start the named pods (`<service>-<suffix>`) that do not run yet. A caller that names
        pods itself owns their names: never reuse one."""
        prefix = f"{service}-"
        with self._lock:
            running = self._pods.setdefault((namespace, service), [])
            present = {backend.pod for backend in running}
            for pod in pods:
                if not pod.startswith(prefix) or len(pod) == len(prefix):
                    raise ValueError(f"pod {pod!r} is not named <{service}>-<suffix>")
                if pod in present:
                    continue
                suffix = pod.removeprefix(prefix)
                backend = EchoBackend(
                    namespace, service, suffix, ingress=self._ingress, grpc=self._grpc
                )
                running.append(backend.start())
                present.add(pod)
                if suffix.isdigit():
                    key = (namespace, service)
                    self._next_suffix[key] = max(self._next_suffix.get(key, 0), int(suffix) + 1)

    def stop_pods(self, pods: Iterable[str]) -> None:
        """Stop the named pods, wherever they run; unknown names are ignored."""
        doomed = set(pods)
        stopping = []
        with self._lock:
            for key, running in self._pods.items():
                stopping += [backend for backend in running if backend.pod in doomed]
                self._pods[key] = [backend for backend in running if backend.pod not in doomed]
        for backend in stopping:
            backend.stop()

    def endpoint_of(
        self, namespace: str, pod: str, *, grpc: bool = False
    ) -> tuple[str, int] | None:
        """Where the pod serves HTTP (with `grpc`, gRPC), if it runs (and has a gRPC server)."""
        with self._lock:
            for (pod_namespace, _), running in self._pods.items():
                for backend in running:
                    if pod_namespace == namespace and backend.pod == pod:
                        return backend.grpc_endpoint if grpc else backend.endpoint
        return None

    def endpoints(
        self, namespace: str, service: str, *, grpc: bool = False
    ) -> tuple[tuple[str, int], ...]:
        with self._lock:
            pods = self._pods.get((namespace, service), ())
            if not grpc:
                return tuple(pod.endpoint for pod in pods)
            return tuple(found for pod in pods if (found := pod.grpc_endpoint) is not None)

    def backends(self, namespace: str, service: str) -> tuple[EchoBackend, ...]:
        with self._lock:
            return tuple(self._pods.get((namespace, service), ()))

    def services(self) -> tuple[tuple[str, str], ...]:
        """(namespace, service) pairs with at least one running pod."""
        with self._lock:
            return tuple(sorted(key for key, pods in self._pods.items() if pods))

    def pod_at(self, address: str, port: int) -> EchoBackend | None:
        with self._lock:
            for pods in self._pods.values():
                for pod in pods:
                    if pod.endpoint == (address, port):
                        return pod
        return None

    def __iter__(self) -> Iterator[EchoBackend]:
        with self._lock:
            everything = [pod for pods in self._pods.values() for pod in pods]
        return iter(everything)

    def stop(self) -> None:
        """Stop every pod. Idempotent; the fleet can be scaled up again afterwards."""
        with self._lock:
            pods = [pod for group in self._pods.values() for pod in group]
            self._pods.clear()
        for pod in pods:
            pod.stop()

    def __enter__(self) -> EchoFleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
