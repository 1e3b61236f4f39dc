"""The harness's side of the adapter protocol: one call per RPC, one error for every failure.

Rules of this module:
1. gRPC errors are mapped here and nowhere else: every call raises `AdapterError` naming the
   call, the adapter's address and what the adapter said, never a `grpc.RpcError`.
2. Resources travel as `google.protobuf.Any` carrying the deterministic serialization the
   snapshot already holds; versions stay behind, since the server under test owns its own.
3. `AdapterCache` answers what the control-plane runner asks of a `SnapshotCache`
   (`set_snapshot`, `get_snapshot`), so the runner publishes into a foreign server unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

import attrs
import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from harness.loopback.adapter.generated import adapter_pb2, adapter_pb2_grpc
from sut.xds import Resource, Snapshot

__all__ = ["AdapterCache", "AdapterClient", "AdapterError", "Capabilities"]

_T = TypeVar("_T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A whole snapshot travels in one Push; both sides accept messages this large."""

CHANNEL_OPTIONS = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)

_TRANSPORTS = {
    adapter_pb2.SOTW_AGGREGATED: "sotw-ads",
    adapter_pb2.DELTA_AGGREGATED: "delta-ads",
    adapter_pb2.SOTW_PER_TYPE: "sotw-per-type",
    adapter_pb2.DELTA_PER_TYPE: "delta-per-type",
}
_CLIENTS = {adapter_pb2.ENVOY: "envoy", adapter_pb2.PROXYLESS_GRPC: "proxyless-grpc"}


class AdapterError(Exception):
    """A call to the adapter failed: it refused it, broke, or could not be reached in time."""

    def __init__(self, call: str, address: str, code: str, details: str) -> None:
        super().__init__(f"adapter {call} at {address} failed ({code}): {details}")
        self.call = call
        self.address = address
        self.code = code
        self.details = details


@attrs.frozen
class Capabilities:
    """What the server under test supports, in the words the harness's settings use: transports
    are `<mode>-<transport>` (`sotw-ads`, `delta-per-type`, ...), clients `envoy` and
    `proxyless-grpc`."""

    transports: frozenset[str]
    clients: frozenset[str]
    ads_addresses: tuple[str, ...]
    server: str = ""

    def supports(self, mode: str, transport: str) -> bool:
        """`mode` is "sotw" or "delta", `transport` "ads" or "per-type" (as `AdsServer` says)."""
        return f"{mode}-{transport}" in self.transports

    @classmethod
    def from_message(cls, message: adapter_pb2.CapabilitiesResponse) -> Capabilities:
        return cls(
            transports=frozenset(_TRANSPORTS[t] for t in message.transports if t in _TRANSPORTS),
            clients=frozenset(_CLIENTS[c] for c in message.clients if c in _CLIENTS),
            ads_addresses=tuple(message.ads_addresses),
            server=message.server,
        )


def packed_resources(
    resources: Snapshot | Iterable[Resource | Message | any_pb2.Any],
) -> list[any_pb2.Any]:
    """The resources as the wire carries them; a Snapshot goes in its own (sorted) order."""
    if isinstance(resources, Snapshot):
        return [
            resource.to_any() for kind in resources.by_type.values() for resource in kind.values()
        ]
    packed = []
    for item in resources:
        if isinstance(item, any_pb2.Any):
            packed.append(item)
        elif isinstance(item, Resource):
            packed.append(item.to_any())
        else:
            wrapped = any_pb2.Any()
            wrapped.Pack(item, deterministic=True)
            packed.append(wrapped)
    return packed


class AdapterClient:
    """A connection to one adapter; `timeout` bounds every call but `wait_ready`."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self._stub = adapter_pb2_grpc.XdsServerAdapterStub(self._channel)

    @classmethod
    def connect(cls, address: str, *, timeout: float = 10.0) -> AdapterClient:
        """A client for the adapter at `address` (host:port); nothing is sent until a call."""
        return cls(address, timeout=timeout)

    def wait_ready(self, timeout: float) -> None:
        """Return once the server accepts xDS streams; the adapter may not listen yet."""
        self._call(
            "Ready",
            lambda: self._stub.Ready(
                adapter_pb2.ReadyRequest(), timeout=timeout, wait_for_ready=True
            ),
        )

    def capabilities(self) -> Capabilities:
        response = self._call(
            "Capabilities",
            lambda: self._stub.Capabilities(
                adapter_pb2.CapabilitiesRequest(), timeout=self.timeout
            ),
        )
        return Capabilities.from_message(response)

    def push(
        self, node_id: str, resources: Snapshot | Iterable[Resource | Message | any_pb2.Any]
    ) -> str:
        """Set the node's complete snapshot; returns the version the server gave it ("" if none)."""
        request = adapter_pb2.PushRequest(node_id=node_id, resources=packed_resources(resources))
        response = self._call(
            f"Push for node {node_id!r}",
            lambda: self._stub.Push(request, timeout=self.timeout),
        )
        return str(response.version)

    def restart(self) -> None:
        """Close every stream and drop every snapshot; returns once streams are accepted again."""
        self._call(
            "Restart",
            lambda: self._stub.Restart(adapter_pb2.RestartRequest(), timeout=self.timeout),
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdapterClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: str, invoke: Callable[[], _T]) -> _T:
        try:
            return invoke()
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else None
            name = code.name if code is not None else "UNKNOWN"
            raise AdapterError(call, self.address, name, details or str(error)) from None


class AdapterCache:
    """A stand-in for `SnapshotCache` that publishes into the server under test.

    `set_snapshot` pushes through the adapter unless the node already holds an equal snapshot
    (as the cache does, so an unchanged reconcile sends nothing); `get_snapshot` answers the last
    snapshot pushed, kept here. A refused push raises `AdapterError` and keeps the last one.
    """

    def __init__(self, client: AdapterClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self.versions: dict[str, str] = {}
        """The version the server gave each node's last snapshot ("" if it names none)."""

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> bool:
        """Push the snapshot; returns False (and sends nothing) if it equals the last pushed."""
        with self._lock:
            if self._snapshots.get(node_id) == snapshot:
                return False
            version = self.client.push(node_id, snapshot)
            self._snapshots[node_id] = snapshot
            self.versions[node_id] = version
            return True

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(node_id)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def clear(self, node_id: str | None = None) -> None:
        """Forget what was pushed (to one node, or all): after a Restart the server holds none."""
        with self._lock:
            if node_id is None:
                self._snapshots.clear()
                self.versions.clear()
            else:
                self._snapshots.pop(node_id, None)
                self.versions.pop(node_id, None)

    def restart(self) -> None:
        """Restart the server under test and forget every snapshot, as it does."""
        with self._lock:
            self.client.restart()
            self._snapshots.clear()
            self.versions.clear()
