"""The one error vocabulary of the loopback Envoy driver."""

from __future__ import annotations

__all__ = ["AdminError", "EnvoyError", "EnvoyExitedError", "EnvoyTimeoutError"]


class EnvoyError(Exception):
    """Envoy could not be started, did not become ready, or exited."""


class EnvoyExitedError(EnvoyError):
    """The Envoy process exited while we waited for it."""


class EnvoyTimeoutError(EnvoyError):
    """Envoy did not reach the awaited state before the deadline."""


class AdminError(EnvoyError):
    """The admin endpoint did not answer, or answered something unparseable."""
