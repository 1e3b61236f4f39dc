"""What the stack notes about the control plane and the manifests, as values."""

from __future__ import annotations

import attrs

from sut.gatewayapi import ObjectKey
from sut.xds import Snapshot

__all__ = ["ListenerOrigin", "Publication", "Reconcile"]


@attrs.frozen
class Publication:
    """A snapshot the control plane left in the cache after one of its actions, as the harness saw
    it: what proxies may be sent from then on. `lifetime` counts control-plane starts."""

    at: float
    lifetime: int
    snapshot: Snapshot


@attrs.frozen
class Reconcile:
    """One control-plane action the harness waited on, and how long it took."""

    at: float
    seconds: float
    outcome: str
    error: str = ""
    hook_seconds: float = 0.0
    """How long the extension hooks took (`ReconcileResult.hook_seconds`)."""


@attrs.frozen
class ListenerOrigin:
    """Which Gateway port an Envoy listener serves, as written in the manifests."""

    gateway: ObjectKey
    port: int
    protocol: str
