"""Running the extension hooks over a translation, the way Envoy Gateway calls them.

PostRouteModify per route (the 421 routes the gateway adds for HTTPS listeners sharing a port
included), PostVirtualHostModify per virtual host, PostHTTPListenerModify per listener, then
PostTranslateModify over the whole result. The readiness listener is never shown to
the extension, so no hook can rewrite it.

A failed call does not throw away the stages that completed before it: Envoy Gateway applies the
per-route, per-virtual-host and per-listener changes while it translates, so when
PostTranslateModify fails they are already in what its failure handling rewrites. `run_hooks`
returns that work together with the failure, and the runner decides what to publish.

Every call of one run shares the `Budget` the runner passes (None: no budget, each call has only
its own deadline). Once the budget is spent every remaining call fails at once as "deadline", so a
hanging extension costs the budget, not N calls x deadline; with fail-open those calls are
"no change" and the run goes on to the end without waiting.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from envoy.config.route.v3 import route_pb2

from sut.errors import ExtensionError
from sut.extension import (
    Budget,
    ExtensionClient,
    FailureKind,
    Hook,
    ListenerContext,
    RouteContext,
)
from sut.translate import XdsResources

__all__ = ["HookRun", "run_hooks"]


@attrs.frozen
class HookRun:
    """What the enabled hooks made of a translation.

    `resources` is the whole result when `failure` is None; otherwise the result of the stages
    that completed before the failed call (the translation itself if none did).
    """

    resources: XdsResources
    failure: ExtensionError | None = None


def run_hooks(
    resources: XdsResources,
    client: ExtensionClient,
    hooks: Iterable[Hook],
    *,
    budget: Budget | None = None,
) -> HookRun:
    """The translation as modified by the enabled hooks, stage by stage, up to a failed call;
    every call is made within `budget`."""
    enabled = frozenset(hooks)
    done = resources
    try:
        if Hook.POST_ROUTE_MODIFY in enabled or Hook.POST_VIRTUAL_HOST_MODIFY in enabled:
            done = attrs.evolve(
                done,
                route_configurations=tuple(
                    _modify_route_configuration(rc, client, enabled, budget)
                    for rc in done.route_configurations
                ),
            )
        if Hook.POST_HTTP_LISTENER_MODIFY in enabled:
            done = attrs.evolve(
                done,
                listeners=tuple(
                    item
                    if item.name == done.readiness_listener
                    else client.post_http_listener_modify(item, ListenerContext(), budget=budget)
                    for item in done.listeners
                ),
            )
        if Hook.POST_TRANSLATE_MODIFY in enabled:
            done = _post_translate(done, client, budget)
    except ExtensionError as failure:
        return HookRun(_sorted(done), failure)
    return HookRun(_sorted(done))


def _post_translate(
    resources: XdsResources, client: ExtensionClient, budget: Budget | None
) -> XdsResources:
    readiness = [item for item in resources.listeners if item.name == resources.readiness_listener]
    served = [item for item in resources.listeners if item.name != resources.readiness_listener]
    result = client.post_translate_modify(
        resources.clusters, resources.secrets, served, resources.route_configurations, budget=budget
    )
    if any(item.name == resources.readiness_listener for item in result.listeners):
        raise ExtensionError(
            Hook.POST_TRANSLATE_MODIFY.value,
            FailureKind.INVALID_OUTPUT.value,
            f"returned a Listener named {resources.readiness_listener!r}, the readiness listener",
        )
    return attrs.evolve(
        resources,
        listeners=(*result.listeners, *readiness),
        route_configurations=result.routes,
        clusters=result.clusters,
        secrets=result.secrets,
    )


def _sorted(resources: XdsResources) -> XdsResources:
    return attrs.evolve(
        resources,
        listeners=tuple(sorted(resources.listeners, key=lambda item: item.name)),
        route_configurations=tuple(
            sorted(resources.route_configurations, key=lambda item: item.name)
        ),
        clusters=tuple(sorted(resources.clusters, key=lambda item: item.name)),
        secrets=tuple(sorted(resources.secrets, key=lambda item: item.name)),
    )


def _modify_route_configuration(
    config: route_pb2.RouteConfiguration,
    client: ExtensionClient,
    enabled: frozenset[Hook],
    budget: Budget | None,
) -> route_pb2.RouteConfiguration:
    modified = route_pb2.RouteConfiguration()
    modified.CopyFrom(config)
    for index, host in enumerate(config.virtual_hosts):
        new_host = modified.virtual_hosts[index]
        if Hook.POST_ROUTE_MODIFY in enabled:
            context = RouteContext(hostnames=tuple(host.domains))
            for position, route in enumerate(host.routes):
                modified_route = client.post_route_modify(route, context, budget=budget)
                new_host.routes[position].CopyFrom(modified_route)
        if Hook.POST_VIRTUAL_HOST_MODIFY in enabled:
            new_host.CopyFrom(client.post_virtual_host_modify(new_host, budget=budget))
    return modified
