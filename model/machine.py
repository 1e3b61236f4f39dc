"""The reference state machine: what the control plane publishes and what the proxy holds.

State: the store (`world`), the extension (fail-open or closed, healthy or failing, its
generation), the failure policy and the pods that run are shared; each Gateway with proxies has a
`Fleet`: what the cache holds for its node and one `Link` per proxy (what the proxy holds, its xDS
connection connected or held, what is queued on it). The first Gateway's fleet is `cache` and
`links`; the others' are `others`. Replicas of one Gateway share a node id, so the cache serves
them all alike; each has its own connection, so holds, cuts and restarts are per proxy. Proxies
are numbered across fleets: the first Gateway's, then each other fleet's in order.

Rules:
1. A reconcile translates the store once and publishes, for each fleet, its Gateway's world
   (`World.of_gateway`). Healthy extension: that world with its marker. Failing and fail-open:
   the world without the marker. Failing and fail-closed: keep-last-good publishes nothing (for
   any fleet); rds-error and inline-error publish the world in error (every route answers 500).
   Whether the failure is reached is decided over the whole translation, every Gateway's, as
   the hooks run once: a fault only on PostRouteModify fails nothing while the translation has
   no route: that hook is called once per route, the HTTPRoute routes attached to a listener
   and the 421 routes the gateway adds where HTTPS listeners share a port
   (`has_misdirected_routes`). A Gateway not in the store publishes its world without listeners:
   its proxies hold nothing that answers (every request gets "no listener").
2. Store changes, resyncs and control-plane restarts reconcile; extension faults, recoveries and
   the fail-open toggle take effect at the next reconcile, as a real controller's do.
3. A control-plane restart loses the cache (every fleet's), then reconciles.
4. Each proxy holds what the cache holds for its fleet once converged; with an empty cache it
   keeps what it had, and a restarted proxy with an empty cache holds nothing.
5. While a proxy's xDS connection is held it keeps what it had; what is published meanwhile
   queues up on that link (`in_flight`). When the connection heals the proxy may pass through
   each queued configuration on its way to the newest; when a held connection is cut, what was
   queued is lost and the proxy reconnects to the newest. A cut of a flowing connection changes
   nothing.
6. Scaling starts pods named `<service>-<n>` (a name is never reused) and withdraws the newest
   endpoints first. A withdrawn pod keeps running while any configuration a proxy (of any
   fleet) holds or may still receive names it, and stops once every proxy has the new endpoints
   (`settled`), as a terminating pod does in Kubernetes.
7. An update the first Gateway's proxies must reject changes nothing they hold; it is counted
   per proxy, so the one NACK each of them sends is expected.
8. Proxyless gRPC clients hold a snapshot of their own (`proxyless`), the first Gateway's bare
   world (no marker, never in error: `model.grpc`). It moves with the cache: whenever a reconcile
   publishes a configuration for Envoy (whatever the extension and the failure policy did), it
   publishes the bare world for them too; when keep-last-good publishes nothing, theirs is kept
   as well. A control-plane restart loses the proxyless snapshot with the cache, but like a
   proxy (rule 4) a client keeps what it holds while the new cache has nothing for it (gRPC
   keeps cached resources across a reconnect and starts no does-not-exist timer for them), so
   `proxyless`, what the clients hold, is kept until the next publication. Nothing holds their
   connections, so once converged they hold what was published.

`expect` is the whole specification of a settled step; `passing` lists the configurations the
proxy may hold while it moves from one state to the next (for probes sent during a step).
"""

from __future__ import annotations

import re

import attrs

from model.grpc import CallOutcome, GrpcCall, expected_grpc
from model.routing import (
    Outcome,
    ProxyConfig,
    Request,
    effective_hostnames,
    expected_outcomes,
    has_misdirected_routes,
)
from model.world import Service, World

__all__ = ["FAILURE_POLICIES", "Extension", "Fleet", "Link", "ModelState", "pod_name"]

FAILURE_POLICIES = ("keep-last-good", "rds-error", "inline-error")
EVERY_HOOK = "*"
ROUTE_HOOK = "PostRouteModify"


def pod_name(service: str, serial: int) -> str:
    """Rule 6: the `serial`-th pod ever started for a Service."""
    return f"{service}-{serial}"


