"""What the reference extension server answers, as pure functions of (hook, fault, request).

No gRPC here: `respond` returns an Outcome (a reply message, a status to abort with, or "hang"),
and the servicer in `server.py` carries it out. Every transform copies its input.

Rules of this module:
- healthy: every Route gets MARKER_HEADER = gen-<N> (response_headers_to_add,
  OVERWRITE_IF_EXISTS_OR_ADD; an older marker is replaced, so marking twice equals marking once).
  PostRouteModify marks its route; PostTranslateModify marks every route of every
  RouteConfiguration except the readiness one and passes everything else through.
  PostVirtualHostModify and PostHTTPListenerModify answer empty, which means "no change".
- invalid-reject: one thing Envoy refuses, on top of the healthy change where there is one.
  Route, VirtualHost, RouteConfiguration: `:path` in response_headers_to_add (Envoy: "':-prefixed
  or host headers may not be modified"). Listener: its first filter chain duplicated under another
  name (Envoy: "filter chain ... has the same matching rules defined as ...").
- invalid-dangling: a reference to something that does not exist. Routes (PostRouteModify,
  PostVirtualHostModify) forward to MISSING_CLUSTER; a Listener's HCMs read RDS
  MISSING_ROUTE_CONFIGURATION; PostTranslateModify drops every RouteConfiguration a non-readiness
  Listener names over RDS (and marks the rest).
- unavailable: abort with UNAVAILABLE (the server uses this only while other hooks still work;
  when every hook is unavailable it stops listening altogether).
- internal: abort with INTERNAL. hang: the caller waits (see server.py).
- Readiness resources (READINESS_PREFIX) are never changed, whatever the fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
from envoy.config.core.v3.base_pb2 import HeaderValue, HeaderValueOption
from envoy.config.listener.v3.listener_components_pb2 import FilterChain
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import Route, RouteAction, VirtualHost
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from sut.extension.generated import extension_pb2
from sut.extension.hooks import MARKER_HEADER, Fault, Hook, is_readiness, marker_value
from sut.translate.envoy_protos import (
    ads_config_source,
    connection_managers,
    with_connection_managers,
)

__all__ = [
    "MISSING_CLUSTER",
    "MISSING_ROUTE_CONFIGURATION",
    "REJECTED_HEADER",
    "Abort",
    "Hang",
    "Outcome",
    "Reply",
    "dangle_listener",
    "dangle_route",
    "dangle_virtual_host",
    "drop_named_route_configurations",
    "mark_route",
    "mark_route_configuration",
    "reject_listener",
    "reject_route",
    "reject_route_configuration",
    "reject_virtual_host",
    "request_type",
    "respond",
    "response_type",
]

MISSING_CLUSTER = "routeproof-extension/missing-cluster"
MISSING_ROUTE_CONFIGURATION = "routeproof-extension/missing-route-configuration"
REJECTED_HEADER = ":path"
_M = TypeVar("_M", bound=Message)


@attrs.frozen
class Reply:
    response: Message


@attrs.frozen
class Abort:
    code: str
    """A grpc.StatusCode name, e.g. "INTERNAL"."""
    details: str


@attrs.frozen
class Hang:
    """Do not answer until the fault changes, the server stops or the caller gives up."""


Outcome = Reply | Abort | Hang

_MESSAGES: dict[Hook, tuple[type[Message], type[Message]]] = {
    Hook.POST_ROUTE_MODIFY: (
        extension_pb2.PostRouteModifyRequest,
        extension_pb2.PostRouteModifyResponse,
    ),
    Hook.POST_VIRTUAL_HOST_MODIFY: (
        extension_pb2.PostVirtualHostModifyRequest,
        extension_pb2.PostVirtualHostModifyResponse,
    ),
    Hook.POST_HTTP_LISTENER_MODIFY: (
        extension_pb2.PostHTTPListenerModifyRequest,
        extension_pb2.PostHTTPListenerModifyResponse,
    ),
    Hook.POST_TRANSLATE_MODIFY: (
        extension_pb2.PostTranslateModifyRequest,
        extension_pb2.PostTranslateModifyResponse,
    ),
}


def request_type(hook: Hook) -> type[Message]:
    return _MESSAGES[hook][0]


def response_type(hook: Hook) -> type[Message]:
    return _MESSAGES[hook][1]


def _copy(message: _M) -> _M:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def _set_header(
    options: Iterable[HeaderValueOption], key: str, value: str
) -> list[HeaderValueOption]:
    kept = [option for option in options if option.header.key.lower() != key.lower()]
    kept.append(
        HeaderValueOption(
            header=HeaderValue(key=key, value=value),
            append_action=HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    )
    return kept


def _replace_headers(container: Any, headers: list[HeaderValueOption]) -> None:
    field = container.response_headers_to_add
    del field[:]
    field.extend(headers)


# --- healthy ---------------------------------------------------------------------------------


def mark_route(route: Route, generation: int) -> Route:
    """The route with MARKER_HEADER set to this generation (replacing an older marker)."""
    marked = _copy(route)
    _replace_headers(
        marked,
        _set_header(marked.response_headers_to_add, MARKER_HEADER, marker_value(generation)),
    )
    return marked


def _map_routes(
    route_configuration: RouteConfiguration, transform: Callable[[Route], Route]
) -> RouteConfiguration:
    changed = _copy(route_configuration)
    for virtual_host in changed.virtual_hosts:
        routes = [transform(route) for route in virtual_host.routes]
        del virtual_host.routes[:]
        virtual_host.routes.extend(routes)
    return changed


def mark_route_configuration(
    route_configuration: RouteConfiguration, generation: int
) -> RouteConfiguration:
    """Every route marked, unless this is the readiness RouteConfiguration."""
    if is_readiness(route_configuration.name):
        return _copy(route_configuration)
    return _map_routes(route_configuration, lambda route: mark_route(route, generation))


# --- invalid-reject ------------------------------------------------------------------------


def _with_rejected_header(container: Any) -> None:
    container.response_headers_to_add.append(
        HeaderValueOption(header=HeaderValue(key=REJECTED_HEADER, value="/routeproof-extension"))
    )


def reject_route(route: Route) -> Route:
    """The route with a response header Envoy refuses (its RouteConfiguration is NACKed)."""
    rejected = _copy(route)
    _with_rejected_header(rejected)
    return rejected


def reject_virtual_host(virtual_host: VirtualHost) -> VirtualHost:
    rejected = _copy(virtual_host)
    _with_rejected_header(rejected)
    return rejected


def reject_route_configuration(route_configuration: RouteConfiguration) -> RouteConfiguration:
    """Rejected at RouteConfiguration level, so it is rejected even when it has no routes."""
    rejected = _copy(route_configuration)
    if not is_readiness(rejected.name):
        _with_rejected_header(rejected)
    return rejected


def reject_listener(listener: Listener) -> Listener:
    """A second filter chain with the same match as the first: Envoy rejects the Listener."""
    rejected = _copy(listener)
    if is_readiness(rejected.name):
        return rejected
    if rejected.filter_chains:
        duplicate = _copy(rejected.filter_chains[0])
    else:
        rejected.filter_chains.append(FilterChain(name="routeproof-extension/original"))
        duplicate = FilterChain()
    duplicate.name = "routeproof-extension/duplicate"
    rejected.filter_chains.append(duplicate)
    return rejected


# --- invalid-dangling ----------------------------------------------------------------------


def dangle_route(route: Route) -> Route:
    """The route forwarding to a cluster that does not exist (whatever its action was)."""
    dangling = _copy(route)
    dangling.route.CopyFrom(RouteAction(cluster=MISSING_CLUSTER))
    return dangling


def dangle_virtual_host(virtual_host: VirtualHost) -> VirtualHost:
    dangling = _copy(virtual_host)
    routes = [dangle_route(route) for route in dangling.routes]
    del dangling.routes[:]
    dangling.routes.extend(routes)
    return dangling


def dangle_listener(listener: Listener) -> Listener:
    """Every HCM of the Listener reads its routes over RDS from a name nothing provides, over
    the transport its RDS already uses (ADS, or a per-type stream), at Envoy's fetch timeout."""
    if is_readiness(listener.name):
        return _copy(listener)

    def dangle(manager: hcm_pb2.HttpConnectionManager) -> None:
        source = ads_config_source()
        if manager.rds.config_source.HasField("api_config_source"):
            source.api_config_source.CopyFrom(manager.rds.config_source.api_config_source)
        manager.rds.CopyFrom(
            hcm_pb2.Rds(route_config_name=MISSING_ROUTE_CONFIGURATION, config_source=source)
        )

    return with_connection_managers(listener, dangle)


