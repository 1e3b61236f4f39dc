"""Envoy's own counters as an invariant: what the proxy did, counted by the proxy.

Rules, checked after each step that ends with the connection flowing:
1. Envoy removed no more Listeners (`listener_manager.listener_removed`) and no more Clusters
   (`cluster_manager.cluster_removed`) than the snapshots published since the last check
   remove, one after the other, starting from what it held then. A control plane that serves a
   connecting proxy an empty or partial configuration shows here even when the next snapshot
   puts everything back.
2. Nothing is warming once the step converged (`total_listeners_warming`, `warming_clusters`).
3. Envoy rejected updates (`*.update_rejected`) only in steps where the harness made it reject
   one.
A restarted Envoy starts its counters again; so does this invariant.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from harness.lockstep.verdict import Violation
from sut.xds import ResourceType, Snapshot

__all__ = ["STATS_FILTER", "EnvoyCounters", "allowed_removals"]

STATS_FILTER = "listener_manager|cluster_manager|update_rejected"
"""The counters this invariant reads (an admin `/stats?filter=` regex, searched in each name)."""
_READS = re.compile(STATS_FILTER)

LISTENERS_REMOVED = "listener_manager.listener_removed"
CLUSTERS_REMOVED = "cluster_manager.cluster_removed"
LISTENERS_WARMING = "listener_manager.total_listeners_warming"
CLUSTERS_WARMING = "cluster_manager.warming_clusters"


def allowed_removals(trail: Sequence[Snapshot], resource_type: ResourceType) -> int:
    """Rule 1: how many resources of a type the snapshots of `trail`, in order, remove."""
    removed = 0
    for previous, current in itertools.pairwise(trail):
        removed += len(set(previous.of_type(resource_type)) - set(current.of_type(resource_type)))
    return removed


class EnvoyCounters:
    """Counts since the last check of one Envoy process."""

    def __init__(self) -> None:
        self._process: object = None
        self._baseline: dict[str, int] = {}

    def check(
        self,
        process: object,
        counters: Mapping[str, int],
        trail: Sequence[Snapshot],
        rejections_made: int,
    ) -> list[Violation]:
        """`process` identifies the Envoy (a new one starts from zero); `counters` are its stats
        now (at least those `STATS_FILTER` names); `trail` is what it held at the last check
        followed by every snapshot published since; `rejections_made` counts the updates the
        harness made it reject in this step."""
        stats = {name: value for name, value in counters.items() if _READS.search(name)}
        if process is not self._process:
            self._process, self._baseline = process, {}
        delta = {name: value - self._baseline.get(name, 0) for name, value in stats.items()}
        self._baseline = {name: value for name, value in stats.items() if "warming" not in name}
        violations = self._removals(delta, trail) + self._warming(stats)
        rejected = {
            name: value
            for name, value in delta.items()
            if name.endswith("update_rejected") and value > 0
        }
        # One rejected response raises the counter of every subscription of its type, so only
        # "rejections where the harness caused none" can be told from Envoy's side.
        if rejected and not rejections_made:
            violations.append(
                Violation(
                    "nack",
                    "Envoy rejected an update the harness did not make it reject",
                    tuple(f"{name} +{value}" for name, value in sorted(rejected.items())),
                )
            )
        return violations

    @staticmethod
    def _removals(delta: Mapping[str, int], trail: Sequence[Snapshot]) -> list[Violation]:
        problems = []
        for counter, resource_type, what in (
            (LISTENERS_REMOVED, ResourceType.LISTENER, "Listener"),
            (CLUSTERS_REMOVED, ResourceType.CLUSTER, "Cluster"),
        ):
            allowed = allowed_removals(trail, resource_type)
            if delta.get(counter, 0) > allowed:
                problems.append(
                    f"Envoy removed {delta[counter]} {what}(s) ({counter}); the snapshots"
                    f" published since the last check remove {allowed}"
                )
        if not problems:
            return []
        return [
            Violation(
                "envoy-counters",
                "the proxy lost configuration no published snapshot took away",
                tuple(problems),
            )
        ]

    @staticmethod
    def _warming(stats: Mapping[str, int]) -> list[Violation]:
        warming = {
            name: stats[name]
            for name in (LISTENERS_WARMING, CLUSTERS_WARMING)
            if stats.get(name, 0) > 0
        }
        if not warming:
            return []
        return [
            Violation(
                "envoy-counters",
                "resources still warming after the step converged",
                tuple(f"{name} = {value}" for name, value in sorted(warming.items())),
            )
        ]
