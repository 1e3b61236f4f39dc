"""A test-only ADS endpoint that records what Envoy sends and answers only when told to.

It exists to check the *driver* (bootstrap, relay, admin parsing) against real Envoy without
depending on sut/xds; it has no cache, no versions and no protocol logic of its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import attrs
import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


@attrs.frozen
class Received:
    stream: int
    kind: str  # "delta" or "sotw"
    request: Any  # DeltaDiscoveryRequest | DiscoveryRequest


class RecordingAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._outboxes: dict[int, queue.SimpleQueue[Any]] = {}
        self._next_stream = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> RecordingAds:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for outbox in list(self._outboxes.values()):
            outbox.put(None)
        self._server.stop(grace=None).wait()

    def _stream(self, kind: str, requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        with self._changed:
            stream = self._next_stream
            self._next_stream += 1
            outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
            self._outboxes[stream] = outbox
        context.add_callback(lambda: outbox.put(None))

        def consume() -> None:
            try:
                for request in requests:
                    with self._changed:
                        self.received.append(Received(stream, kind, request))
                        self._changed.notify_all()
            except grpc.RpcError:
                pass
            finally:
                outbox.put(None)

        threading.Thread(target=consume, daemon=True).start()
        while (response := outbox.get()) is not None:
            yield response

    def StreamAggregatedResources(self, request_iterator, context):
        return self._stream("sotw", request_iterator, context)

    def DeltaAggregatedResources(self, request_iterator, context):
        return self._stream("delta", request_iterator, context)

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float) -> Received:
        """The first received request matching `predicate`; AssertionError on timeout."""
        found: list[Received] = []

        def match() -> bool:
            found[:] = [item for item in self.received if predicate(item)]
            return bool(found)

        with self._changed:
            if not self._changed.wait_for(match, timeout):
                seen = [(r.stream, r.kind, r.request.type_url) for r in self.received]
                raise AssertionError(f"no matching request within {timeout}s; saw {seen}")
        return found[0]

    def send(self, stream: int, response: Any) -> None:
        self._outboxes[stream].put(response)

    @staticmethod
    def delta_response(type_url: str, nonce: str, resources: dict[str, Any]) -> Any:
        """DeltaDiscoveryResponse with each resource at version = nonce."""
        response = discovery_pb2.DeltaDiscoveryResponse(type_url=type_url, nonce=nonce)
        for name, message in resources.items():
            resource = response.resources.add(name=name, version=nonce)
            resource.resource.Pack(message)
        return response

    @staticmethod
    def sotw_response(type_url: str, version: str, nonce: str, resources: list[Any]) -> Any:
        response = discovery_pb2.DiscoveryResponse(
            type_url=type_url, version_info=version, nonce=nonce
        )
        for message in resources:
            response.resources.add().Pack(message)
        return response