def _rds_names(listeners: Iterable[Listener]) -> frozenset[str]:
    names = set()
    for listener in listeners:
        if is_readiness(listener.name):
            continue
        for _, manager in connection_managers(listener):
            if manager.HasField("rds"):
                names.add(manager.rds.route_config_name)
    return frozenset(names)


def drop_named_route_configurations(
    listeners: Iterable[Listener], routes: Iterable[RouteConfiguration]
) -> list[RouteConfiguration]:
    """The RouteConfigurations no non-readiness Listener names over RDS (the rest are dropped)."""
    named = _rds_names(listeners)
    return [_copy(route) for route in routes if route.name not in named]


# --- dispatch ------------------------------------------------------------------------------


def _translate_reply(
    request: Any,
    routes: list[RouteConfiguration],
    listeners: list[Listener] | None = None,
) -> Reply:
    return Reply(
        extension_pb2.PostTranslateModifyResponse(
            clusters=[_copy(cluster) for cluster in request.clusters],
            secrets=[_copy(secret) for secret in request.secrets],
            listeners=listeners
            if listeners is not None
            else [_copy(listener) for listener in request.listeners],
            routes=routes,
        )
    )


def _respond_healthy(hook: Hook, request: Any, generation: int) -> Reply:
    if hook is Hook.POST_ROUTE_MODIFY:
        route = request.route
        return Reply(extension_pb2.PostRouteModifyResponse(route=mark_route(route, generation)))
    if hook is Hook.POST_TRANSLATE_MODIFY:
        routes = [mark_route_configuration(rc, generation) for rc in request.routes]
        return _translate_reply(request, routes)
    return Reply(response_type(hook)())


