"""The world the model reasons about: Gateway listeners, HTTPRoutes and Services, as values.

It is a deliberately small slice of Gateway API (exact and prefix paths, exact header matches,
weighted backends, route hostnames, sectionName attachment), enough to cover overlapping
hostnames and path prefixes across routes while keeping the oracle obviously right.

The store may hold more than one Gateway: the first (`World.gateway`, always there, its
listeners `World.listeners`) and others that exist or not (`World.others`). A route names the
Gateways it attaches to (its parentRefs); `World.of_gateway` is the single-Gateway world one
Gateway's proxies are judged by, which is all `model.routing` ever reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

__all__ = [
    "DEFAULT_GATEWAY",
    "Backend",
    "Gateway",
    "GatewayListener",
    "HeaderMatch",
    "Match",
    "Route",
    "Rule",
    "Service",
    "World",
]

PROTOCOLS = ("HTTP", "HTTPS")
DEFAULT_GATEWAY = "gw"
"""The first Gateway's name, unless a world names it otherwise."""
PATH_KINDS = ("Exact", "PathPrefix")


def _check_hostname(_instance: object, _attribute: object, value: str | None) -> None:
    if value is None:
        return
    if (
        not value
        or value != value.lower()
        or "*" in value[1:]
        or (value.startswith("*") and not value.startswith("*."))
    ):
        raise ValueError(f"not a Gateway API hostname: {value!r}")


@attrs.frozen(order=True)
class GatewayListener:
    name: str
    protocol: str = attrs.field(validator=attrs.validators.in_(PROTOCOLS))
    port: int
    hostname: str | None = attrs.field(default=None, validator=_check_hostname)


@attrs.frozen(order=True)
class HeaderMatch:
    name: str
    value: str


@attrs.frozen(order=True)
class Match:
    path_kind: str = attrs.field(validator=attrs.validators.in_(PATH_KINDS))
    path: str = "/"
    headers: tuple[HeaderMatch, ...] = ()

    def __attrs_post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError(f"path must start with '/': {self.path!r}")


@attrs.frozen(order=True)
class Backend:
    service: str
    weight: int = 1


@attrs.frozen(order=True)
class Rule:
    matches: tuple[Match, ...]
    backends: tuple[Backend, ...]


@attrs.frozen(order=True)
class Route:
    """An HTTPRoute in the Gateway's namespace; `created` orders routes by creation time."""

    name: str
    created: int
    rules: tuple[Rule, ...]
    hostnames: tuple[str, ...] = ()
    section: str | None = None
    """parentRef sectionName; None attaches to every listener of the Gateway."""
    gateways: tuple[str, ...] = attrs.field(
        default=(DEFAULT_GATEWAY,), metadata={"omit_if_default": True}
    )
    """The Gateways its parentRefs name, each with `section`; a Gateway the store does not hold
    attaches nothing."""


@attrs.frozen(order=True)
class Service:
    name: str
    pods: tuple[str, ...] = ()
    """Pods backing the Service, by name; a pod name is never reused."""


def _sorted_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(sorted(items))


@attrs.frozen(order=True)
class Gateway:
    """A Gateway other than the first, and its listeners."""

    name: str
    listeners: tuple[GatewayListener, ...] = attrs.field(default=(), converter=_sorted_tuple)


@attrs.frozen
class World:
    """What the store holds: the first Gateway's listeners, the other Gateways, the routes and
    the Services they name."""

    listeners: tuple[GatewayListener, ...] = attrs.field(default=(), converter=_sorted_tuple)
    routes: tuple[Route, ...] = attrs.field(default=(), converter=_sorted_tuple)
    services: tuple[Service, ...] = attrs.field(default=(), converter=_sorted_tuple)
    load_balancer: str | None = None
    """The Gateway-wide BackendTrafficPolicy's load balancer type, if there is one. It tunes every
    Cluster and changes no answer: no routing rule reads it."""
    gateway: str = DEFAULT_GATEWAY
    """The first Gateway's name (its listeners are `listeners`)."""
    others: tuple[Gateway, ...] = attrs.field(default=(), converter=_sorted_tuple)
    """Every other Gateway the store holds."""

    def other(self, name: str) -> Gateway | None:
        return next((item for item in self.others if item.name == name), None)

    def with_gateway(self, gateway: Gateway) -> World:
        """Another Gateway created (or replaced)."""
        if gateway.name == self.gateway:
            raise ValueError(f"{gateway.name} is the first Gateway, always in the store")
        kept = [item for item in self.others if item.name != gateway.name]
        return attrs.evolve(self, others=(*kept, gateway))

    def without_gateway(self, name: str) -> World:
        return attrs.evolve(self, others=[item for item in self.others if item.name != name])

    def of_gateway(self, name: str) -> World:
        """The single-Gateway world `name`'s proxies serve: its listeners (none while it is not
        in the store), the routes attached to it, every Service. The BackendTrafficPolicy
        targets the first Gateway only."""
        if name == self.gateway:
            listeners, load_balancer = self.listeners, self.load_balancer
        else:
            other = self.other(name)
            listeners, load_balancer = (other.listeners if other else ()), None
        return World(
            listeners=listeners,
            routes=[route for route in self.routes if name in route.gateways],
            services=self.services,
            load_balancer=load_balancer,
            gateway=name,
        )

    def listener(self, name: str) -> GatewayListener | None:
        return next((item for item in self.listeners if item.name == name), None)

    def route(self, name: str) -> Route | None:
        return next((item for item in self.routes if item.name == name), None)

    def service(self, name: str) -> Service | None:
        return next((item for item in self.services if item.name == name), None)

    def with_listener(self, listener: GatewayListener) -> World:
        kept = [item for item in self.listeners if item.name != listener.name]
        return attrs.evolve(self, listeners=(*kept, listener))

    def without_listener(self, name: str) -> World:
        return attrs.evolve(self, listeners=[item for item in self.listeners if item.name != name])

    def with_route(self, route: Route) -> World:
        kept = [item for item in self.routes if item.name != route.name]
        return attrs.evolve(self, routes=(*kept, route))

    def without_route(self, name: str) -> World:
        return attrs.evolve(self, routes=[item for item in self.routes if item.name != name])

    def with_service(self, service: Service) -> World:
        kept = [item for item in self.services if item.name != service.name]
        return attrs.evolve(self, services=(*kept, service))

    def with_load_balancer(self, load_balancer: str | None) -> World:
        return attrs.evolve(self, load_balancer=load_balancer)

    def pods(self) -> frozenset[str]:
        """Every pod some Service's endpoints name."""
        return frozenset(pod for service in self.services for pod in service.pods)

    def ports(self) -> frozenset[int]:
        return frozenset(item.port for item in self.listeners)