@attrs.frozen
class Extension:
    fail_open: bool = False
    failing: str | None = None
    """The fault kind while failing (any kind fails the hook alike), None while healthy."""
    failing_hooks: frozenset[str] = frozenset()
    """The hooks that fail, EVERY_HOOK among them for all; faults add up until recovery."""
    generation: int = 1


@attrs.frozen
class Link:
    """One proxy and its xDS connection (rules 4, 5 and 7)."""

    proxy: ProxyConfig | None = None
    """What the proxy holds."""
    held: bool = False
    """Rule 5: the xDS connection is held."""
    in_flight: tuple[ProxyConfig, ...] = ()
    """Rule 5: what was published while held, oldest first."""
    rejected_updates: int = 0
    """Rule 7: updates this proxy was made to reject so far."""

    def published(self, cache: ProxyConfig | None, published: ProxyConfig | None) -> Link:
        """Rules 4 and 5: a reconcile left `cache` in the cache (`published` if it sent one)."""
        if self.held:
            queued = self.in_flight
            if published is not None and (queued[-1:] or (self.proxy,))[0] != published:
                queued = (*queued, published)
            return attrs.evolve(self, in_flight=queued)
        return attrs.evolve(self, proxy=cache if cache is not None else self.proxy)

    def released(self, cache: ProxyConfig | None) -> Link:
        return attrs.evolve(
            self, held=False, in_flight=(), proxy=cache if cache is not None else self.proxy
        )


@attrs.frozen
class Fleet:
    """The proxies of a Gateway other than the first, on a node of their own (rules 1 and 4)."""

    gateway: str
    cache: ProxyConfig | None = None
    links: tuple[Link, ...] = attrs.field(default=(Link(),))

    def published(self, published: ProxyConfig | None) -> Fleet:
        cache, links = _published(self.cache, self.links, published)
        return attrs.evolve(self, cache=cache, links=links)


def _published(
    cache: ProxyConfig | None, links: tuple[Link, ...], published: ProxyConfig | None
) -> tuple[ProxyConfig | None, tuple[Link, ...]]:
    """Rules 4 and 5 for one fleet: the cache after a reconcile that published `published`
    (None: nothing), and each of its proxies' links."""
    cache = cache if published is None else published
    return cache, tuple(link.published(cache, published) for link in links)


