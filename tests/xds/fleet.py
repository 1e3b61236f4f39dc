"""A fleet of Envoy-like ADS clients on grpc.aio, run in its own process for load tests.

Usage: python -m tests.xds.fleet --address HOST:PORT --node NODE --mode sotw|delta
           --streams N --marker TEXT [--streams-per-connection K]

Each stream subscribes as Envoy does: CDS and LDS as wildcards, then EDS for the endpoints its
Clusters name and RDS for the RouteConfigurations its Listeners name; it ACKs every response.
It talks to its parent in lines on stdout:

  ready N       every stream holds a full config: all four types answered and ACKed
  converged T   every stream ACKed a RouteConfiguration containing MARKER; T is the
                `time.monotonic()` of the last such ACK (CLOCK_MONOTONIC is system-wide on Linux)
  cpu S         CPU seconds this process used, once its stdin closes (then it exits)
  failed TEXT   a stream ended or broke; exit status 1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from collections.abc import Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sut.xds import Resource, ResourceType

__all__ = ["FleetStream", "command", "main"]

CDS, EDS, LDS, RDS = (
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
    ResourceType.LISTENER,
    ResourceType.ROUTE,
)
_TYPES = (CDS, EDS, LDS, RDS)


def _name_of(kind: ResourceType, value: bytes) -> tuple[str, Resource]:
    message = kind.message_class()
    message.ParseFromString(value)
    parsed = Resource.from_message(message)
    return parsed.name, parsed


class FleetStream:
    """One Envoy-like ADS stream; `ready` and `converged` resolve as it gets there."""

    def __init__(
        self, stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub, node: str, mode: str, marker: str
    ) -> None:
        self._stub = stub
        self._node = base_pb2.Node(id=node)
        self._delta = mode == "delta"
        self._marker = marker.encode()
        self.held: dict[ResourceType, dict[str, Resource | bytes]] = {k: {} for k in _TYPES}
        self._names: dict[ResourceType, set[str]] = {EDS: set(), RDS: set()}
        self._acked: set[ResourceType] = set()
        self._versions: dict[ResourceType, str] = {}
        self._nonces: dict[ResourceType, str] = {}
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.converged: asyncio.Future[float] = loop.create_future()

    async def run(self) -> None:
        try:
            await self._run()
        except BaseException as error:
            for future in (self.ready, self.converged):
                if not future.done():
                    future.set_exception(RuntimeError(f"stream ended: {error!r}"))
            raise

    async def _run(self) -> None:
        method = (
            self._stub.DeltaAggregatedResources
            if self._delta
            else self._stub.StreamAggregatedResources
        )
        call = method()
        for kind in (CDS, LDS):
            await call.write(self._request(kind, subscribe=()))
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                raise RuntimeError("the server closed the stream")
            kind = ResourceType.from_type_url(response.type_url)
            self._apply(kind, response)
            derived = {CDS: EDS, LDS: RDS}.get(kind)
            if derived is not None:
                wanted = self._referenced(kind, derived)
                if wanted != self._names[derived]:
                    added, gone = wanted - self._names[derived], self._names[derived] - wanted
                    self._names[derived] = wanted
                    await call.write(self._request(derived, subscribe=added, unsubscribe=gone))
            await call.write(self._ack(kind, response))
            self._acked.add(kind)
            self._check(kind)

    def _request(
        self, kind: ResourceType, *, subscribe: Iterable[str], unsubscribe: Iterable[str] = ()
    ) -> object:
        if self._delta:
            return discovery_pb2.DeltaDiscoveryRequest(
                node=self._node,
                type_url=kind.type_url,
                resource_names_subscribe=sorted(subscribe),
                resource_names_unsubscribe=sorted(unsubscribe),
            )
        return discovery_pb2.DiscoveryRequest(
            node=self._node,
            type_url=kind.type_url,
            resource_names=sorted(self._names.get(kind, ())),
            version_info=self._versions.get(kind, ""),
            response_nonce=self._nonces.get(kind, ""),
        )

    def _ack(self, kind: ResourceType, response: object) -> object:
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            return discovery_pb2.DeltaDiscoveryRequest(
                node=self._node, type_url=kind.type_url, response_nonce=response.nonce
            )
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        self._versions[kind] = response.version_info
        self._nonces[kind] = response.nonce
        return self._request(kind, subscribe=())

    def _apply(self, kind: ResourceType, response: object) -> None:
        held = self.held[kind]
        parse = kind in (CDS, LDS) or not self._delta
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            for item in response.resources:
                value = item.resource.value
                held[item.name] = _name_of(kind, value)[1] if parse else value
            for name in response.removed_resources:
                held.pop(name, None)
            return
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        if kind in (CDS, LDS):
            held.clear()  # a full state of the world: absence deletes
        for packed in response.resources:
            name, parsed = _name_of(kind, packed.value)
            held[name] = parsed

    def _referenced(self, kind: ResourceType, derived: ResourceType) -> set[str]:
        return {
            name
            for resource in self.held[kind].values()
            if isinstance(resource, Resource)
            for name in resource.references.of_type(derived)
        }

    def _holds_marker(self) -> bool:
        for held in self.held[RDS].values():
            body = held.body if isinstance(held, Resource) else held
            if self._marker in body:
                return True
        return False

    def _check(self, kind: ResourceType) -> None:
        if not self.ready.done() and self._acked == set(_TYPES):
            complete = all(self._names[k] <= self.held[k].keys() for k in (EDS, RDS))
            if complete and self.held[CDS] and self.held[LDS]:
                self.ready.set_result(None)
        if kind is RDS and not self.converged.done() and self._holds_marker():
            self.converged.set_result(time.monotonic())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _fleet(args: argparse.Namespace) -> int:
    connections = max(1, -(-args.streams // args.streams_per_connection))
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(args.address, options=options) for _ in range(connections)
    ]
    stubs = [ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel) for channel in channels]
    streams = [
        FleetStream(stubs[i % connections], args.node, args.mode, args.marker)
        for i in range(args.streams)
    ]
    tasks = [asyncio.ensure_future(stream.run()) for stream in streams]
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    try:
        await asyncio.gather(*(stream.ready for stream in streams))
        print(f"ready {len(streams)}", flush=True)
        converged = await asyncio.gather(*(stream.converged for stream in streams))
        print(f"converged {max(converged):.6f}", flush=True)
        await stdin_closed
        return 0
    except Exception as error:
        print(f"failed {error}", flush=True)
        return 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
        print(f"cpu {_cpu_seconds():.3f}", flush=True)


def command(
    address: str, node: str, mode: str, streams: int, marker: str, *, per_connection: int = 1
) -> list[str]:
    """The command line that starts this fleet in a process of its own (tests, benchmarks)."""
    return [
        sys.executable,
        "-m",
        "tests.xds.fleet",
        f"--address={address}",
        f"--node={node}",
        f"--mode={mode}",
        f"--streams={streams}",
        f"--marker={marker}",
        f"--streams-per-connection={per_connection}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--mode", choices=("sotw", "delta"), default="sotw")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--streams-per-connection", type=int, default=1)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_fleet(args))
    return 1


if __name__ == "__main__":
    sys.exit(main())
