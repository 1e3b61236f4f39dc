"""Which node gets what: one proxy fleet per Gateway, each on a node id of its own.

A gateway control plane such as Envoy Gateway runs a fleet of proxies per Gateway and gives each
fleet only its Gateway's configuration. The runner translates the store once; `split` then cuts
the one snapshot into one per node:

1. A Gateway mapped to a node (`gateway_nodes`) is that node's; every other Gateway is served,
   together, under the default node (as with no mapping at all).
2. A node's snapshot is the closure of its Gateways' Listeners over references
   (RouteConfigurations, Clusters, ClusterLoadAssignments, Secrets), plus the readiness
   listener every proxy needs. A resource no Listener reaches (one the extension added, say)
   stays with the default node, so with no mapping the default node gets the whole snapshot.
3. A mapped node whose Gateways are all absent (deleted, not yet created) still gets a snapshot:
   the readiness listener alone, so its proxies withdraw every Gateway listener.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sut.gatewayapi import ObjectKey
from sut.translate import IR
from sut.xds import Resource, ResourceType, Snapshot

__all__ = ["split"]

_REFERENCED = (ResourceType.ROUTE, ResourceType.CLUSTER, ResourceType.ENDPOINT, ResourceType.SECRET)


def split(
    snapshot: Snapshot,
    ir: IR,
    readiness_listener: str,
    default_node: str,
    gateway_nodes: Mapping[ObjectKey, str],
) -> dict[str, Snapshot]:
    """One snapshot per node, the default node's first (rules 1 to 3)."""
    if not gateway_nodes:
        return {default_node: snapshot}
    gateway_of = {listener.name: listener.gateway for listener in ir.listeners}
    readiness = snapshot.get(ResourceType.LISTENER, readiness_listener)
    roots: dict[str, list[Resource]] = {default_node: []}
    for node in sorted(set(gateway_nodes.values())):
        roots.setdefault(node, [])
    for name, listener in snapshot.of_type(ResourceType.LISTENER).items():
        if name == readiness_listener:
            continue
        gateway = gateway_of.get(name)
        node = gateway_nodes.get(gateway, default_node) if gateway is not None else default_node
        roots[node].append(listener)
    result = {
        node: _closure(snapshot, (*listeners, *([readiness] if readiness is not None else ())))
        for node, listeners in roots.items()
    }
    reached = frozenset(
        (item.type, item.name) for node, part in result.items() for item in part.resources
    )
    orphans = [item for item in snapshot.resources if (item.type, item.name) not in reached]
    if orphans:
        result[default_node] = Snapshot(result[default_node].resources | frozenset(orphans))
    return result


def _closure(snapshot: Snapshot, roots: Iterable[Resource]) -> Snapshot:
    """`roots` and everything they reach through references that `snapshot` holds."""
    kept: dict[tuple[ResourceType, str], Resource] = {}
    pending = list(roots)
    while pending:
        resource = pending.pop()
        key = (resource.type, resource.name)
        if key in kept:
            continue
        kept[key] = resource
        for kind in _REFERENCED:
            for name in resource.references.of_type(kind):
                target = snapshot.get(kind, name)
                if target is not None:
                    pending.append(target)
    return Snapshot(frozenset(kept.values()))
