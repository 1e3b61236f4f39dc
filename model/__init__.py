"""The reference model: a pure state machine saying what every request must get.

It never imports `sut/`; the harness is the only place where model and SUT meet.
"""

from model.grpc import (
    CallOutcome,
    GrpcCall,
    GrpcServed,
    GrpcStatus,
    expected_grpc,
    proxyless_hosts,
    serving_port,
)
from model.machine import FAILURE_POLICIES, Extension, Fleet, Link, ModelState, pod_name
from model.routing import (
    Outcome,
    ProxyConfig,
    Request,
    Served,
    Status,
    Unreachable,
    effective_hostnames,
    expected_outcomes,
    expected_through,
    host_matches,
    path_matches,
    serving_clusters,
)
from model.world import (
    DEFAULT_GATEWAY,
    Backend,
    Gateway,
    GatewayListener,
    HeaderMatch,
    Match,
    Route,
    Rule,
    Service,
    World,
)

__all__ = [
    "DEFAULT_GATEWAY",
    "FAILURE_POLICIES",
    "Backend",
    "CallOutcome",
    "Extension",
    "Fleet",
    "Gateway",
    "GatewayListener",
    "GrpcCall",
    "GrpcServed",
    "GrpcStatus",
    "HeaderMatch",
    "Link",
    "Match",
    "ModelState",
    "Outcome",
    "ProxyConfig",
    "Request",
    "Route",
    "Rule",
    "Served",
    "Service",
    "Status",
    "Unreachable",
    "World",
    "effective_hostnames",
    "expected_grpc",
    "expected_outcomes",
    "expected_through",
    "host_matches",
    "path_matches",
    "pod_name",
    "proxyless_hosts",
    "serving_clusters",
    "serving_port",
]
