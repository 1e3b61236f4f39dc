"""No Envoy subscription timed out waiting for the server (`init_fetch_timeout` counters): the
proxy's own view of an unanswered subscription, independent of the wire."""

from __future__ import annotations

from collections.abc import Mapping

from harness.lockstep.verdict import Violation

__all__ = ["STATS_FILTER", "FetchTimeouts"]

STATS_FILTER = "init_fetch_timeout"
"""The counters this invariant reads (an admin `/stats?filter=` regex, searched in each name)."""


class FetchTimeouts:
    def __init__(self) -> None:
        self._process: object = None
        self._baseline: dict[str, int] = {}
        self._counting = False

    def reset(self, process: object, *, counting: bool) -> None:
        """A new Envoy; with `counting` False (nothing was published when it started, so its
        first fetches time out by design) counting begins at its first good state."""
        self._process, self._baseline, self._counting = process, {}, counting

    def check(self, process: object, counters: Mapping[str, int]) -> list[Violation]:
        """`counters`: the stats of Envoy `process` now (at least those `STATS_FILTER` names)."""
        timeouts = {
            name: value for name, value in counters.items() if value and STATS_FILTER in name
        }
        if process is not self._process or not self._counting:
            self._process, self._baseline, self._counting = process, timeouts, True
            return []
        new = {k: v for k, v in timeouts.items() if v > self._baseline.get(k, 0)}
        self._baseline = timeouts
        if not new:
            return []
        return [
            Violation(
                "unanswered-subscription",
                "Envoy gave up waiting for the server (initial_fetch_timeout)",
                tuple(f"{name} = {value}" for name, value in sorted(new.items())),
            )
        ]
