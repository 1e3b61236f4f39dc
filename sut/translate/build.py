"""Stage 1: Gateway API resources -> IR and status, exactly as the Gateway API spec says.

One stage per module, each stating the rules (and the spec text) it implements:
`listeners` (served Gateways, listener validity; `certificates` for HTTPS), `planning` (what
each rule becomes), `attachment` (which listeners a route attaches to, route status),
`virtualhosts` (IR listeners, virtual hosts, Listener Isolation, 421s), `precedence` (route
order), `policies` (BackendTrafficPolicies set the clusters of the routes they cover; without
one, clusters keep the defaults) and `status` (Gateway status).
"""

from __future__ import annotations

import attrs

from sut.gatewayapi import Resources, Statuses
from sut.translate.attachment import attach_routes, route_result
from sut.translate.ir import IR, Cluster, ClusterSettings, Forward, IRListener
from sut.translate.listeners import evaluate_gateways, served_gateways
from sut.translate.options import TranslateOptions
from sut.translate.policies import resolve_backend_traffic_policies
from sut.translate.status import gateway_status
from sut.translate.virtualhosts import ir_listeners

__all__ = ["build_ir"]


def build_ir(resources: Resources, options: TranslateOptions | None = None) -> tuple[IR, Statuses]:
    """Stage 1: decide what every served Gateway serves, and the status of every object."""
    options = options or TranslateOptions()
    served = served_gateways(resources, options)
    listeners_by_gateway = evaluate_gateways(served, resources, options)
    results = [
        (route, route_result(route, listeners_by_gateway, resources, options))
        for route in resources.http_routes
    ]
    routes_on, gateways_of = attach_routes(results)
    listeners, secrets = ir_listeners(served, listeners_by_gateway, routes_on)
    policies = resolve_backend_traffic_policies(resources, served, gateways_of)
    planned = {
        cluster.name: _with_policy(cluster, policies.settings.get(route.key))
        for route, result in results
        for plan in result.plans
        for cluster in plan.clusters
    }
    ir = IR(
        listeners=tuple(sorted(listeners, key=lambda item: item.name)),
        clusters=tuple(planned[name] for name in sorted(_forwarded_clusters(listeners))),
        secrets=tuple(secrets[name] for name in sorted(secrets)),
    )
    statuses = Statuses(
        gateways=tuple(
            gateway_status(gateway, listeners_by_gateway[gateway.key], True)
            for gateway in sorted(served, key=lambda g: g.key)
        ),
        http_routes=tuple(result.status for _, result in results),
        backend_traffic_policies=policies.statuses,
    )
    return ir, statuses


def _forwarded_clusters(listeners: list[IRListener]) -> set[str]:
    """Clusters some route forwards to; a planned cluster no listener uses is not published."""
    used: set[str] = set()
    for listener in listeners:
        for chain in listener.filter_chains:
            for host in chain.route_config.virtual_hosts:
                for ir_route in host.routes:
                    if isinstance(ir_route.action, Forward):
                        used.update(backend.cluster for backend in ir_route.action.backends)
    return used


def _with_policy(cluster: Cluster, settings: ClusterSettings | None) -> Cluster:
    return cluster if settings is None else attrs.evolve(cluster, settings=settings)
