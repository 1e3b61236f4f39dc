"""The letters `explore` spells sequences with: atomic operations in representative classes.

A letter builds one atomic operation from the model state it meets, or None where it does not
apply (the machine's preconditions: no fifth route, no Gateway without a listener, no extension
operation without an extension, nothing but release and cut behind a held connection). A letter
names a class of operations, not one value: "delete the newest route" is one letter whichever
route that is, so short sequences over a small alphabet reach the interleavings that matter.

Two alphabets, stated here:
- FULL (about 55 letters): each fault kind on each hook, recovery with and without a new
  generation, fail-open on and off, each catalogue listener added and removed, routes created
  over overlapping hostnames, updated (backend, hostnames, a missing Service) and deleted,
  scaling each Service to none and to two pods, each backend policy, resync, cut, hold, release,
  both restarts and a rejected update. `explore` uses it up to depth 2.
- COARSE (21 letters): one class per kind where kinds behave alike. Faults differ in how the
  control plane meets them (an error, a hang past the deadline, a reply that must be rejected),
  so three stay; listeners, routes and scaling keep one class per direction. Depth 3 and beyond.

In a fleet (`alphabet(name, proxies)`), each letter on a proxy's connection or process (cut,
hold, release, restart Envoy) is there once per proxy; hold and restart apply to a proxy whose
connection flows, release to a held one. With the per-type transport, each proxy also has a
letter cutting one type's streams (`PER_TYPE_CUTS`), on a flowing connection only. With a
second Gateway (`gateways` = 2), its proxy has the same letters as the others, and two letters
create and delete that Gateway.

Routes are created from the catalogue keyed by name (`worlds.CATALOGUE_ROUTES`): the lowest free
name gets its catalogue content, so deleting a route and creating one again brings back the
same resources under the same names, the re-subscription a cache must answer.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from harness.lockstep.operations import (
    STREAM_KINDS,
    AddListener,
    CreateGateway,
    CreateRoute,
    CutXds,
    DeleteGateway,
    DeleteRoute,
    ExtensionFault,
    ExtensionRecover,
    HoldXds,
    Operation,
    RejectedUpdate,
    ReleaseXds,
    RemoveListener,
    RestartControlPlane,
    RestartEnvoy,
    Resync,
    Scale,
    SetBackendPolicy,
    SetFailOpen,
    UpdateRoute,
)
from harness.lockstep.worlds import (
    CATALOGUE_ROUTES,
    FAULTS,
    HOOKS,
    LISTENERS,
    LOAD_BALANCERS,
    MAX_ROUTES,
    MISSING_SERVICE,
    SECOND_GATEWAY,
    SERVICES,
    second_gateway,
)
from model import Backend, ModelState, Route

__all__ = ["ALPHABETS", "COARSE", "FULL", "PER_TYPE_CUTS", "Letter", "alphabet"]

Build = Callable[[ModelState], Operation | None]


@attrs.frozen
class Letter:
    label: str
    kind: str
    build: Build = attrs.field(eq=False, repr=False)

    def operation(self, model: ModelState) -> Operation | None:
        """The operation this letter is in `model`, or None where it does not apply."""
        return self.build(model)


# ------------------------------------------------------------ builders


def _routes_by_age(model: ModelState) -> list[Route]:
    return sorted(model.world.routes, key=lambda route: (route.created, route.name))


def _create(model: ModelState) -> Operation | None:
    taken = {route.name for route in model.world.routes}
    free = [name for name in CATALOGUE_ROUTES if name not in taken]
    if not free or len(taken) >= MAX_ROUTES:
        return None
    created = max((route.created for route in model.world.routes), default=9) + 1
    return CreateRoute(attrs.evolve(CATALOGUE_ROUTES[free[0]], created=max(created, 10)))


def _update(which: str, change: Callable[[Route], Route]) -> Build:
    def build(model: ModelState) -> Operation | None:
        routes = _routes_by_age(model)
        if not routes:
            return None
        route = routes[0] if which == "oldest" else routes[-1]
        changed = change(route)
        return None if changed == route else UpdateRoute(changed)

    return build


def _delete(which: str) -> Build:
    def build(model: ModelState) -> Operation | None:
        routes = _routes_by_age(model)
        if not routes:
            return None
        return DeleteRoute((routes[0] if which == "oldest" else routes[-1]).name)

    return build


def _backend(service: str) -> Callable[[Route], Route]:
    def change(route: Route) -> Route:
        rules = tuple(attrs.evolve(rule, backends=(Backend(service),)) for rule in route.rules)
        if rules == route.rules:
            rules = tuple(attrs.evolve(rule, backends=(Backend("svc-b"),)) for rule in route.rules)
        return attrs.evolve(route, rules=rules)

    return change


def _hostnames(route: Route) -> Route:
    hostnames = ("*.example.com",) if route.hostnames != ("*.example.com",) else ()
    return attrs.evolve(route, hostnames=hostnames)


def _add_listener(name: str | None) -> Build:
    def build(model: ModelState) -> Operation | None:
        present = {item.name for item in model.world.listeners}
        absent = [item for item in LISTENERS if item not in present]
        wanted = absent[:1] if name is None else [name] if name in absent else []
        return AddListener(LISTENERS[wanted[0]]) if wanted else None

    return build


def _remove_listener(name: str | None) -> Build:
    def build(model: ModelState) -> Operation | None:
        present = [item.name for item in model.world.listeners]
        if len(present) < 2:
            return None  # a Gateway needs a listener
        wanted = present[-1:] if name is None else [name] if name in present else []
        return RemoveListener(wanted[0]) if wanted else None

    return build


def _scale(service: str, replicas: int) -> Build:
    def build(model: ModelState) -> Operation | None:
        current = model.world.service(service)
        if current is not None and len(current.pods) == replicas:
            return None
        return Scale(service, replicas)

    return build


def _policy(load_balancer: str | None) -> Build:
    def build(model: ModelState) -> Operation | None:
        if model.world.load_balancer == load_balancer:
            return None
        return SetBackendPolicy(load_balancer)

    return build


def _fault(fault: str, hook: str | None) -> Build:
    def build(model: ModelState) -> Operation | None:
        return ExtensionFault(fault, hook) if model.extension is not None else None

    return build


def _recover(new_generation: bool) -> Build:
    def build(model: ModelState) -> Operation | None:
        extension = model.extension
        if extension is None or extension.failing is None:
            return None
        return ExtensionRecover(new_generation)

    return build


def _fail_open(enabled: bool | None) -> Build:
    """None toggles."""

    def build(model: ModelState) -> Operation | None:
        if model.extension is None:
            return None
        wanted = not model.extension.fail_open if enabled is None else enabled
        return None if wanted == model.extension.fail_open else SetFailOpen(wanted)

    return build


def _always(operation: Operation) -> Build:
    return lambda model: operation


def _unless_held(operation: Operation) -> Build:
    return lambda model: None if model.held else operation


def _if_link(held: bool, operation: Operation) -> Build:
    """The operation on its proxy, if that proxy's connection is held (or flows) as wanted."""
    target = operation.target or 0
    return lambda model: operation if model.link(target).held == held else None


