"""The gRPC adapter: serves `AggregatedDiscoveryService` (SotW and Delta) from the cache.

All protocol decisions live in the sans-IO streams; this module only moves messages. Each RPC gets
one event queue fed by a reader thread (requests) and by the cache (snapshots); one loop applies
the events to the stream in order and writes the responses it returns.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import attrs
import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sut.errors import RemoteProtocolError
from sut.mutants import Mutants
from sut.xds.cache import SnapshotCache
from sut.xds.delta import DeltaStream
from sut.xds.served import ServedSets
from sut.xds.snapshot import Snapshot
from sut.xds.sotw import SotwStream
from sut.xds.stream import AdsStream, Exchange, StreamStatus

__all__ = ["XdsServer"]

_log = logging.getLogger(__name__)

_REQUEST = "request"
_SNAPSHOT = "snapshot"
_END = "end"


@attrs.define
class _LiveStream:
    core: AdsStream
    lock: threading.Lock = attrs.Factory(threading.Lock)
    closed: bool = False


class XdsServer:
    """A real gRPC ADS server on loopback; start it, point Envoy at `address`, stop it."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        mutants: Mutants = Mutants(),
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 64,
        exchange_log_size: int = 20000,
    ) -> None:
        self.cache = cache
        self.mutants = mutants
        self._host = host
        self._requested_port = port
        self._max_workers = max_workers
        self._server: grpc.Server | None = None
        self.port = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._streams: list[_LiveStream] = []
        self._sequence = itertools.count(1)
        self.exchanges: collections.deque[Exchange] = collections.deque(maxlen=exchange_log_size)
        self.protocol_errors: list[str] = []
        self._served = ServedSets()

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> XdsServer:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="xds"),
            options=[("grpc.so_reuseport", 0)],
        )
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_AdsServicer(self), server)
        self.port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        if self.port == 0:
            raise OSError(f"could not bind the xDS server to {self._host}:{self._requested_port}")
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = 0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(5)

    def __enter__(self) -> XdsServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------- introspection

    def stream_statuses(
        self, node_id: str | None = None, *, live_only: bool = True
    ) -> list[StreamStatus]:
        with self._lock:
            streams = [
                s
                for s in self._streams
                if (not live_only or not s.closed)
                and (node_id is None or s.core.node_id == node_id)
            ]
        statuses = []
        for live in streams:
            with live.lock:
                statuses.append(live.core.status())
        return statuses

    def exchange_log(self, since_seq: int = 0) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.seq > since_seq]

    def last_seq(self) -> int:
        with self._lock:
            return self.exchanges[-1].seq if self.exchanges else 0

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds (re-checked whenever a stream changes) or timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
            return True

    def wait_converged(self, node_id: str, snapshot_version: str, timeout: float) -> bool:
        """Every live stream of the node holds `snapshot_version` with nothing left to send."""

        def converged() -> bool:
            statuses = self.stream_statuses(node_id)
            return bool(statuses) and all(
                s.converged and s.snapshot_version == snapshot_version for s in statuses
            )

        return self.wait_for(converged, timeout)

    # ------------------------------------------------------------- serving

    def _new_stream(self, mode: str) -> _LiveStream:
        stream_class = DeltaStream if mode == "delta" else SotwStream
        core = stream_class(
            mutants=self.mutants,
            on_exchange=self._append_exchange,
            sequence=self._sequence,
            served=self._served,
        )
        live = _LiveStream(core)
        core.record(
            direction="event", type_short="ADS", nonce="", version="", note=f"{mode} stream opened"
        )
        with self._lock:
            self._streams = [*[s for s in self._streams if not s.closed][-64:], live]
        return live

    def _append_exchange(self, exchange: Exchange) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def serve(
        self, mode: str, requests: Iterator[object], context: grpc.ServicerContext
    ) -> Iterator[object]:
        live = self._new_stream(mode)
        events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        context.add_callback(lambda: events.put((_END, "cancelled")))

        def read() -> None:
            try:
                for request in requests:
                    events.put((_REQUEST, request))
                events.put((_END, "client closed the stream"))
            except Exception as error:  # grpc raises on cancellation; any reason ends the stream
                events.put((_END, f"stream broke: {error}"))

        reader = threading.Thread(target=read, name=f"xds-read-{live.core.stream_id}", daemon=True)
        reader.start()
        unwatch: Callable[[], None] | None = None
        end_reason = ""
        try:
            while True:
                kind, payload = events.get()
                if kind == _END:
                    end_reason = str(payload)
                    break
                with live.lock:
                    try:
                        if kind == _REQUEST:
                            if unwatch is None and live.core.snapshot is None:
                                first_node = getattr(getattr(payload, "node", None), "id", "")
                                current = (
                                    self.cache.get_snapshot(first_node) if first_node else None
                                )
                                if current is not None:
                                    live.core.attach(current)
                            responses = live.core.receive(payload)
                            if unwatch is None and live.core.node_id:
                                node_id = live.core.node_id
                                unwatch = self.cache.watch(
                                    node_id, lambda snap: events.put((_SNAPSHOT, snap))
                                )
                                snapshot = self.cache.get_snapshot(node_id)
                                if snapshot is not None and live.core.snapshot is None:
                                    responses += live.core.on_snapshot(snapshot)
                        else:
                            assert isinstance(payload, Snapshot)
                            responses = live.core.on_snapshot(payload)
                    except RemoteProtocolError as error:
                        end_reason = f"protocol violation: {error}"
                        with self._lock:
                            self.protocol_errors.append(end_reason)
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                self._notify()
                yield from responses
        finally:
            if unwatch is not None:
                unwatch()
            live.closed = True
            with live.lock:
                live.core.record(
                    direction="event",
                    type_short="ADS",
                    nonce="",
                    version="",
                    note=f"stream closed: {end_reason}",
                )
            _log.debug("xDS stream %s closed: %s", live.core.stream_id, end_reason)
            self._notify()


class _AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    def StreamAggregatedResources(
        self,
        request_iterator: Iterator[discovery_pb2.DiscoveryRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[object]:
        return self._server.serve("sotw", request_iterator, context)

    def DeltaAggregatedResources(
        self,
        request_iterator: Iterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[object]:
        return self._server.serve("delta", request_iterator, context)
