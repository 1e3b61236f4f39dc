"""The independent xDS protocol monitor's eyes: the relay's bytes, decoded.

`wire` turns what the relay delivered into gRPC messages per stream, in order (HTTP/2 with
`h2`, sans-IO); `messages` turns those into typed xDS requests and responses and says what each
resource references. Nothing here reads the control plane's own logs or state (no `sut`).
"""

from harness.lockstep.monitor.messages import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    TYPE_SHORT,
    XDS_METHODS,
    References,
    StreamKey,
    WireResource,
    XdsMethod,
    XdsRequest,
    XdsResponse,
    decode,
    references,
)
from harness.lockstep.monitor.wire import (
    ConnectionClosed,
    ConnectionDecoder,
    ConnectionOpened,
    DecodeProblem,
    Direction,
    GrpcMessage,
    HoldChanged,
    StreamEnded,
    WireEvent,
    WireRecorder,
)

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "SECRET",
    "TYPE_SHORT",
    "XDS_METHODS",
    "ConnectionClosed",
    "ConnectionDecoder",
    "ConnectionOpened",
    "DecodeProblem",
    "Direction",
    "GrpcMessage",
    "HoldChanged",
    "References",
    "StreamEnded",
    "StreamKey",
    "WireEvent",
    "WireRecorder",
    "WireResource",
    "XdsMethod",
    "XdsRequest",
    "XdsResponse",
    "decode",
    "references",
]
