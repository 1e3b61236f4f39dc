"""What a SotW server sent each node under each type version, remembered across streams.

A SotW client that reconnects names, per type, the version it last accepted, and nothing else
about what it holds. Without knowing what that version carried, a new stream's first Listener or
Cluster response would drop whatever the snapshot dropped meanwhile, before the client holds
the routes that stop using it (make-before-break, rule 5 of `stream.py`). Delta clients say what
they hold (`initial_resource_versions`); SotW clients need this memory.

Bounded: the newest `limit` (node, type, version) entries are kept; a client naming an older
version is treated as holding nothing known (as before this memory existed).

Safe to share between streams, including proxies that share a node id: an entry is a fact about
a version (its content is fixed by the version), not about a stream. A stream reads it only on
its first request for a type, to seed what the client holds, which can only defer removals; no
stream ever waits on another. `names_seen` is the one shared mutable state, and only the
`removals-unscoped` mutant uses it.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping

from sut.xds.resources import Resource, ResourceType

__all__ = ["ServedSets"]


class ServedSets:
    """Thread-safe: every stream of a server records into one."""

    def __init__(self, limit: int = 256) -> None:
        if limit < 1:
            raise ValueError("limit must be positive")
        self._limit = limit
        self._lock = threading.Lock()
        self._sets: collections.OrderedDict[tuple[str, ResourceType, str], dict[str, Resource]] = (
            collections.OrderedDict()
        )
        self._names: dict[tuple[str, ResourceType], set[str]] = {}

    def record(
        self, node: str, resource_type: ResourceType, version: str, resources: Iterable[Resource]
    ) -> None:
        """`resources` went to `node` at `version` (RDS/EDS responses add up per version)."""
        key = (node, resource_type, version)
        with self._lock:
            found = self._sets.pop(key, {})
            found.update((resource.name, resource) for resource in resources)
            self._sets[key] = found
            while len(self._sets) > self._limit:
                self._sets.popitem(last=False)

    def names_seen(self, node: str, resource_type: ResourceType) -> set[str]:
        """A per-node set of names, shared by the node's streams (the `removals-unscoped`
        mutant's memory of every name it saw; the correct streams never use it)."""
        with self._lock:
            return self._names.setdefault((node, resource_type), set())

    def lookup(
        self, node: str, resource_type: ResourceType, version: str
    ) -> Mapping[str, Resource]:
        with self._lock:
            return dict(self._sets.get((node, resource_type, version), {}))
