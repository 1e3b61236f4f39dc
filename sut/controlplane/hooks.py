"""Running the extension hooks over a translation, the way Envoy Gateway calls them.

PostRouteModify per route, PostVirtualHostModify per virtual host, PostHTTPListenerModify per
listener, then PostTranslateModify over the whole result. The readiness listener is never shown to
the extension, so no hook can rewrite it.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from envoy.config.route.v3 import route_pb2

from sut.extension import ExtensionClient, Hook, ListenerContext, RouteContext
from sut.translate import XdsResources

__all__ = ["run_hooks"]


def run_hooks(
    resources: XdsResources, client: ExtensionClient, hooks: Iterable[Hook]
) -> XdsResources:
    """The translation as modified by the enabled hooks; raises ExtensionError on a failure."""
    enabled = frozenset(hooks)
    routes = resources.route_configurations
    if Hook.POST_ROUTE_MODIFY in enabled or Hook.POST_VIRTUAL_HOST_MODIFY in enabled:
        routes = tuple(_modify_route_configuration(rc, client, enabled) for rc in routes)
    readiness = [item for item in resources.listeners if item.name == resources.readiness_listener]
    listeners = tuple(
        item for item in resources.listeners if item.name != resources.readiness_listener
    )
    if Hook.POST_HTTP_LISTENER_MODIFY in enabled:
        listeners = tuple(
            client.post_http_listener_modify(item, ListenerContext()) for item in listeners
        )
    clusters, secrets = resources.clusters, resources.secrets
    if Hook.POST_TRANSLATE_MODIFY in enabled:
        result = client.post_translate_modify(clusters, secrets, listeners, routes)
        clusters, secrets = result.clusters, result.secrets
        listeners, routes = result.listeners, result.routes
    return attrs.evolve(
        resources,
        listeners=tuple(sorted((*listeners, *readiness), key=lambda item: item.name)),
        route_configurations=tuple(sorted(routes, key=lambda item: item.name)),
        clusters=tuple(sorted(clusters, key=lambda item: item.name)),
        secrets=tuple(sorted(secrets, key=lambda item: item.name)),
    )


def _modify_route_configuration(
    config: route_pb2.RouteConfiguration, client: ExtensionClient, enabled: frozenset[Hook]
) -> route_pb2.RouteConfiguration:
    modified = route_pb2.RouteConfiguration()
    modified.CopyFrom(config)
    for index, host in enumerate(config.virtual_hosts):
        new_host = modified.virtual_hosts[index]
        if Hook.POST_ROUTE_MODIFY in enabled:
            context = RouteContext(hostnames=tuple(host.domains))
            for position, route in enumerate(host.routes):
                new_host.routes[position].CopyFrom(client.post_route_modify(route, context))
        if Hook.POST_VIRTUAL_HOST_MODIFY in enabled:
            new_host.CopyFrom(client.post_virtual_host_modify(new_host))
    return modified
