"""The control-plane runner: resources -> translation -> extension hooks -> snapshot -> cache."""

from sut.controlplane.policy import (
    ERROR_ROUTE_CONFIGURATION,
    ERROR_VIRTUAL_HOST,
    FailurePolicy,
    error_route_configuration,
    with_inline_error,
    with_rds_error,
)
from sut.controlplane.runner import ControlPlane, ControlPlaneSettings, Outcome, ReconcileResult
from sut.controlplane.validate import envoy_rejections

__all__ = [
    "ERROR_ROUTE_CONFIGURATION",
    "ERROR_VIRTUAL_HOST",
    "ControlPlane",
    "ControlPlaneSettings",
    "FailurePolicy",
    "Outcome",
    "ReconcileResult",
    "envoy_rejections",
    "error_route_configuration",
    "with_inline_error",
    "with_rds_error",
]
