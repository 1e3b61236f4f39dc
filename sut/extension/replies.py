"""How the client builds each hook's request and reads its reply, without any I/O.

Reading a reply is where "empty response = no change" (as in Envoy Gateway) and the structural
checks live. Structural means the reply cannot even be indexed by name: it does not parse, or a
returned resource list holds an unnamed resource or two resources of one name. Whether the
resources make sense to Envoy (references, header names, ...) is the runner's question, not this
module's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.transport_sockets.tls.v3.secret_pb2 import Secret
from google.protobuf.message import DecodeError, Message

from sut.errors import ExtensionError
from sut.extension.generated import extension_pb2
from sut.extension.hooks import (
    FailureKind,
    Hook,
    ListenerContext,
    RouteContext,
    TranslateContext,
    TranslateModifyResult,
)

__all__ = [
    "listener_request",
    "read_listener_reply",
    "read_route_reply",
    "read_translate_reply",
    "read_virtual_host_reply",
    "route_request",
    "structural_errors",
    "translate_request",
    "virtual_host_request",
]


def _invalid(hook: Hook, message: str) -> ExtensionError:
    return ExtensionError(hook.value, FailureKind.INVALID_OUTPUT.value, message)


def _parse(hook: Hook, kind: type[Message], raw: bytes) -> Any:
    try:
        return kind.FromString(raw)
    except DecodeError as error:
        raise _invalid(hook, f"reply does not parse as {kind.__name__}: {error}") from error


def _resources(resources: Iterable[Any], kind: type[Message]) -> list[Any]:
    listed = list(resources)
    for resource in listed:
        if not isinstance(resource, kind):
            raise TypeError(f"expected {kind.__name__}, got {type(resource).__name__}")
    return listed


def structural_errors(kind: str, names: Sequence[str]) -> list[str]:
    """What makes a list of resources impossible to index by name: empty or repeated names."""
    errors = []
    seen: set[str] = set()
    for position, name in enumerate(names):
        if not name:
            errors.append(f"{kind} #{position} has no name")
        elif name in seen:
            errors.append(f"{kind} {name!r} appears more than once")
        seen.add(name)
    return errors


# --- PostRouteModify -----------------------------------------------------------------------


def route_request(route: Route, context: RouteContext) -> Any:
    _resources([route], Route)
    return extension_pb2.PostRouteModifyRequest(
        route=route,
        post_route_context=extension_pb2.PostRouteExtensionContext(
            extension_resources=[
                extension_pb2.ExtensionResource(unstructured_bytes=raw)
                for raw in context.extension_resources
            ],
            hostnames=list(context.hostnames),
        ),
    )


def read_route_reply(raw: bytes, route: Route) -> Route:
    """The modified Route; the one sent when the reply carries none."""
    reply = _parse(Hook.POST_ROUTE_MODIFY, extension_pb2.PostRouteModifyResponse, raw)
    return reply.route if reply.HasField("route") else route


# --- PostVirtualHostModify -----------------------------------------------------------------


def virtual_host_request(virtual_host: VirtualHost) -> Any:
    _resources([virtual_host], VirtualHost)
    return extension_pb2.PostVirtualHostModifyRequest(
        virtual_host=virtual_host,
        post_virtual_host_context=extension_pb2.PostVirtualHostExtensionContext(),
    )


def read_virtual_host_reply(raw: bytes, virtual_host: VirtualHost) -> VirtualHost:
    hook = Hook.POST_VIRTUAL_HOST_MODIFY
    reply = _parse(hook, extension_pb2.PostVirtualHostModifyResponse, raw)
    if not reply.HasField("virtual_host"):
        return virtual_host
    if not reply.virtual_host.name:
        raise _invalid(hook, "the returned VirtualHost has no name")
    return reply.virtual_host


# --- PostHTTPListenerModify ----------------------------------------------------------------


def listener_request(listener: Listener, context: ListenerContext) -> Any:
    _resources([listener], Listener)
    return extension_pb2.PostHTTPListenerModifyRequest(
        listener=listener,
        post_listener_context=extension_pb2.PostHTTPListenerExtensionContext(
            extension_resources=[
                extension_pb2.ExtensionResource(unstructured_bytes=raw)
                for raw in context.extension_resources
            ]
        ),
    )


def read_listener_reply(raw: bytes, listener: Listener) -> Listener:
    hook = Hook.POST_HTTP_LISTENER_MODIFY
    reply = _parse(hook, extension_pb2.PostHTTPListenerModifyResponse, raw)
    if not reply.HasField("listener"):
        return listener
    if not reply.listener.name:
        raise _invalid(hook, "the returned Listener has no name")
    return reply.listener


# --- PostTranslateModify -------------------------------------------------------------------


def translate_request(
    clusters: Iterable[Cluster],
    secrets: Iterable[Secret],
    listeners: Iterable[Listener],
    routes: Iterable[RouteConfiguration],
    context: TranslateContext,
) -> Any:
    del context  # empty, as in Envoy Gateway
    return extension_pb2.PostTranslateModifyRequest(
        post_translate_context=extension_pb2.PostTranslateExtensionContext(),
        clusters=_resources(clusters, Cluster),
        secrets=_resources(secrets, Secret),
        listeners=_resources(listeners, Listener),
        routes=_resources(routes, RouteConfiguration),
    )


def read_translate_reply(raw: bytes, sent: TranslateModifyResult) -> TranslateModifyResult:
    """The lists that replace the translated ones; `sent` itself when the reply is empty."""
    hook = Hook.POST_TRANSLATE_MODIFY
    reply = _parse(hook, extension_pb2.PostTranslateModifyResponse, raw)
    if reply.ByteSize() == 0:
        return sent
    errors = [
        *structural_errors("Cluster", [cluster.name for cluster in reply.clusters]),
        *structural_errors("Secret", [secret.name for secret in reply.secrets]),
        *structural_errors("Listener", [listener.name for listener in reply.listeners]),
        *structural_errors("RouteConfiguration", [route.name for route in reply.routes]),
    ]
    if errors:
        raise _invalid(hook, "; ".join(errors))
    return TranslateModifyResult(
        clusters=tuple(reply.clusters),
        secrets=tuple(reply.secrets),
        listeners=tuple(reply.listeners),
        routes=tuple(reply.routes),
    )
