"""The vocabulary shared by the extension client, the reference server and the runner.

Hook names are the rpc names of `envoygateway.extension.EnvoyGatewayExtension`, so an
`ExtensionError.hook` reads the same as Envoy Gateway's logs. Values here are plain frozen classes;
nothing in this module does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import attrs
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret

__all__ = [
    "MARKER_HEADER",
    "READINESS_PREFIX",
    "FailureKind",
    "Fault",
    "Hook",
    "ListenerContext",
    "RouteContext",
    "TranslateContext",
    "TranslateModifyResult",
    "is_readiness",
    "marker_value",
]

MARKER_HEADER = "x-routeproof-extension"
"""Response header a healthy extension adds to every route; its value names the generation."""

READINESS_PREFIX = "envoy-gateway-proxy-ready"
"""Listeners and RouteConfigurations named so serve `/ready`; nothing may rewrite them."""


class Hook(StrEnum):
    """One rpc of the extension service."""

    POST_ROUTE_MODIFY = "PostRouteModify"
    POST_VIRTUAL_HOST_MODIFY = "PostVirtualHostModify"
    POST_HTTP_LISTENER_MODIFY = "PostHTTPListenerModify"
    POST_TRANSLATE_MODIFY = "PostTranslateModify"


class FailureKind(StrEnum):
    """`ExtensionError.kind`: why a hook produced nothing usable."""

    UNAVAILABLE = "unavailable"
    """The server could not be reached (gRPC UNAVAILABLE), after every retry."""
    DEADLINE = "deadline"
    """No answer within the per-call deadline, or the calls' shared `Budget` ran out."""
    ERROR = "error"
    """Any other gRPC status."""
    INVALID_OUTPUT = "invalid-output"
    """An answer arrived but is structurally broken (unparseable, unnamed or duplicate names)."""


class Fault(StrEnum):
    """What the reference extension server does for one hook; the harness switches it at runtime."""

    HEALTHY = "healthy"
    UNAVAILABLE = "unavailable"
    HANG = "hang"
    INTERNAL = "internal"
    INVALID_REJECT = "invalid-reject"
    INVALID_DANGLING = "invalid-dangling"


def marker_value(generation: int) -> str:
    """The value of MARKER_HEADER for one generation of the extension's change."""
    return f"gen-{generation}"


def is_readiness(name: str) -> bool:
    return name.startswith(READINESS_PREFIX)


def _bytes_tuple(value: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(value)


def _str_tuple(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("hostnames must be a sequence of strings, not one string")
    return tuple(value)


def _all_bytes(_instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for item in value:
        if not isinstance(item, bytes):
            raise TypeError(f"{attribute.name} holds {type(item).__name__}, expected bytes")


def _all_str(_instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"{attribute.name} holds {type(item).__name__}, expected str")


@attrs.frozen
class RouteContext:
    """PostRouteExtensionContext: what Envoy Gateway tells the extension about a route's origin."""

    hostnames: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple, validator=_all_str)
    extension_resources: tuple[bytes, ...] = attrs.field(
        default=(), converter=_bytes_tuple, validator=_all_bytes
    )
    """Unstructured JSON of each extension resource the HTTPRoute uses as an extensionRef."""


@attrs.frozen
class ListenerContext:
    """PostHTTPListenerExtensionContext."""

    extension_resources: tuple[bytes, ...] = attrs.field(
        default=(), converter=_bytes_tuple, validator=_all_bytes
    )


@attrs.frozen
class TranslateContext:
    """PostTranslateExtensionContext: empty, as in Envoy Gateway; kept so the API can grow."""


def _typed_tuple(kind: type) -> Any:
    def check(_instance: object, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        for item in value:
            if not isinstance(item, kind):
                raise TypeError(
                    f"{attribute.name} holds {type(item).__name__}, expected {kind.__name__}"
                )

    return check


@attrs.frozen
class TranslateModifyResult:
    """What PostTranslateModify leaves of a translation: these lists replace the translated ones.

    Holds protobuf messages, which are mutable and unhashable: compare results with `==`, do not
    hash them, and do not mutate the messages.
    """

    clusters: tuple[Cluster, ...] = attrs.field(converter=tuple, validator=_typed_tuple(Cluster))
    secrets: tuple[Secret, ...] = attrs.field(converter=tuple, validator=_typed_tuple(Secret))
    listeners: tuple[Listener, ...] = attrs.field(converter=tuple, validator=_typed_tuple(Listener))
    routes: tuple[RouteConfiguration, ...] = attrs.field(
        converter=tuple, validator=_typed_tuple(RouteConfiguration)
    )
    """RouteConfigurations (the field keeps Envoy Gateway's name, `routes`)."""
