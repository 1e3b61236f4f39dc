"""Where stream cores and the snapshot cache meet: one narrow interface.

The cache stores snapshots and says when one changes; the stream decides what to send. Typing
both sides against `SnapshotSource` keeps them apart: stream tests run against a fake source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sut.xds.snapshot import Snapshot

__all__ = ["SnapshotSource", "SnapshotWatcher"]

SnapshotWatcher = Callable[[Snapshot], None]


class SnapshotSource(Protocol):
    def get_snapshot(self, node_id: str) -> Snapshot | None:
        """The node's newest snapshot, if any."""
        ...

    def watch(self, node_id: str, notify: SnapshotWatcher) -> Callable[[], None]:
        """Call `notify` with every later snapshot of the node; returns the way to stop."""
        ...
