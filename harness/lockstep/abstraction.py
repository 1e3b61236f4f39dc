"""The abstract state `explore` prunes on: the model's state, plus the history the model forgets.

Cuts, holds, restarts, resyncs and rejected updates change nothing the model expects, yet that
is where xDS bugs live: a cache that answers only what changed is wrong only after a reconnect, a
restarted server only until its first translation. Two sequences that end in the same model
state are therefore the same abstract state only if they also agree on:

- the store (`world`), with pod names replaced by their count and creation times by their order
  (which pods and which timestamps never change an answer, only how many and which is older);
- the extension: fail-open, failing or not and on which hooks, and whether the generation last
  published is the current one (`generation`: current, older, or none published);
- what the cache holds (nothing, the current store, an older one; in error or not) and whether
  the proxy holds the same (rules 3 and 4 of the model);
- the link: held, with configurations queued or not;
- the history since the last store change (`History`): was the connection cut, did the proxy or
  the control plane restart, was an update rejected, and is an extension change pending a
  reconcile (faults, recoveries and the fail-open toggle take effect at the next one).

A store change clears the history: what happened before it is then behind a change the proxy
must have received in full.

In a fleet, what the proxy holds, its link and its part of the history (cut, restarted) are kept
per proxy (`LinkState`), as a sorted tuple: replicas are interchangeable, and the alphabet has the
same letters for each (`alphabet`), so two states that differ only in which replica is which have
the same futures. A second Gateway's proxy is told apart by its Gateway (`LinkState.gateway`), and
what the cache holds for its node is kept beside the first's (`other_caches`).
"""

from __future__ import annotations

from typing import Literal

import attrs

from model import ModelState, ProxyConfig, Service, World

__all__ = ["AbstractState", "History", "LinkState", "abstract"]

STORE_CHANGES = frozenset(
    {
        "create-route",
        "update-route",
        "delete-route",
        "add-listener",
        "remove-listener",
        "create-gateway",
        "delete-gateway",
        "scale",
        "set-backend-policy",
    }
)
EXTENSION_CHANGES = frozenset({"extension-fault", "extension-recover", "set-fail-open"})


@attrs.frozen
class History:
    """What happened since the last store change that the model state does not show."""

    cut: frozenset[int] = frozenset()
    """The proxies whose connection was cut."""
    proxy_restarted: frozenset[int] = frozenset()
    """The proxies that restarted."""
    control_plane_restarted: bool = False
    rejected: bool = False
    pending: bool = False
    """An extension change waits for the next reconcile."""
    user: frozenset[str] = frozenset()
    """A user's operation kinds (`extensions`) since the last store change: their effect on
    what the model does not show is unknown here, so states after them are kept apart."""

    def after(self, kind: str, proxy: int | None = None) -> History:
        """The transition table: one row per operation kind (`proxy`: the one a cut or a
        restart of Envoy acts on; None is the only one, 0)."""
        if kind in STORE_CHANGES:
            return History()
        if kind in EXTENSION_CHANGES:
            return attrs.evolve(self, pending=True)
        target = frozenset({proxy or 0})
        table: dict[str, dict[str, object]] = {
            "resync": {"pending": False},
            "restart-control-plane": {"pending": False, "control_plane_restarted": True},
            "restart-envoy": {"proxy_restarted": self.proxy_restarted | target},
            "cut-xds": {"cut": self.cut | target},
            "rejected-update": {"rejected": True},
            "hold-xds": {},
            "release-xds": {},
        }
        if kind not in table:
            return attrs.evolve(self, user=self.user | {kind})
        return attrs.evolve(self, **table[kind])  # type: ignore[arg-type]


Generation = Literal["current", "older", "none"]
Holding = Literal["nothing", "current", "older", "error-current", "error-older"]


@attrs.frozen(order=True)
class LinkState:
    """One proxy: what it holds against the cache, its link, and its part of the history."""

    proxy_is_cache: bool
    proxy_holds_nothing: bool
    held: bool
    queued: bool
    cut: bool
    restarted: bool
    gateway: str = ""
    """The Gateway whose proxy it is."""


@attrs.frozen
class AbstractState:
    world: World
    fail_open: bool | None
    failing: str | None
    """The fault kind: the model fails every kind alike, the control plane meets each its way."""
    failing_hooks: frozenset[str]
    generation: Generation
    cache: Holding
    links: tuple[LinkState, ...]
    """Sorted: which replica is which does not matter."""
    history: History
    """The fleet's part of the history (the proxies' parts are in `links`)."""
    other_caches: tuple[Holding, ...] = ()
    """What the cache holds for each other Gateway's node."""


def _normal_world(world: World) -> World:
    order = {
        route.name: rank
        for rank, route in enumerate(sorted(world.routes, key=lambda r: (r.created, r.name)))
    }
    routes = tuple(attrs.evolve(route, created=order[route.name]) for route in world.routes)
    services = tuple(
        Service(service.name, tuple(f"#{index}" for index in range(len(service.pods))))
        for service in world.services
    )
    return attrs.evolve(world, routes=routes, services=services)


def _holding(config: ProxyConfig | None, world: World) -> Holding:
    if config is None:
        return "nothing"
    same = "current" if config.world == world else "older"
    return f"error-{same}" if config.error else same  # type: ignore[return-value]


def abstract(model: ModelState, history: History) -> AbstractState:
    extension = model.extension
    marker = model.cache.marker if model.cache is not None else None
    generation: Generation = "none"
    if extension is not None and marker is not None:
        generation = "current" if marker == extension.generation else "older"
    return AbstractState(
        world=_normal_world(model.world),
        fail_open=extension.fail_open if extension is not None else None,
        failing=extension.failing if extension is not None else None,
        failing_hooks=extension.failing_hooks if extension is not None else frozenset(),
        generation=generation,
        cache=_holding(model.cache, model.world.of_gateway(model.world.gateway)),
        links=tuple(
            sorted(
                LinkState(
                    proxy_is_cache=link.proxy == model.cache_of(index),
                    proxy_holds_nothing=link.proxy is None,
                    held=link.held,
                    queued=bool(link.in_flight),
                    cut=index in history.cut,
                    restarted=index in history.proxy_restarted,
                    gateway=model.gateway_of(index),
                )
                for index, link in enumerate(model.all_links)
            )
        ),
        history=attrs.evolve(history, cut=frozenset(), proxy_restarted=frozenset()),
        other_caches=tuple(
            _holding(fleet.cache, model.world.of_gateway(fleet.gateway)) for fleet in model.others
        ),
    )