def _respond_reject(hook: Hook, request: Any, generation: int) -> Reply:
    if hook is Hook.POST_ROUTE_MODIFY:
        route = reject_route(mark_route(request.route, generation))
        return Reply(extension_pb2.PostRouteModifyResponse(route=route))
    if hook is Hook.POST_VIRTUAL_HOST_MODIFY:
        virtual_host = reject_virtual_host(request.virtual_host)
        return Reply(extension_pb2.PostVirtualHostModifyResponse(virtual_host=virtual_host))
    if hook is Hook.POST_HTTP_LISTENER_MODIFY:
        listener = reject_listener(request.listener)
        return Reply(extension_pb2.PostHTTPListenerModifyResponse(listener=listener))
    routes = [
        reject_route_configuration(mark_route_configuration(rc, generation))
        for rc in request.routes
    ]
    return _translate_reply(request, routes)


def _respond_dangling(hook: Hook, request: Any, generation: int) -> Reply:
    if hook is Hook.POST_ROUTE_MODIFY:
        route = dangle_route(mark_route(request.route, generation))
        return Reply(extension_pb2.PostRouteModifyResponse(route=route))
    if hook is Hook.POST_VIRTUAL_HOST_MODIFY:
        virtual_host = dangle_virtual_host(request.virtual_host)
        return Reply(extension_pb2.PostVirtualHostModifyResponse(virtual_host=virtual_host))
    if hook is Hook.POST_HTTP_LISTENER_MODIFY:
        listener = dangle_listener(request.listener)
        return Reply(extension_pb2.PostHTTPListenerModifyResponse(listener=listener))
    kept = drop_named_route_configurations(request.listeners, request.routes)
    routes = [mark_route_configuration(rc, generation) for rc in kept]
    return _translate_reply(request, routes)


def respond(hook: Hook, fault: Fault, request: Message, generation: int) -> Outcome:
    """What the server does with one request under one fault."""
    expected = request_type(hook)
    if not isinstance(request, expected):
        raise TypeError(f"{hook} takes {expected.__name__}, got {type(request).__name__}")
    if fault is Fault.HEALTHY:
        return _respond_healthy(hook, request, generation)
    if fault is Fault.HANG:
        return Hang()
    if fault is Fault.UNAVAILABLE:
        return Abort("UNAVAILABLE", f"routeproof extension: {hook} is unavailable")
    if fault is Fault.INTERNAL:
        return Abort("INTERNAL", f"routeproof extension: injected INTERNAL error in {hook}")
    if fault is Fault.INVALID_REJECT:
        return _respond_reject(hook, request, generation)
    if fault is Fault.INVALID_DANGLING:
        return _respond_dangling(hook, request, generation)
    raise ValueError(f"unknown fault {fault!r}")
