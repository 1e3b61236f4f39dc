"""The reference state machine: what the control plane publishes and what the proxy holds.

State: the store (`world`), the extension (fail-open or closed, healthy or failing, its
generation), the failure policy, what the cache holds, and what the proxy holds.

Rules:
1. A reconcile translates the store. Healthy extension: the world with its marker. Failing and
   fail-open: the world without the marker. Failing and fail-closed: keep-last-good publishes
   nothing; rds-error and inline-error publish the world in error (every route answers 500).
   A fault only on PostRouteModify fails nothing while the translation has no route: that hook
   is called once per route, the HTTPRoute routes attached to a listener and the 421 routes the
   gateway adds where HTTPS listeners share a port (`has_misdirected_routes`).
2. Store changes, resyncs and control-plane restarts reconcile; extension faults, recoveries and
   the fail-open toggle take effect at the next reconcile, as a real controller's do.
3. A control-plane restart loses the cache, then reconciles.
4. The proxy holds what the cache holds once converged; with an empty cache it keeps what it had,
   and a restarted proxy with an empty cache holds nothing.
5. Cutting or holding the xDS connection, and an update the proxy must reject, change nothing the
   proxy should end up holding.
"""

from __future__ import annotations

import attrs

from model.routing import (
    Outcome,
    ProxyConfig,
    Request,
    effective_hostnames,
    expected_outcomes,
    has_misdirected_routes,
)
from model.world import World

__all__ = ["FAILURE_POLICIES", "Extension", "ModelState"]

FAILURE_POLICIES = ("keep-last-good", "rds-error", "inline-error")
EVERY_HOOK = "*"
ROUTE_HOOK = "PostRouteModify"


@attrs.frozen
class Extension:
    fail_open: bool = False
    failing: str | None = None
    """The fault kind while failing (any kind fails the hook alike), None while healthy."""
    failing_hooks: frozenset[str] = frozenset()
    """The hooks that fail, EVERY_HOOK among them for all; faults add up until recovery."""
    generation: int = 1


@attrs.frozen
class ModelState:
    world: World = attrs.Factory(World)
    extension: Extension | None = attrs.Factory(Extension)
    """None: the control plane runs without an extension."""
    policy: str = attrs.field(
        default="keep-last-good", validator=attrs.validators.in_(FAILURE_POLICIES)
    )
    cache: ProxyConfig | None = None
    proxy: ProxyConfig | None = None
    live_pods: frozenset[str] = frozenset()

    # ----------------------------------------------------------- transitions

    def reconcile(self) -> ModelState:
        """Rule 1, then rule 4."""
        published = self._publication()
        cache = self.cache if published is None else published
        return attrs.evolve(self, cache=cache, proxy=cache if cache is not None else self.proxy)

    def _publication(self) -> ProxyConfig | None:
        extension = self.extension
        if extension is None:
            return ProxyConfig(self.world)
        if extension.failing is None or not self._failure_reached(extension):
            return ProxyConfig(self.world, marker=extension.generation)
        if extension.fail_open:
            return ProxyConfig(self.world)
        if self.policy == "keep-last-good":
            return None
        return ProxyConfig(self.world, error=True)

    def _failure_reached(self, extension: Extension) -> bool:
        """Rule 1: does this translation call a failing hook?"""
        if extension.failing_hooks - {ROUTE_HOOK}:
            return True
        return has_misdirected_routes(self.world) or any(
            effective_hostnames(route, listener)
            for route in self.world.routes
            for listener in self.world.listeners
        )

    def with_world(self, world: World) -> ModelState:
        """A store change: the new world, reconciled."""
        return attrs.evolve(self, world=world).reconcile()

    def with_live_pods(self, pods: frozenset[str]) -> ModelState:
        return attrs.evolve(self, live_pods=pods)

    def extension_fails(self, kind: str, hook: str | None = None) -> ModelState:
        """The extension starts failing on `hook` (None: every hook), on top of earlier faults."""
        assert self.extension is not None
        hooks = self.extension.failing_hooks | {hook or EVERY_HOOK}
        return attrs.evolve(
            self, extension=attrs.evolve(self.extension, failing=kind, failing_hooks=hooks)
        )

    def extension_recovers(self, new_generation: bool) -> ModelState:
        assert self.extension is not None
        generation = self.extension.generation + (1 if new_generation else 0)
        return attrs.evolve(
            self,
            extension=attrs.evolve(
                self.extension, failing=None, failing_hooks=frozenset(), generation=generation
            ),
        )

    def with_fail_open(self, fail_open: bool) -> ModelState:
        assert self.extension is not None
        return attrs.evolve(self, extension=attrs.evolve(self.extension, fail_open=fail_open))

    def control_plane_restarted(self) -> ModelState:
        """Rule 3."""
        return attrs.evolve(self, cache=None).reconcile()

    def proxy_restarted(self) -> ModelState:
        """Rule 4: a fresh proxy holds only what the cache can give it."""
        return attrs.evolve(self, proxy=self.cache)

    # ---------------------------------------------------------- expectations

    def expect(self, request: Request) -> frozenset[Outcome]:
        return expected_outcomes(self.proxy, request, self.live_pods)

    @property
    def failing_closed(self) -> bool:
        return (
            self.extension is not None
            and self.extension.failing is not None
            and not self.extension.fail_open
        )
