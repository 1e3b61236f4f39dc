"""The invariants checked after every step, one idea per module; `Session.check` orders them."""

from harness.lockstep.invariants.counters import EnvoyCounters, allowed_removals
from harness.lockstep.invariants.grpc import grpc_violations
from harness.lockstep.invariants.liveness import (
    RECONCILE_SLACK,
    liveness_violations,
    step_bound,
)
from harness.lockstep.invariants.readiness import readiness_violations
from harness.lockstep.invariants.routing import (
    Addresses,
    Mismatch,
    observed_outcome,
    routing_violations,
)
from harness.lockstep.invariants.subscriptions import FetchTimeouts
from harness.lockstep.invariants.window import (
    Sample,
    WindowProbe,
    across_streams,
    replaced_ports,
    updated_ports,
    window_violations,
)
from harness.lockstep.verdict import InvariantViolated, Strength, Violation

__all__ = [
    "RECONCILE_SLACK",
    "Addresses",
    "EnvoyCounters",
    "FetchTimeouts",
    "InvariantViolated",
    "Mismatch",
    "Sample",
    "Strength",
    "Violation",
    "WindowProbe",
    "across_streams",
    "allowed_removals",
    "grpc_violations",
    "liveness_violations",
    "observed_outcome",
    "readiness_violations",
    "replaced_ports",
    "routing_violations",
    "step_bound",
    "updated_ports",
    "window_violations",
]