def _link_letters(proxy: int | None, streams: tuple[str, ...] = ()) -> list[Letter]:
    """Cut, hold, release and restart of one proxy (None: the only one, named as always), and
    a cut of each of `streams` (per-type: one type's streams, on a flowing link only)."""
    of = "" if proxy is None else f" of proxy {proxy}"
    return [
        Letter(f"cut xDS{of}", "cut-xds", _always(CutXds(proxy))),
        *(
            Letter(f"cut {kind} streams{of}", "cut-xds", _if_link(False, CutXds(proxy, kind)))
            for kind in streams
        ),
        Letter(f"hold xDS{of}", "hold-xds", _if_link(False, HoldXds(proxy))),
        Letter(f"release xDS{of}", "release-xds", _if_link(True, ReleaseXds(proxy))),
        Letter(f"restart Envoy{of}", "restart-envoy", _if_link(False, RestartEnvoy(proxy))),
    ]


def _connection(proxies: int, streams: tuple[str, ...]) -> list[Letter]:
    if proxies == 1:
        links = _link_letters(None, streams)
    else:
        links = [letter for proxy in range(proxies) for letter in _link_letters(proxy, streams)]
    return [
        Letter("resync", "resync", _always(Resync())),
        *links,
        Letter(
            "restart control plane", "restart-control-plane", _unless_held(RestartControlPlane())
        ),
        Letter("rejected update", "rejected-update", _unless_held(RejectedUpdate())),
    ]


