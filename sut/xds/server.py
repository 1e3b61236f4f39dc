"""The gRPC adapter: serves `AggregatedDiscoveryService` and the five per-type discovery
services (CDS, EDS, LDS, RDS, SDS), each SotW and Delta, from the cache.

Rules of this module:
1. All protocol decisions live in the sans-IO streams, stream start and end included; this
   module only moves messages and carries out the effects the core returns (`Send`, `Watch`,
   `Unwatch`), in order.
2. gRPC runs on `grpc.aio`, on one event loop in one thread that `start` creates and `stop`
   joins. Every stream is a coroutine on that loop: no thread per stream, so the thread count
   stays flat however many streams are open, and there is no cap on live streams.
3. The runner, the cache and the harness stay threaded. They enter the loop only through
   `loop.call_soon_threadsafe` (a snapshot, via `slot.LoopWaker`; `stop`). The loop leaves it
   only by taking short locks: one per stream (status readers share the core), the exchange
   log's, and the change condition that wakes `wait_for`.
4. A stream reads a request only once the previous one is applied and its responses are
   written, so HTTP/2 flow control pushes back on a client that floods or never reads.
5. A snapshot reaches a stream through a latest-value slot: a newer snapshot overwrites an
   undelivered one, so a slow stream skips versions and never delays the cache or the others.
6. Nothing grows with traffic: the exchange log is capped in bytes, and a closed stream leaves
   only its last status, in a bounded history.
7. A per-type stream is a core built for its one type; streams never wait for one another, so
   the make-before-break order holds on ADS streams only (the spec promises none across streams).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs
import grpc
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from envoy.service.endpoint.v3 import eds_pb2_grpc
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.route.v3 import rds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc

from sut.errors import RemoteProtocolError
from sut.mutants import Mutants
from sut.xds.delta import DeltaStream
from sut.xds.effects import Effect, Send, Unwatch, Watch
from sut.xds.exchange_log import ExchangeLog
from sut.xds.resources import ResourceType
from sut.xds.served import ServedSets
from sut.xds.slot import LatestValueSlot, LoopWaker
from sut.xds.snapshot import Snapshot
from sut.xds.sotw import SotwStream
from sut.xds.source import SnapshotSource
from sut.xds.status import Exchange, StreamStatus
from sut.xds.stream import AdsStream

__all__ = ["XdsServer"]

_log = logging.getLogger(__name__)

_T = TypeVar("_T")

_START_TIMEOUT = 10.0
_RECHECK = 1.0
"""`wait_for` re-evaluates at least this often, for predicates that read more than streams."""


@attrs.define(eq=False)
class _LiveStream:
    core: AdsStream
    lock: threading.Lock = attrs.Factory(threading.Lock)
    status: StreamStatus | None = None
    """The core's status since its last change; computed on demand, dropped on change."""

    def current_status(self) -> StreamStatus:
        with self.lock:
            if self.status is None:
                self.status = self.core.status()
            return self.status


