"""Rule 7 of `stream.py`: what the client holds keeps what it references.

While a Cluster or Listener the stream sent is still held by the client, the
ClusterLoadAssignments, RouteConfigurations and Secrets it names are served from their last
content even if the snapshot has dropped them: a Cluster sent just before the snapshot deleted it
warms, and Envoy ACKs CDS only once it is warm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sut.xds.resources import Resource, ResourceType
from sut.xds.snapshot import Snapshot

__all__ = ["RETAINED_TYPES", "RetainedReferences"]

RETAINED_TYPES = (ResourceType.ENDPOINT, ResourceType.ROUTE, ResourceType.SECRET)
"""Types the client asks for by name because a resource it holds names them."""

Referenced = Callable[[ResourceType], set[str]]
"""Names of a type that resources the client holds name."""


class RetainedReferences:
    """The last content of every name a resource sent to the client references (one stream)."""

    def __init__(self) -> None:
        self._by_type: dict[ResourceType, dict[str, Resource]] = {
            kind: {} for kind in RETAINED_TYPES
        }
        self._absent: dict[ResourceType, tuple[str, ...]] = {}
        """Retained names the last refreshed snapshot lacks: the only ones `serve` may add
        (`remember` keeps only names the snapshot has)."""

    def serve(
        self, current: Mapping[str, Resource], resource_type: ResourceType, referenced: Referenced
    ) -> Mapping[str, Resource]:
        """The snapshot's resources of a type, plus retained ones the client still names."""
        absent = self._absent.get(resource_type)
        if not absent:
            return current
        retained = self._by_type[resource_type]
        missing = [name for name in absent if name not in current and name in retained]
        if not missing:
            return current
        named = referenced(resource_type)
        extra = {name: retained[name] for name in missing if name in named}
        return {**current, **extra} if extra else current

    def remember(self, snapshot: Snapshot, sent: Iterable[Resource]) -> None:
        """Remember what each resource just sent names, as the snapshot has it now."""
        for resource in sent:
            for kind in RETAINED_TYPES:
                for name in resource.references.of_type(kind):
                    current = snapshot.get(kind, name)
                    if current is not None:
                        self._by_type[kind][name] = current

    def refresh(self, snapshot: Snapshot, referenced: Referenced) -> None:
        """Keep retained content current; forget names nothing the client holds names."""
        for kind in RETAINED_TYPES:
            retained = self._by_type[kind]
            named: set[str] | None = None  # what the client names: costly, needed rarely
            for name in list(retained):
                current = snapshot.get(kind, name)
                if current is not None:
                    retained[name] = current
                    continue
                if named is None:
                    named = referenced(kind)
                if name not in named:
                    del retained[name]
            self._absent[kind] = tuple(
                name for name in retained if snapshot.get(kind, name) is None
            )
