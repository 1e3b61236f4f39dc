"""What a stream core asks its adapter to do: the only way the core reaches the outside.

The core decides; the adapter carries out each effect in order and feeds back what happens
(requests, snapshots), so stream start-up and shutdown are tested without gRPC.
"""

from __future__ import annotations

import attrs

__all__ = ["Effect", "Send", "Unwatch", "Watch"]


@attrs.frozen
class Send:
    """Write this DiscoveryResponse or DeltaDiscoveryResponse on the stream."""

    message: object


@attrs.frozen
class Watch:
    """Watch the node's snapshots in the `SnapshotSource`, then hand the core the one current
    once the watch is in place and every later one (`on_snapshot_effects`), so no snapshot set
    between the core's own lookup and the watch is lost."""

    node_id: str

    def __attrs_post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("a watch needs a node id")


@attrs.frozen
class Unwatch:
    """Stop the watch this stream's `Watch` started."""


Effect = Send | Watch | Unwatch