class XdsServer:
    """A real gRPC xDS server (ADS and per-type) on loopback; start it, point Envoy at `address`.

    `exchange_log_bytes` caps the server-wide exchange log; `closed_history` is how many closed
    streams' statuses (and protocol errors) are kept for `stream_statuses(live_only=False)`.
    """

    def __init__(
        self,
        cache: SnapshotSource,
        *,
        mutants: Mutants = Mutants(),
        host: str = "127.0.0.1",
        port: int = 0,
        exchange_log_bytes: int = 8 * 1024 * 1024,
        closed_history: int = 64,
    ) -> None:
        self.cache = cache
        self.mutants = mutants
        self._host = host
        self._requested_port = port
        self.port = 0
        self.exchanges = ExchangeLog(exchange_log_bytes)
        self.protocol_errors: collections.deque[str] = collections.deque(maxlen=closed_history)
        self._served = ServedSets()
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self._live: dict[int, _LiveStream] = {}
        self._closed: collections.deque[StreamStatus] = collections.deque(maxlen=closed_history)
        self._changes = threading.Condition()
        self._generation = 0
        self._change_scheduled = False
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._grace: float | None = 0
        self._waker: LoopWaker | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    def start(self) -> XdsServer:
        with self._lifecycle:
            if self._thread is not None:
                return self
            bound: concurrent.futures.Future[int] = concurrent.futures.Future()
            thread = threading.Thread(target=self._run, args=(bound,), name="xds-loop", daemon=True)
            thread.start()
            try:
                self.port = bound.result(_START_TIMEOUT)
            except BaseException:
                thread.join(_START_TIMEOUT)
                raise
            self._thread = thread
        return self

    def stop(self, grace: float | None = 0) -> None:
        """Cancel every stream (after `grace` seconds) and join the loop's thread; idempotent."""
        with self._lifecycle:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._grace = grace
            loop, stopping = self._loop, self._stopping
            assert loop is not None and stopping is not None
            with contextlib.suppress(RuntimeError):  # the loop already ended on its own
                loop.call_soon_threadsafe(stopping.set)
            thread.join((grace or 0) + _START_TIMEOUT)
            if thread.is_alive():
                _log.warning("xDS server on %s did not stop in time", self.address)

    def __enter__(self) -> XdsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, bound: concurrent.futures.Future[int]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._waker = LoopWaker(loop)
        try:
            loop.run_until_complete(self._serve_until_stopped(bound))
        except BaseException as error:
            if not bound.done():
                bound.set_exception(error)
            else:
                _log.exception("xDS server loop failed")
        finally:
            # gRPC's own tasks end once it has cancelled the streams; cancelling them first
            # makes gRPC print a traceback per stream.
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=_START_TIMEOUT / 10))
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve_until_stopped(self, bound: concurrent.futures.Future[int]) -> None:
        self._stopping = asyncio.Event()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_AdsServicer(self), server)
        for kind, (add_to_server, plural) in _PER_TYPE_SERVICES.items():
            add_to_server(_PerTypeServicer(self, kind, plural), server)
        where = f"{self._host}:{self._requested_port}"
        try:
            port = server.add_insecure_port(where)
        except RuntimeError as error:
            raise OSError(f"could not bind the xDS server to {where}: {error}") from error
        if port == 0:
            raise OSError(f"could not bind the xDS server to {where}")
        await server.start()
        bound.set_result(port)
        try:
            await self._stopping.wait()
        finally:
            await server.stop(self._grace)

    # --------------------------------------------------------- introspection

    def stream_statuses(
        self, node_id: str | None = None, *, live_only: bool = True
    ) -> list[StreamStatus]:
        """Statuses of the live streams (of one node), then of recently closed ones."""
        with self._lock:
            live = [s for s in self._live.values() if node_id is None or s.core.node_id == node_id]
            closed = [] if live_only else list(self._closed)
        statuses = [stream.current_status() for stream in live]
        return statuses + [s for s in closed if node_id is None or s.node_id == node_id]

    def exchange_log(self, since_seq: int = 0) -> list[Exchange]:
        return self.exchanges.since(since_seq)

    def last_seq(self) -> int:
        return self.exchanges.last_seq()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until `predicate()` holds (re-checked whenever a stream changes) or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self._changes:
                seen = self._generation
            if predicate():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._changes:
                if self._generation == seen:
                    self._changes.wait(min(remaining, _RECHECK))

    def wait_converged(self, node_id: str, snapshot_version: str, timeout: float) -> bool:
        """Every live stream of the node holds `snapshot_version` with nothing left to send."""

        def converged() -> bool:
            statuses = self.stream_statuses(node_id)
            return bool(statuses) and all(
                s.converged and s.snapshot_version == snapshot_version for s in statuses
            )

        return self.wait_for(converged, timeout)

    # ------------------------------------------------------------- serving

    def _changed(self) -> None:
        """Loop only: wake `wait_for` once per loop iteration, however many streams changed."""
        if not self._change_scheduled:
            self._change_scheduled = True
            asyncio.get_running_loop().call_soon(self._publish_change)

    def _publish_change(self) -> None:
        self._change_scheduled = False
        with self._changes:
            self._generation += 1
            self._changes.notify_all()

    def _open(self, mode: str, types: frozenset[ResourceType] | None) -> _LiveStream:
        stream_class = DeltaStream if mode == "delta" else SotwStream
        core = stream_class(
            mutants=self.mutants,
            on_exchange=self.exchanges.append,
            sequence=self._sequence,
            served=self._served,
            types=types,
        )
        core.open()
        live = _LiveStream(core)
        with self._lock:
            self._live[core.stream_id] = live
        self._changed()
        return live

    def _close(self, live: _LiveStream, reason: str) -> list[Effect]:
        with live.lock:
            effects = live.core.close(reason)
            final = live.core.status()
        with self._lock:
            del self._live[live.core.stream_id]
            self._closed.append(final)
        self._changed()
        return effects

    def _apply(
        self, live: _LiveStream, step: Callable[[AdsStream, _T], list[Effect]], payload: _T
    ) -> list[Effect]:
        with live.lock:
            live.status = None
            try:
                return step(live.core, payload)
            finally:
                self._changed()

    async def serve(
        self,
        mode: str,
        context: grpc.aio.ServicerContext,
        types: frozenset[ResourceType] | None = None,
    ) -> None:
        """One stream (ADS, or per-type serving `types`): apply each request or snapshot to the
        core, write what it returns."""
        assert self._waker is not None
        live = self._open(mode, types)
        stream_id = live.core.stream_id
        slot: LatestValueSlot[Snapshot] = LatestValueSlot(self._waker)
        unwatch: Callable[[], None] | None = None

        async def carry_out(effects: list[Effect]) -> None:
            nonlocal unwatch
            for effect in effects:
                if isinstance(effect, Send):
                    await _write(context, effect.message)
                elif isinstance(effect, Watch):
                    unwatch = self.cache.watch(effect.node_id, slot.offer)
                    # The snapshot current once the watch is in place: none set meanwhile is lost.
                    current = self.cache.get_snapshot(effect.node_id)
                    if current is not None and current is not live.core.snapshot:
                        slot.offer(current)
                elif isinstance(effect, Unwatch) and unwatch is not None:
                    unwatch()
                    unwatch = None

        reading: asyncio.Future[object] = asyncio.ensure_future(context.read())
        delivered: asyncio.Future[object] = asyncio.ensure_future(slot.ready.wait())
        reason = "server stopped"
        try:
            while True:
                await asyncio.wait((reading, delivered), return_when=asyncio.FIRST_COMPLETED)
                if reading.done():
                    request = _read_result(reading)
                    if request is grpc.aio.EOF:
                        reason = "client closed the stream"
                        break
                    await carry_out(self._apply(live, self._receive, request))
                    reading = asyncio.ensure_future(context.read())
                if delivered.done():
                    snapshot = slot.take()
                    if snapshot is not None and snapshot is not live.core.snapshot:
                        await carry_out(self._apply(live, _on_snapshot, snapshot))
                    delivered = asyncio.ensure_future(slot.ready.wait())
        except RemoteProtocolError as error:
            reason = f"protocol violation: {error}"
            self.protocol_errors.append(reason)
            _log.warning("xDS stream %s refused (node %r): %s", stream_id, live.core.node_id, error)
            context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
            context.set_details(str(error))
        except asyncio.CancelledError:
            stopping = self._stopping is not None and self._stopping.is_set()
            reason = "server stopped" if stopping else "cancelled by the client (or its connection)"
            _log.info("xDS stream %s (node %r): %s", stream_id, live.core.node_id, reason)
            raise
        except _StreamLost as error:
            reason = f"stream broke: {error}"
            _log.warning("xDS stream %s (node %r) broke: %s", stream_id, live.core.node_id, error)
        except Exception as error:  # our own bug: end this stream only, and say so
            reason = f"stream broke: {error!r}"
            _log.warning(
                "xDS stream %s (node %r) broke", stream_id, live.core.node_id, exc_info=True
            )
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details(reason)
        finally:
            reading.cancel()
            delivered.cancel()
            for effect in self._close(live, reason):
                if isinstance(effect, Unwatch) and unwatch is not None:
                    unwatch()
                    unwatch = None
            if unwatch is not None:  # the core never asked for its watch back: ours to end
                unwatch()
            _log.debug("xDS stream %s closed: %s", stream_id, reason)

    def _receive(self, core: AdsStream, request: object) -> list[Effect]:
        return core.receive_effects(request, self.cache)


