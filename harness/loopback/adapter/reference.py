"""The reference adapter: routeproof's own cache and xDS server behind the adapter protocol.

Usage: python -m harness.loopback.adapter.reference [--port 0] [--xds-port 0] [--mutant NAME ...]

It proves the protocol carries what the harness needs, and shows an implementer how little glue
a server built on a snapshot cache takes: Push is `cache.set_snapshot`, Restart stops the server
and starts a new one with a fresh cache on the same port. Once ready it prints one JSON line,
`{"adapter": "127.0.0.1:N", "ads": "127.0.0.1:M"}`, and it stops cleanly on SIGTERM or SIGINT.

Only mutants that live in the xDS server are taken (`MutantSpec.layer` starting with "xds", and
`versions-restart-with-process`: behind the adapter the server owns the versions, so its
counters are this process's and start again at Restart); the control plane's (publishing,
startup, hooks, failure policies, versions named after the store) stay in the harness's runner
(`split_mutants`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import signal
import sys
import threading
from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from harness.loopback.adapter.client import CHANNEL_OPTIONS
from harness.loopback.adapter.generated import adapter_pb2, adapter_pb2_grpc
from sut.controlplane.versions import ProcessVersions
from sut.mutants import MUTANTS, Mutant, Mutants
from sut.xds import ResourceType, Snapshot, SnapshotCache, XdsServer

__all__ = ["ReferenceAdapter", "main", "server_mutants", "snapshot_from_any", "split_mutants"]

_SERVER_LAYER = "xds"
_SERVER_VERSIONING = frozenset({Mutant.VERSIONS_RESTART_WITH_PROCESS})
"""Versioning mutants the server behind the adapter carries: it owns the versions."""


def _in_server(name: Mutant) -> bool:
    spec = MUTANTS[name]
    if name in _SERVER_VERSIONING:
        return True
    return spec.layer.startswith(_SERVER_LAYER) and spec.failure_policy is None


def split_mutants(mutants: Mutants) -> tuple[Mutants, Mutants]:
    """(the reference adapter's, the harness runner's): a combination's implied server mutants
    go to the adapter, its failure policy stays with the runner."""
    server = frozenset(name for name in mutants.names if _in_server(name))
    return Mutants(server), Mutants(mutants.names - server)


def server_mutants(names: Iterable[str]) -> Mutants:
    """The mutants an xDS server can carry; ValueError naming any that live elsewhere."""
    chosen: list[Mutant] = []
    for name in names:
        mutant = Mutants.of([name])  # ValueError for an unknown name, listing the known ones
        spec = MUTANTS[Mutant(name)]
        if not _in_server(Mutant(name)):
            raise ValueError(
                f"mutant {name!r} lives in the {spec.layer}, not in the xDS server: "
                "the harness's runner carries it, not the adapter"
            )
        chosen.extend(mutant.names)
    return Mutants(frozenset(chosen))


def snapshot_from_any(resources: Iterable[any_pb2.Any]) -> Snapshot:
    """The snapshot the packed resources make; ValueError naming the first one at fault."""
    messages: list[Message] = []
    for index, packed in enumerate(resources):
        where = f"resource {index} ({packed.type_url or 'no type_url'})"
        try:
            kind = ResourceType.from_type_url(packed.type_url)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        message = kind.message_class()
        try:
            message.ParseFromString(packed.value)
        except DecodeError as error:
            raise ValueError(f"{where}: does not decode as {kind.value}: {error}") from None
        messages.append(message)
    return Snapshot.from_messages(messages)


class ReferenceAdapter(adapter_pb2_grpc.XdsServerAdapterServicer):
    """The adapter service and the xDS server it drives, both on loopback."""

    def __init__(
        self,
        *,
        mutants: Mutants = Mutants(),
        port: int = 0,
        xds_port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        self.mutants = mutants
        self.host = host
        self._requested_port = port
        self._lifecycle = threading.Lock()
        """Held by Restart: Push and Ready wait until the new server is up."""
        self.cache = SnapshotCache()
        self.xds = XdsServer(self.cache, mutants=mutants, host=host, port=xds_port)
        self._counters: dict[str, ProcessVersions] = {}
        """Per node, this server's version counters (`versions-restart-with-process` only)."""
        self.port = 0
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ReferenceAdapter:
        self.xds.start()
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="adapter"),
            options=[*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)],
        )
        adapter_pb2_grpc.add_XdsServerAdapterServicer_to_server(self, server)
        where = f"{self.host}:{self._requested_port}"
        try:
            self.port = server.add_insecure_port(where)
        except RuntimeError as error:
            self.xds.stop()
            raise OSError(f"could not bind the adapter to {where}: {error}") from error
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        with self._lifecycle:
            self.xds.stop()

    # ------------------------------------------------------------------ the four calls

    def Capabilities(
        self, request: adapter_pb2.CapabilitiesRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.CapabilitiesResponse:
        return adapter_pb2.CapabilitiesResponse(
            transports=[
                adapter_pb2.SOTW_AGGREGATED,
                adapter_pb2.DELTA_AGGREGATED,
                adapter_pb2.SOTW_PER_TYPE,
                adapter_pb2.DELTA_PER_TYPE,
            ],
            clients=[adapter_pb2.ENVOY, adapter_pb2.PROXYLESS_GRPC],
            ads_addresses=[self.xds.address],
            server="routeproof sut.xds",
        )

    def Push(
        self, request: adapter_pb2.PushRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.PushResponse:
        if not request.node_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_id must not be empty")
        try:
            snapshot = snapshot_from_any(request.resources)
        except ValueError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        with self._lifecycle:
            if Mutant.VERSIONS_RESTART_WITH_PROCESS in self.mutants:
                # The bug: versions are this server's counters, which a Restart starts again.
                counters = self._counters.setdefault(request.node_id, ProcessVersions())
                snapshot = counters.label(snapshot)
            self.cache.set_snapshot(request.node_id, snapshot)
        return adapter_pb2.PushResponse(version=snapshot.version)

    def Restart(
        self, request: adapter_pb2.RestartRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.RestartResponse:
        with self._lifecycle:
            port = self.xds.port
            self.xds.stop()
            self.cache = SnapshotCache()
            self._counters = {}
            self.xds = XdsServer(self.cache, mutants=self.mutants, host=self.host, port=port)
            try:
                self.xds.start()
            except OSError as error:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"xDS server did not restart: {error}")
        return adapter_pb2.RestartResponse()

    def Ready(
        self, request: adapter_pb2.ReadyRequest, context: grpc.ServicerContext
    ) -> adapter_pb2.ReadyResponse:
        with self._lifecycle:
            return adapter_pb2.ReadyResponse()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.loopback.adapter.reference",
        description="Serve routeproof's own xDS server behind the adapter protocol, on loopback.",
    )
    parser.add_argument("--port", type=int, default=0, help="adapter port (default: OS-chosen)")
    parser.add_argument("--xds-port", type=int, default=0, help="xDS port (default: OS-chosen)")
    parser.add_argument(
        "--mutant",
        action="append",
        default=[],
        metavar="NAME",
        help="switch on an xDS-server mutant (repeatable)",
    )
    arguments = parser.parse_args(argv)
    try:
        mutants = server_mutants(arguments.mutant)
    except ValueError as error:
        parser.error(str(error))
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        adapter = ReferenceAdapter(
            mutants=mutants, port=arguments.port, xds_port=arguments.xds_port
        ).start()
    except OSError as error:
        print(f"reference adapter: {error}", file=sys.stderr)
        return 1
    try:
        print(json.dumps({"adapter": adapter.address, "ads": adapter.xds.address}), flush=True)
        stopping.wait()
    finally:
        adapter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