@attrs.frozen
class ModelState:
    world: World = attrs.Factory(World)
    extension: Extension | None = attrs.Factory(Extension)
    """None: the control plane runs without an extension."""
    policy: str = attrs.field(
        default="keep-last-good", validator=attrs.validators.in_(FAILURE_POLICIES)
    )
    cache: ProxyConfig | None = None
    links: tuple[Link, ...] = attrs.field(default=(Link(),))
    """One per proxy of the Gateway, in the harness's order."""
    live_pods: frozenset[str] = frozenset()
    terminating: frozenset[str] = frozenset()
    """Rule 6: withdrawn from the endpoints, still running (also in `live_pods`)."""
    retired: frozenset[str] = frozenset()
    """Rule 6: stopped pods, whose names are never used again."""
    proxyless: ProxyConfig | None = None
    """Rule 8: what converged gRPC clients hold: the proxyless snapshot, or what they kept."""
    others: tuple[Fleet, ...] = ()
    """The fleets of the other Gateways, in the harness's order."""

    @links.validator
    def _at_least_one(self, _attribute: object, links: tuple[Link, ...]) -> None:
        if not links:
            raise ValueError("a Gateway has at least one proxy")

    # ------------------------------------------------------------- proxies

    @property
    def proxy(self) -> ProxyConfig | None:
        """What the first proxy holds (the only one, unless the fleet has replicas)."""
        return self.links[0].proxy

    @property
    def held(self) -> bool:
        """Some proxy's xDS connection is held (of any fleet)."""
        return any(link.held for link in self.all_links)

    @property
    def in_flight(self) -> tuple[ProxyConfig, ...]:
        """The first proxy's queue (rule 5)."""
        return self.links[0].in_flight

    @property
    def rejected_updates(self) -> int:
        """Rule 7: rejections the first proxy was made to make."""
        return self.links[0].rejected_updates

    @property
    def all_links(self) -> tuple[Link, ...]:
        """Every proxy's link, numbered across fleets (the first Gateway's first)."""
        return (*self.links, *(link for fleet in self.others for link in fleet.links))

    def link(self, proxy: int) -> Link:
        return self.all_links[proxy]

    def gateway_of(self, proxy: int) -> str:
        """The Gateway whose proxy `proxy` is."""
        fleet, _ = self._locate(proxy)
        return self.world.gateway if fleet is None else self.others[fleet].gateway

    def cache_of(self, proxy: int) -> ProxyConfig | None:
        """What the cache holds for `proxy`'s node."""
        fleet, _ = self._locate(proxy)
        return self.cache if fleet is None else self.others[fleet].cache

    def _locate(self, proxy: int) -> tuple[int | None, int]:
        """(index in `others`, or None for the first Gateway's; index in that fleet)."""
        if not 0 <= proxy < len(self.all_links):
            raise IndexError(f"no proxy {proxy}")
        if proxy < len(self.links):
            return None, proxy
        proxy -= len(self.links)
        for index, fleet in enumerate(self.others):
            if proxy < len(fleet.links):
                return index, proxy
            proxy -= len(fleet.links)
        raise AssertionError("unreachable")

    def with_proxies(self, count: int) -> ModelState:
        """`count` proxies, each as the first one is now (a fleet starts alike)."""
        if count < 1:
            raise ValueError(f"a Gateway has at least one proxy, not {count}")
        return attrs.evolve(self, links=(self.links[0],) * count)

    def with_fleet(self, gateway: str, count: int = 1) -> ModelState:
        """`count` proxies of `gateway` on a node of their own, holding nothing yet (they get
        its configuration at the next reconcile)."""
        if count < 1 or gateway == self.world.gateway:
            raise ValueError(f"a fleet of {count} proxies for {gateway} cannot be added")
        return attrs.evolve(self, others=(*self.others, Fleet(gateway, links=(Link(),) * count)))

    def _with_link(self, index: int, link: Link) -> ModelState:
        fleet, at = self._locate(index)
        if fleet is None:
            links = list(self.links)
            links[at] = link
            return attrs.evolve(self, links=tuple(links))
        others = list(self.others)
        fleet_links = list(others[fleet].links)
        fleet_links[at] = link
        others[fleet] = attrs.evolve(others[fleet], links=tuple(fleet_links))
        return attrs.evolve(self, others=tuple(others))

    # ----------------------------------------------------------- transitions

    def started(self, world: World) -> ModelState:
        """A fresh stack on `world`: every pod it names runs, then the first reconcile."""
        return attrs.evolve(self, live_pods=self.live_pods | world.pods()).with_world(world)

    def reconcile(self) -> ModelState:
        """Rules 1, 4, 5 and 8."""
        first = self.world.of_gateway(self.world.gateway)
        published = self._publication(first)
        cache, links = _published(self.cache, self.links, published)
        proxyless = self.proxyless if published is None else ProxyConfig(first)
        others = tuple(
            fleet.published(self._publication(self.world.of_gateway(fleet.gateway)))
            for fleet in self.others
        )
        return attrs.evolve(self, cache=cache, links=links, proxyless=proxyless, others=others)

    def _publication(self, world: World) -> ProxyConfig | None:
        """Rule 1: what a reconcile publishes for the fleet of `world`'s Gateway."""
        extension = self.extension
        if extension is None:
            return ProxyConfig(world)
        if extension.failing is None or not self._failure_reached(extension):
            return ProxyConfig(world, marker=extension.generation)
        if extension.fail_open:
            return ProxyConfig(world)
        if self.policy == "keep-last-good":
            return None
        return ProxyConfig(world, error=True)

    def _failure_reached(self, extension: Extension) -> bool:
        """Rule 1: does this translation (every Gateway's) call a failing hook?"""
        if extension.failing_hooks - {ROUTE_HOOK}:
            return True
        gateways = (self.world.gateway, *(item.name for item in self.world.others))
        return any(
            has_misdirected_routes(world)
            or any(
                effective_hostnames(route, listener)
                for route in world.routes
                for listener in world.listeners
            )
            for world in (self.world.of_gateway(name) for name in gateways)
        )

    def with_world(self, world: World) -> ModelState:
        """A store change: the new world, reconciled."""
        return attrs.evolve(self, world=world).reconcile()

    def with_live_pods(self, pods: frozenset[str]) -> ModelState:
        return attrs.evolve(self, live_pods=pods)

    def scale(self, service: str, replicas: int) -> ModelState:
        """Rule 6: start or withdraw pods so the Service's endpoints name `replicas` of them."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, not {replicas}")
        current = self.world.service(service)
        pods = list(current.pods) if current is not None else []
        started: list[str] = []
        while len(pods) < replicas:
            started.append(pod_name(service, self._next_serial(service, started)))
            pods.append(started[-1])
        withdrawn = frozenset(pods[replicas:])
        state = attrs.evolve(
            self,
            live_pods=self.live_pods | frozenset(started),
            terminating=self.terminating | withdrawn,
        )
        return state.with_world(self.world.with_service(Service(service, tuple(pods[:replicas]))))

    def _next_serial(self, service: str, extra: list[str]) -> int:
        pattern = re.compile(re.escape(service) + r"-(\d+)$")
        used = [
            int(found.group(1))
            for name in (*self.live_pods, *self.retired, *extra)
            if (found := pattern.match(name))
        ]
        return max(used, default=-1) + 1

    def settled(self) -> ModelState:
        """Rule 6: every proxy holds what the model says; withdrawn pods nothing names stop."""
        if self.held:
            return self
        configs = (
            self.cache,
            self.proxyless,
            *(fleet.cache for fleet in self.others),
            *(link.proxy for link in self.all_links),
        )
        named = frozenset().union(
            *(config.world.pods() for config in configs if config is not None)
        )
        stopping = self.terminating - named
        return attrs.evolve(
            self,
            live_pods=self.live_pods - stopping,
            terminating=self.terminating - stopping,
            retired=self.retired | stopping,
        )

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
        """Rules 3 and 8."""
        others = tuple(attrs.evolve(fleet, cache=None) for fleet in self.others)
        return attrs.evolve(self, cache=None, others=others).reconcile()

    def proxy_restarted(self, proxy: int = 0) -> ModelState:
        """Rule 4: a fresh proxy holds only what the cache can give it."""
        link = self.link(proxy)
        if link.held:
            raise ValueError("a proxy restarted behind a held connection gets nothing")
        return self._with_link(proxy, attrs.evolve(link, proxy=self.cache_of(proxy)))

    def hold(self, proxy: int = 0) -> ModelState:
        """Rule 5."""
        return self._with_link(proxy, attrs.evolve(self.link(proxy), held=True))

    def release(self, proxy: int = 0) -> ModelState:
        """Rule 5: the queued configurations are delivered; the proxy ends on the newest."""
        return self._with_link(proxy, self.link(proxy).released(self.cache_of(proxy)))

    def cut(self, proxy: int = 0) -> ModelState:
        """Rule 5: a held connection's queue is lost; the proxy reconnects to the newest."""
        return self.release(proxy) if self.link(proxy).held else self

    def rejected_update(self) -> ModelState:
        """Rule 7: every proxy of the first Gateway gets the update and rejects it."""
        if any(link.held for link in self.links):
            raise ValueError("an update pushed behind a held connection is not rejected yet")
        return attrs.evolve(
            self,
            links=tuple(
                attrs.evolve(link, rejected_updates=link.rejected_updates + 1)
                for link in self.links
            ),
        )

    # ---------------------------------------------------------- expectations

    def expect(self, request: Request, proxy: int = 0) -> frozenset[Outcome]:
        return expected_outcomes(self.link(proxy).proxy, request, self.live_pods)

    def expect_grpc(self, call: GrpcCall) -> frozenset[CallOutcome]:
        """Rule 8: what a converged proxyless client's call gets."""
        return expected_grpc(self.proxyless, call, self.live_pods)

    def passing(self, after: ModelState, proxy: int = 0) -> tuple[ProxyConfig | None, ...]:
        """The configurations a proxy may hold while this state becomes `after` (rule 5)."""
        now, then = self.link(proxy), after.link(proxy)
        if then.held:
            return (now.proxy,)
        return (now.proxy, *now.in_flight, then.proxy)

    @property
    def failing_closed(self) -> bool:
        return (
            self.extension is not None
            and self.extension.failing is not None
            and not self.extension.fail_open
        )