def _on_snapshot(core: AdsStream, snapshot: Snapshot) -> list[Effect]:
    return core.on_snapshot_effects(snapshot)


class _StreamLost(Exception):
    """gRPC could not read or write the stream: the client or its connection went away."""


def _read_result(reading: asyncio.Future[object]) -> object:
    try:
        return reading.result()
    except Exception as error:
        raise _StreamLost(f"reading failed: {error!r}") from error


async def _write(context: grpc.aio.ServicerContext, response: object) -> None:
    try:
        await context.write(response)
    except Exception as error:
        raise _StreamLost(f"writing failed: {error!r}") from error


class _AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self, request_iterator: Iterator[object], context: grpc.aio.ServicerContext
    ) -> None:
        await self._server.serve("sotw", context)

    async def DeltaAggregatedResources(
        self, request_iterator: Iterator[object], context: grpc.aio.ServicerContext
    ) -> None:
        await self._server.serve("delta", context)


class _PerTypeServicer:
    """One per-type discovery service: `Stream<Plural>` (SotW) and `Delta<Plural>` serve one
    type each; `Fetch<Plural>` (REST-like unary xDS) is not served."""

    def __init__(self, server: XdsServer, kind: ResourceType, plural: str) -> None:
        types = frozenset({kind})

        async def stream(request_iterator: object, context: grpc.aio.ServicerContext) -> None:
            await server.serve("sotw", context, types)

        async def delta(request_iterator: object, context: grpc.aio.ServicerContext) -> None:
            await server.serve("delta", context, types)

        async def fetch(request: object, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "unary Fetch is not served")

        setattr(self, f"Stream{plural}", stream)
        setattr(self, f"Delta{plural}", delta)
        setattr(self, f"Fetch{plural}", fetch)


_PER_TYPE_SERVICES: dict[ResourceType, tuple[Callable[[object, grpc.aio.Server], None], str]] = {
    ResourceType.CLUSTER: (cds_pb2_grpc.add_ClusterDiscoveryServiceServicer_to_server, "Clusters"),
    ResourceType.ENDPOINT: (
        eds_pb2_grpc.add_EndpointDiscoveryServiceServicer_to_server,
        "Endpoints",
    ),
    ResourceType.LISTENER: (
        lds_pb2_grpc.add_ListenerDiscoveryServiceServicer_to_server,
        "Listeners",
    ),
    ResourceType.ROUTE: (rds_pb2_grpc.add_RouteDiscoveryServiceServicer_to_server, "Routes"),
    ResourceType.SECRET: (sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server, "Secrets"),
}
"""The per-type gRPC service of each type, and the plural its method names carry."""