def _full(proxies: int, streams: tuple[str, ...] = ()) -> tuple[Letter, ...]:
    return (
        *(
            Letter(
                f"fault {fault} on {hook or 'every hook'}", "extension-fault", _fault(fault, hook)
            )
            for fault in FAULTS
            for hook in HOOKS
        ),
        Letter("recover, new generation", "extension-recover", _recover(True)),
        Letter("recover, same generation", "extension-recover", _recover(False)),
        Letter("fail-open on", "set-fail-open", _fail_open(True)),
        Letter("fail-open off", "set-fail-open", _fail_open(False)),
        *(
            Letter(f"add listener {name}", "add-listener", _add_listener(name))
            for name in LISTENERS
        ),
        *(
            Letter(f"remove listener {name}", "remove-listener", _remove_listener(name))
            for name in LISTENERS
        ),
        Letter("create route (catalogue, lowest free name)", "create-route", _create),
        Letter(
            "update oldest route: backend svc-c",
            "update-route",
            _update("oldest", _backend("svc-c")),
        ),
        Letter(
            "update newest route: backend svc-c",
            "update-route",
            _update("newest", _backend("svc-c")),
        ),
        Letter("update oldest route: hostnames", "update-route", _update("oldest", _hostnames)),
        Letter("update newest route: hostnames", "update-route", _update("newest", _hostnames)),
        Letter(
            "update newest route: missing Service",
            "update-route",
            _update("newest", _backend(MISSING_SERVICE)),
        ),
        Letter("delete oldest route", "delete-route", _delete("oldest")),
        Letter("delete newest route", "delete-route", _delete("newest")),
        *(
            Letter(f"scale {service} to {replicas}", "scale", _scale(service, replicas))
            for service in SERVICES
            for replicas in (0, 2)
        ),
        *(
            Letter(f"backend policy {policy or 'none'}", "set-backend-policy", _policy(policy))
            for policy in (None, *LOAD_BALANCERS)
        ),
        *_connection(proxies, streams),
    )


def _coarse(proxies: int, streams: tuple[str, ...] = ()) -> tuple[Letter, ...]:
    return (
        Letter("fault unavailable on every hook", "extension-fault", _fault("unavailable", None)),
        Letter(
            "fault hang on PostRouteModify", "extension-fault", _fault("hang", "PostRouteModify")
        ),
        Letter(
            "fault invalid-reject on PostTranslateModify",
            "extension-fault",
            _fault("invalid-reject", "PostTranslateModify"),
        ),
        Letter("recover, new generation", "extension-recover", _recover(True)),
        Letter("recover, same generation", "extension-recover", _recover(False)),
        Letter("toggle fail-open", "set-fail-open", _fail_open(None)),
        Letter("add a listener", "add-listener", _add_listener(None)),
        Letter("remove the last listener", "remove-listener", _remove_listener(None)),
        Letter("create route (catalogue, lowest free name)", "create-route", _create),
        Letter(
            "update oldest route: backend svc-c",
            "update-route",
            _update("oldest", _backend("svc-c")),
        ),
        Letter("delete newest route", "delete-route", _delete("newest")),
        Letter("scale svc-b to 0", "scale", _scale("svc-b", 0)),
        Letter("scale svc-b to 2", "scale", _scale("svc-b", 2)),
        Letter("backend policy Random", "set-backend-policy", _policy("Random")),
        *_connection(proxies, streams),
    )


FULL = _full(1)
COARSE = _coarse(1)
ALPHABETS = {"full": FULL, "coarse": COARSE}
_BUILDERS = {"full": _full, "coarse": _coarse}
PER_TYPE_CUTS = {"full": STREAM_KINDS, "coarse": ("RDS", "EDS")}
"""The types whose streams each alphabet cuts alone with the per-type transport: every type in
FULL; in COARSE the two whose streams come and go with the names subscribed."""


def _second_gateway_letters() -> tuple[Letter, ...]:
    def create(model: ModelState) -> Operation | None:
        return None if model.world.other(SECOND_GATEWAY) else CreateGateway(second_gateway())

    def delete(model: ModelState) -> Operation | None:
        return DeleteGateway(SECOND_GATEWAY) if model.world.other(SECOND_GATEWAY) else None

    return (
        Letter(f"create Gateway {SECOND_GATEWAY}", "create-gateway", create),
        Letter(f"delete Gateway {SECOND_GATEWAY}", "delete-gateway", delete),
    )


def alphabet(
    name: str, proxies: int = 1, transport: str = "ads", gateways: int = 1
) -> tuple[Letter, ...]:
    """The alphabet `name` for a fleet of `proxies` (with "per-type", its per-type cuts too;
    with 2 `gateways`, the second Gateway's proxy and its creation and deletion too)."""
    if proxies < 1:
        raise ValueError(f"a fleet has at least one proxy, not {proxies}")
    if gateways == 2:
        streams = PER_TYPE_CUTS[name] if transport == "per-type" else ()
        return (*_BUILDERS[name](proxies + 1, streams), *_second_gateway_letters())
    if transport == "per-type":
        return _BUILDERS[name](proxies, PER_TYPE_CUTS[name])
    return ALPHABETS[name] if proxies == 1 else _BUILDERS[name](proxies)
