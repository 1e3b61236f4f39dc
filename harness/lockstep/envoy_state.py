"""What a running Envoy actually holds, compared with the snapshot it should hold.

Read from Envoy's `/config_dump`, this is independent of the xDS server's own bookkeeping: a cache
that wrongly believes Envoy holds a resource still shows up here as a difference. Listeners,
Clusters and RouteConfigurations are compared as whole messages (Envoy dumps them as received);
ClusterLoadAssignments by their endpoint addresses (Envoy dumps its normalized view); Secrets by
name (Envoy redacts their content).

At scale (10,000 routes: tens of thousands of resources, a dump of tens of MB) two things keep
a read cheap enough to repeat after every step:

- `read_envoy_view` reads the whole dump in one request, at one moment, with a socket timeout
  that grows with the snapshot's size: Envoy builds the whole answer before it sends a byte.
  Reading each field with its own `?resource=` request measured no cheaper in total (Envoy
  walks its config trackers, building each type's dump, until it meets the field asked for)
  and would give up the single moment.
- what Envoy should dump for each snapshot resource (its JSON, or a ClusterLoadAssignment's
  addresses) is computed once per resource and kept while the resource is in one of the last
  two snapshots compared, so a step that changes a few resources converts only those.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import json_format

from harness.loopback import AdminError, EnvoyAdmin
from sut.xds import Resource, ResourceType, Snapshot

__all__ = [
    "SECONDS_PER_RESOURCE",
    "EnvoyView",
    "read_envoy_view",
    "snapshot_differences",
]

SECONDS_PER_RESOURCE = 0.0005
"""Admin timeout added per snapshot resource. Envoy takes 0.05 to 0.1 ms per resource here to
build a dump (2.7 s for 60,000 resources, 39 MB, on a quiet machine; 4.7 s for 33 MB on a busy
one), so five times that leaves room for a loaded machine."""

Items = Iterable[Mapping[str, Any]]

_FIELDS = (
    "dynamic_listeners",
    "dynamic_active_clusters",
    "dynamic_warming_clusters",
    "dynamic_route_configs",
    "dynamic_endpoint_configs",
    "dynamic_active_secrets",
)
"""The config_dump fields a view is made of (each in one section of a whole dump)."""


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
    draining_listeners: frozenset[str]
    active_clusters: Mapping[str, dict[str, Any]]
    warming_clusters: frozenset[str]
    route_configurations: Mapping[str, dict[str, Any]]
    endpoints: Mapping[str, frozenset[tuple[str, int]]]
    secrets: frozenset[str]

    @classmethod
    def from_config_dump(cls, dump: Mapping[str, Any]) -> EnvoyView:
        """From one whole `/config_dump?include_eds`."""
        fields: dict[str, list[Mapping[str, Any]]] = {}
        for config in dump.get("configs", ()):
            for field in _FIELDS:
                fields.setdefault(field, []).extend(config.get(field, ()))
        return cls.from_fields(fields)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Items]) -> EnvoyView:
        """From the items of each config_dump field in `_FIELDS` (a missing field has none), as
        a whole dump's sections list them (and `/config_dump?resource=<field>` its `configs`)."""

        def items(field: str) -> Items:
            return fields.get(field, ())

        active_listeners: dict[str, dict[str, Any]] = {}
        warming_listeners: set[str] = set()
        draining_listeners: set[str] = set()
        for item in items("dynamic_listeners"):
            if "active_state" in item:
                active_listeners[item["name"]] = _strip_type(item["active_state"]["listener"])
            if "warming_state" in item:
                warming_listeners.add(item["name"])
            if "draining_state" in item:
                draining_listeners.add(item["name"])
        active_clusters: dict[str, dict[str, Any]] = {}
        for item in items("dynamic_active_clusters"):
            cluster = _strip_type(item["cluster"])
            active_clusters[cluster["name"]] = cluster
        routes: dict[str, dict[str, Any]] = {}
        for item in items("dynamic_route_configs"):
            route = _strip_type(item["route_config"])
            routes[route["name"]] = route
        endpoints: dict[str, frozenset[tuple[str, int]]] = {}
        for item in items("dynamic_endpoint_configs"):
            assignment = item["endpoint_config"]
            endpoints[assignment["cluster_name"]] = _endpoint_addresses(assignment)
        return cls(
            active_listeners=active_listeners,
            warming_listeners=frozenset(warming_listeners),
            draining_listeners=frozenset(draining_listeners),
            active_clusters=active_clusters,
            warming_clusters=frozenset(
                item["cluster"]["name"] for item in items("dynamic_warming_clusters")
            ),
            route_configurations=routes,
            endpoints=endpoints,
            secrets=frozenset(item["name"] for item in items("dynamic_active_secrets")),
        )


def read_envoy_view(admin: EnvoyAdmin, expected_resources: int = 0) -> EnvoyView:
    """What Envoy holds, from one `/config_dump?include_eds`; `expected_resources` (the size of
    the snapshot it should hold) lengthens the admin timeout."""
    dump = admin.config_dump(
        include_eds=True, timeout=admin.timeout + SECONDS_PER_RESOURCE * expected_resources
    )
    try:
        return EnvoyView.from_config_dump(dump)
    except (KeyError, TypeError, AttributeError) as error:
        raise AdminError(f"config_dump: unexpected JSON shape ({error!r})") from error


class _ExpectedForms:
    """The form Envoy dumps each snapshot resource in, computed once per resource.

    Kept for the resources of the last two snapshots compared, so its size follows theirs (a
    fixed LRU of 4,096 entries was swept in order by each comparison of a larger snapshot, and
    missed every time). Thread-safe: sessions may run in threads of one process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._current: dict[Resource, Any] = {}
        self._previous: dict[Resource, Any] = {}

    def start(self, snapshot: Snapshot) -> None:
        """A comparison with `snapshot` begins."""
        with self._lock:
            if snapshot.version != self._version:
                self._version = snapshot.version
                self._previous, self._current = self._current, {}

    def of(self, resource: Resource) -> Any:
        with self._lock:
            form = self._current.get(resource)
            if form is None:
                form = self._previous.get(resource)
                if form is None:
                    form = _expected_form(resource)
                self._current[resource] = form
            return form

    def __len__(self) -> int:
        with self._lock:
            return len(self._current.keys() | self._previous.keys())


def _expected_form(resource: Resource) -> Any:
    """What `snapshot_differences` compares Envoy's dump with: a ClusterLoadAssignment's
    endpoint addresses, every other resource's JSON."""
    message = resource.message()
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return frozenset(
            (
                lb.endpoint.address.socket_address.address,
                lb.endpoint.address.socket_address.port_value,
            )
            for locality in message.endpoints
            for lb in locality.lb_endpoints
        )
    document: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return document


_FORMS = _ExpectedForms()


def _names(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def snapshot_differences(view: EnvoyView, snapshot: Snapshot) -> list[str]:
    """Every way in which Envoy does not hold exactly `snapshot`; empty when it does."""
    _FORMS.start(snapshot)
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
        elif expected is not None and held != _FORMS.of(expected):
            problems.append(f"RouteConfiguration {name!r} differs from the snapshot's")
    for cluster in snapshot.of_type(ResourceType.CLUSTER).values():
        for name in sorted(cluster.references.endpoints):
            expected_assignment = snapshot.get(ResourceType.ENDPOINT, name)
            if expected_assignment is None:
                continue
            want = _FORMS.of(expected_assignment)
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
        if held[name] != _FORMS.of(expected[name]):
            problems.append(f"{kind} {name!r} differs from the snapshot's")
    return problems
