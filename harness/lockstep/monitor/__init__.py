"""The independent xDS protocol monitor: the relay's bytes, decoded and judged.

`wire` turns what the relay delivered into gRPC messages per stream, in order (HTTP/2 with
`h2`, sans-IO); `messages` turns those into typed xDS requests and responses and says what each
resource references; `view` rebuilds what each client subscribes to and holds; `rules` states
the protocol rules with their strength and spec section; `monitor` applies them as messages
arrive, with `timeline` (what the harness did, in time) and `report` (the decoded exchange).
Nothing here reads the control plane's own logs or state (no `sut`).
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
from harness.lockstep.monitor.monitor import Finding, ProtocolMonitor
from harness.lockstep.monitor.rules import RULES, Rule
from harness.lockstep.monitor.timeline import Published, Timeline
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
    "RULES",
    "SECRET",
    "TYPE_SHORT",
    "XDS_METHODS",
    "ConnectionClosed",
    "ConnectionDecoder",
    "ConnectionOpened",
    "DecodeProblem",
    "Direction",
    "Finding",
    "GrpcMessage",
    "HoldChanged",
    "ProtocolMonitor",
    "Published",
    "References",
    "Rule",
    "StreamEnded",
    "StreamKey",
    "Timeline",
    "WireEvent",
    "WireRecorder",
    "WireResource",
    "XdsMethod",
    "XdsRequest",
    "XdsResponse",
    "decode",
    "references",
]
