"""How the control plane labels what it publishes with versions.

By default a resource's version is a hash of its own content (`sut.xds.resources`): one version
names one content, in every process and for ever, which is what Delta's
`initial_resource_versions` and every cache comparison rely on. The two schemes here are the
versioning of real control planes that broke that promise; the runner uses them only when their
mutant is on:

- `store_versioned` (mutant `version-from-store`): a version names the input the translation
  came from, so output that changes while the input does not keeps its old versions.
- `ProcessVersions` (mutant `versions-restart-with-process`): a counter per resource kept by one
  process, so after a restart one version names other content.
"""

from __future__ import annotations

import hashlib

from sut.gatewayapi import Resources
from sut.xds import Resource, ResourceType, Snapshot

__all__ = ["ProcessVersions", "store_versioned"]


def store_versioned(snapshot: Snapshot, store: Resources) -> Snapshot:
    """`snapshot` with each resource versioned by a hash of the store, its type and its name."""
    generation = hashlib.sha256(repr(store).encode()).hexdigest()

    def version_of(resource: Resource) -> str:
        key = f"{generation}\0{resource.type.short_name}\0{resource.name}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    return snapshot.relabelled(version_of)


class ProcessVersions:
    """Per (type, name): "1" for the first content this process published, then +1 per change.

    Consistent within one process; a new process (a restarted control plane) starts again at 1.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[ResourceType, str], tuple[bytes, int]] = {}

    def label(self, snapshot: Snapshot) -> Snapshot:
        """Version `snapshot` with this process's counters, and count it as published."""
        for resource in snapshot:
            key = (resource.type, resource.name)
            body, counter = self._last.get(key, (b"", 0))
            if counter == 0 or body != resource.body:
                self._last[key] = (resource.body, counter + 1)
        return snapshot.relabelled(lambda r: str(self._last[(r.type, r.name)][1]))
