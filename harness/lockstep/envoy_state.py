"""What a running Envoy actually holds, compared with the snapshot it should hold.

Read from `/config_dump?include_eds`, this is independent of the xDS server's own bookkeeping:
a cache that wrongly believes Envoy holds a resource still shows up here as a difference.
Listeners, Clusters and RouteConfigurations are compared as whole messages (Envoy dumps them as
received); ClusterLoadAssignments by their endpoint addresses (Envoy dumps its normalized view);
Secrets by name (Envoy redacts their content).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from google.protobuf import json_format

from sut.xds import Resource, ResourceType, Snapshot

__all__ = ["EnvoyView", "snapshot_differences"]


def _strip_type(document: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "@type"}


def _endpoint_addresses(assignment: Mapping[str, Any]) -> frozenset[tuple[str, int]]:
    found = set()
    for locality in assignment.get("endpoints", ()):
        for lb_endpoint in locality.get("lb_endpoints", ()):
            socket = lb_endpoint.get("endpoint", {}).get("address", {}).get("socket_address", {})
            found.add((str(socket.get("address", "")), int(socket.get("port_value", 0))))
    return frozenset(found)


@attrs.frozen
class EnvoyView:
    """The dynamic configuration of one Envoy, by resource name."""

    active_listeners: Mapping[str, dict[str, Any]]
    warming_listeners: frozenset[str]
    active_clusters: Mapping[str, dict[str, Any]]
    warming_clusters: frozenset[str]
    route_configurations: Mapping[str, dict[str, Any]]
    endpoints: Mapping[str, frozenset[tuple[str, int]]]
    secrets: frozenset[str]

    @classmethod
    def from_config_dump(cls, dump: Mapping[str, Any]) -> EnvoyView:
        active_listeners: dict[str, dict[str, Any]] = {}
        warming_listeners: set[str] = set()
        active_clusters: dict[str, dict[str, Any]] = {}
        warming_clusters: set[str] = set()
        routes: dict[str, dict[str, Any]] = {}
        endpoints: dict[str, frozenset[tuple[str, int]]] = {}
        secrets: set[str] = set()
        for config in dump.get("configs", ()):
            kind = str(config.get("@type", "")).rsplit(".", 1)[-1]
            if kind == "ListenersConfigDump":
                for item in config.get("dynamic_listeners", ()):
                    if "active_state" in item:
                        active_listeners[item["name"]] = _strip_type(
                            item["active_state"]["listener"]
                        )
                    if "warming_state" in item:
                        warming_listeners.add(item["name"])
            elif kind == "ClustersConfigDump":
                for item in config.get("dynamic_active_clusters", ()):
                    cluster = _strip_type(item["cluster"])
                    active_clusters[cluster["name"]] = cluster
                for item in config.get("dynamic_warming_clusters", ()):
                    warming_clusters.add(item["cluster"]["name"])
            elif kind == "RoutesConfigDump":
                for item in config.get("dynamic_route_configs", ()):
                    route = _strip_type(item["route_config"])
                    routes[route["name"]] = route
            elif kind == "EndpointsConfigDump":
                for item in config.get("dynamic_endpoint_configs", ()):
                    assignment = item["endpoint_config"]
                    endpoints[assignment["cluster_name"]] = _endpoint_addresses(assignment)
            elif kind == "SecretsConfigDump":
                for item in config.get("dynamic_active_secrets", ()):
                    secrets.add(item["name"])
        return cls(
            active_listeners=active_listeners,
            warming_listeners=frozenset(warming_listeners),
            active_clusters=active_clusters,
            warming_clusters=frozenset(warming_clusters),
            route_configurations=routes,
            endpoints=endpoints,
            secrets=frozenset(secrets),
        )


@functools.lru_cache(maxsize=4096)
def _as_json(resource: Resource) -> dict[str, Any]:
    document: dict[str, Any] = json_format.MessageToDict(
        resource.message(), preserving_proto_field_name=True
    )
    return document


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def snapshot_differences(view: EnvoyView, snapshot: Snapshot) -> list[str]:
    """Every way in which Envoy does not hold exactly `snapshot`; empty when it does."""
    problems: list[str] = []
    if view.warming_listeners:
        problems.append(f"listeners still warming: {_names(view.warming_listeners)}")
    if view.warming_clusters:
        problems.append(f"clusters still warming: {_names(view.warming_clusters)}")
    problems += _compare_set(
        "listener", view.active_listeners, snapshot.of_type(ResourceType.LISTENER)
    )
    problems += _compare_set(
        "cluster", view.active_clusters, snapshot.of_type(ResourceType.CLUSTER)
    )
    wanted_routes: set[str] = set()
    wanted_secrets: set[str] = set()
    for listener in snapshot.of_type(ResourceType.LISTENER).values():
        wanted_routes |= listener.references.routes
        wanted_secrets |= listener.references.secrets
    for name in sorted(wanted_routes):
        expected = snapshot.get(ResourceType.ROUTE, name)
        held = view.route_configurations.get(name)
        if held is None:
            problems.append(f"RouteConfiguration {name!r} is missing from Envoy")
        elif expected is not None and held != _as_json(expected):
            problems.append(f"RouteConfiguration {name!r} differs from the snapshot's")
    for cluster in snapshot.of_type(ResourceType.CLUSTER).values():
        for name in sorted(cluster.references.endpoints):
            expected_assignment = snapshot.get(ResourceType.ENDPOINT, name)
            if expected_assignment is None:
                continue
            want = _endpoint_addresses(_as_json(expected_assignment))
            got = view.endpoints.get(name)
            if got is None:
                problems.append(f"ClusterLoadAssignment {name!r} is missing from Envoy")
            elif got != want:
                problems.append(
                    f"ClusterLoadAssignment {name!r}: Envoy has {sorted(got)},"
                    f" the snapshot {sorted(want)}"
                )
    missing_secrets = wanted_secrets - view.secrets
    if missing_secrets:
        problems.append(f"secrets missing from Envoy: {_names(missing_secrets)}")
    return problems


def _compare_set(
    kind: str, held: Mapping[str, dict[str, Any]], expected: Mapping[str, Resource]
) -> list[str]:
    problems = []
    missing = set(expected) - set(held)
    extra = set(held) - set(expected)
    if missing:
        problems.append(f"{kind}s missing from Envoy: {_names(missing)}")
    if extra:
        problems.append(f"{kind}s Envoy should no longer have: {_names(extra)}")
    for name in sorted(set(expected) & set(held)):
        if held[name] != _as_json(expected[name]):
            problems.append(f"{kind} {name!r} differs from the snapshot's")
    return problems
