"""One error vocabulary for the SUT, split by whose fault it is.

- LocalProtocolError: our own bug (a state machine asked to do something illegal).
- RemoteProtocolError: the peer broke the protocol; the stream is closed.
- ConfigError: the user's configuration is wrong; it becomes a status condition or an exit 2.
- ExtensionError: an extension hook failed; the failure policy decides what is published.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ExtensionError",
    "LocalProtocolError",
    "ManifestError",
    "RemoteProtocolError",
    "RouteproofError",
    "TranslationError",
]


class RouteproofError(Exception):
    """Base of every error the SUT raises on purpose."""


class LocalProtocolError(RouteproofError):
    """Our side broke a protocol rule: a bug in routeproof itself."""


class RemoteProtocolError(RouteproofError):
    """The peer broke a protocol rule; the stream it arrived on must be closed."""


class ConfigError(RouteproofError):
    """The user's configuration is invalid."""


class ManifestError(ConfigError):
    """A manifest could not be loaded; names the document and the field."""

    def __init__(self, message: str, *, document: str = "", field: str = "") -> None:
        where = " ".join(part for part in (document, f"field {field}" if field else "") if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.document = document
        self.field = field
        self.reason = message


class TranslationError(ConfigError):
    """A resource cannot be translated; it becomes a status condition, never a crash."""


class ExtensionError(RouteproofError):
    """An extension hook failed (unavailable, deadline, error status or invalid output)."""

    def __init__(self, hook: str, kind: str, message: str) -> None:
        super().__init__(f"extension hook {hook} failed ({kind}): {message}")
        self.hook = hook
        self.kind = kind
        self.reason = message
