"""The snapshot cache: the newest snapshot per node, and who wants to hear about it.

The cache only stores snapshots and notifies; the stream decides what to send given a snapshot.
This differs from go-control-plane, where the cache answers watches (it compares versions and
builds responses): here all protocol decisions stay in the sans-IO stream cores. The two meet at
`sut.xds.source.SnapshotSource` (`get_snapshot`, `watch`), which this class implements, so the
stream cores are tested against a fake source and the cache without streams.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sut.xds.snapshot import Snapshot
from sut.xds.source import SnapshotWatcher

__all__ = ["SnapshotCache", "SnapshotWatcher"]


class SnapshotCache:
    """Thread-safe map node id -> newest snapshot, with change notification."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._watchers: dict[str, list[SnapshotWatcher]] = {}

    def set_snapshot(self, node_id: str, snapshot: Snapshot) -> bool:
        """Store the snapshot and tell the node's watchers; returns False if nothing changed."""
        with self._lock:
            if self._snapshots.get(node_id) == snapshot:
                return False
            self._snapshots[node_id] = snapshot
            watchers = list(self._watchers.get(node_id, ()))
        for notify in watchers:
            notify(snapshot)
        return True

    def get_snapshot(self, node_id: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(node_id)

    def clear(self, node_id: str) -> None:
        with self._lock:
            self._snapshots.pop(node_id, None)

    def nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._snapshots)

    def watch(self, node_id: str, notify: SnapshotWatcher) -> Callable[[], None]:
        """Call `notify` with every new snapshot for the node; returns the way to stop."""
        with self._lock:
            self._watchers.setdefault(node_id, []).append(notify)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(node_id, [])
                if notify in watchers:
                    watchers.remove(notify)

        return unwatch
