"""Snapshots: the complete, typed set of resources one node should hold, and its consistency rule.

The invariant is stated once, in `consistency_errors`: every name a resource references exists in
the same snapshot. The control plane refuses to publish a snapshot that breaks it, and the harness
checks it after every step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs
from google.protobuf.message import Message

from sut.xds.resources import ADS_ORDER, Resource, ResourceType

__all__ = ["Snapshot", "consistency_errors"]


def _index(resources: Iterable[Resource]) -> Mapping[ResourceType, Mapping[str, Resource]]:
    by_type: dict[ResourceType, dict[str, Resource]] = {kind: {} for kind in ADS_ORDER}
    for resource in resources:
        named = by_type[resource.type]
        if resource.name in named and named[resource.name] != resource:
            raise ValueError(
                f"two different {resource.type.short_name} resources named {resource.name!r}"
            )
        named[resource.name] = resource
    return {kind: dict(sorted(named.items())) for kind, named in by_type.items()}


@attrs.frozen
class Snapshot:
    """Every resource of every type for one node; `version` is a hash of every resource's name
    and version, so of the whole content while versions are content hashes."""

    resources: frozenset[Resource]
    by_type: Mapping[ResourceType, Mapping[str, Resource]] = attrs.field(
        init=False, eq=False, repr=False
    )
    version: str = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_type = _index(self.resources)
        object.__setattr__(self, "by_type", by_type)
        digest = hashlib.sha256()
        for kind in ADS_ORDER:
            for name, resource in by_type[kind].items():
                digest.update(f"{kind.short_name}\0{name}\0{resource.version}\n".encode())
        object.__setattr__(self, "version", digest.hexdigest()[:16])

    @classmethod
    def from_messages(cls, messages: Iterable[Message]) -> Snapshot:
        return cls(frozenset(Resource.from_message(message) for message in messages))

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(frozenset())

    def of_type(self, resource_type: ResourceType) -> Mapping[str, Resource]:
        return self.by_type[resource_type]

    def get(self, resource_type: ResourceType, name: str) -> Resource | None:
        return self.by_type[resource_type].get(name)

    def type_version(self, resource_type: ResourceType) -> str:
        """A SotW `version_info` for one type: a hash of its names and content versions."""
        digest = hashlib.sha256()
        for name, resource in self.by_type[resource_type].items():
            digest.update(f"{name}\0{resource.version}\n".encode())
        return digest.hexdigest()[:16]

    def replacing(self, *replacements: Resource) -> Snapshot:
        """A copy where each given resource replaces the one of the same type and name."""
        keys = {(r.type, r.name) for r in replacements}
        kept = (r for r in self.resources if (r.type, r.name) not in keys)
        return Snapshot(frozenset((*kept, *replacements)))

    def relabelled(self, version_of: Callable[[Resource], str]) -> Snapshot:
        """The same resources, each under the version `version_of` gives it.

        Content and references are kept, so the copy is equal to this snapshot; its resource,
        type and snapshot versions follow the new labels. For versioning schemes other than
        content hashes (the control plane's versioning mutants).
        """
        return Snapshot(frozenset(r.relabelled(version_of(r)) for r in self.resources))

    def without(self, resource_type: ResourceType, name: str) -> Snapshot:
        return Snapshot(
            frozenset(r for r in self.resources if (r.type, r.name) != (resource_type, name))
        )

    def __iter__(self) -> Iterator[Resource]:
        for kind in ADS_ORDER:
            yield from self.by_type[kind].values()

    def summary(self) -> str:
        counts = ", ".join(f"{kind.short_name}={len(self.by_type[kind])}" for kind in ADS_ORDER)
        return f"snapshot {self.version} ({counts})"


def consistency_errors(snapshot: Snapshot) -> list[str]:
    """Every dangling reference in the snapshot, as readable sentences; empty when consistent.

    A listener must find its RouteConfigurations and Secrets, a route its Clusters, and an EDS
    Cluster its ClusterLoadAssignment, or Envoy warms, times out and serves 404 or 503.
    """
    errors: list[str] = []
    for resource in snapshot:
        for target_type in (
            ResourceType.ROUTE,
            ResourceType.CLUSTER,
            ResourceType.ENDPOINT,
            ResourceType.SECRET,
        ):
            for name in sorted(resource.references.of_type(target_type)):
                if snapshot.get(target_type, name) is None:
                    errors.append(
                        f"{resource.type.short_name} {resource.name!r} references "
                        f"{target_type.short_name} {name!r}, which the snapshot does not contain"
                    )
    return errors
