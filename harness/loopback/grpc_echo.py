"""gRPC echo pods: every reply names the pod that answered, for proxyless gRPC clients.

A proxyless client speaks gRPC (HTTP/2) straight to the endpoints it got over EDS, so a pod that
serves proxyless clients needs a gRPC server beside its HTTP/1.1 echo server, on a port of its
own (its own endpoints in xDS, the same pod in the model). One generic handler answers every
method, unary: the reply is JSON naming the pod (namespace, service, pod) and the method that
arrived (Python's gRPC server does not expose the `:authority`; the caller knows its target).
`/routeproof.Echo/Status<code>` answers with that gRPC status code instead, so an outcome can be
told from a broken route.
"""

from __future__ import annotations

import json
from concurrent import futures

import attrs
import grpc

__all__ = ["ECHO_METHOD", "GrpcEchoPod", "GrpcEchoReply"]

ECHO_METHOD = "/routeproof.Echo/Call"
"""The method proxyless clients call: any method is answered alike."""
_STATUS_PREFIX = "/routeproof.Echo/Status"


@attrs.frozen
class GrpcEchoReply:
    namespace: str
    service: str
    pod: str
    method: str

    @classmethod
    def from_bytes(cls, body: bytes) -> GrpcEchoReply:
        """Parse a reply; ValueError if it is not one."""
        try:
            document = json.loads(body)
            return cls(**{field: str(document[field]) for field in attrs.fields_dict(cls)})
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a gRPC echo reply: {body[:80]!r}") from error

    def to_bytes(self) -> bytes:
        return json.dumps(attrs.asdict(self), sort_keys=True).encode()


class _EchoHandler(grpc.GenericRpcHandler):
    def __init__(self, namespace: str, service: str, pod: str) -> None:
        self._identity = (namespace, service, pod)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = str(handler_call_details.method)
        namespace, service, pod = self._identity

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            if method.startswith(_STATUS_PREFIX):
                code = _status_code(method.removeprefix(_STATUS_PREFIX))
                context.abort(code, f"{pod} answers {code.name} as asked")
            return GrpcEchoReply(namespace, service, pod, method).to_bytes()

        return grpc.unary_unary_rpc_method_handler(answer)


def _status_code(text: str) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if text.isdigit() and code.value[0] == int(text) and code is not grpc.StatusCode.OK:
            return code
    return grpc.StatusCode.INVALID_ARGUMENT


class GrpcEchoPod:
    """One pod's gRPC server on 127.0.0.1, port chosen by the OS. Stopping it cancels its
    RPCs and closes its connections: a stopped pod must not answer on a kept channel."""

    def __init__(self, namespace: str, service: str, pod: str) -> None:
        self._identity = (namespace, service, pod)
        self._server: grpc.Server | None = None
        self._port = 0

    @property
    def endpoint(self) -> tuple[str, int]:
        if not self._port:
            raise RuntimeError(f"gRPC echo pod {self._identity[2]} was never started")
        return ("127.0.0.1", self._port)

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> GrpcEchoPod:
        if self._server is not None:
            return self
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="grpc-echo"),
            handlers=[_EchoHandler(*self._identity)],
            options=[("grpc.so_reuseport", 0)],
        )
        port = server.add_insecure_port("127.0.0.1:0")
        if port == 0:
            raise OSError(f"could not bind gRPC echo pod {self._identity[2]}")
        server.start()
        self._server, self._port = server, port
        return self

    def stop(self) -> None:
        """Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait(5)

    def __enter__(self) -> GrpcEchoPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
