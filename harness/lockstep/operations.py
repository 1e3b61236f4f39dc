"""The operations the harness applies, each to the model and to the running stack side by side.

An operation is a small frozen value: it prints as one readable line, serializes to JSON for
replay files, states its model transition (`on_model`, pure), drives the stack to match
(`on_stack`), and knows the operation that undoes it (`undo`, given the model before it; None
where nothing undoes it exactly). Nothing here is aimed at one bug: these are the things that
happen to a gateway in production.

`hitless` says whether requests sent while the operation takes effect must get an answer the
model allows before or after it (restarting the proxy is not hitless by nature).

The operations on one proxy's xDS connection or process (cut, hold, release, restart Envoy) name
it by `proxy`, its index in the fleet; None (the default) is the only proxy of a fleet of one, so
a fleet of one reads and replays as it always did. Proxies are numbered across Gateways: the
first Gateway's, then the second's (`ModelState.link`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import attrs

from harness.lockstep.stack import Stack
from harness.lockstep.worlds import NAMESPACE, to_resources
from model import (
    Gateway,
    GatewayListener,
    ModelState,
    Route,
    Service,
    World,
)
from sut.extension import Fault, Hook

__all__ = [
    "OPERATIONS",
    "OPERATION_KINDS",
    "STREAM_KINDS",
    "AddListener",
    "CreateGateway",
    "CreateRoute",
    "CutXds",
    "DeleteGateway",
    "DeleteRoute",
    "ExtensionFault",
    "ExtensionRecover",
    "HoldXds",
    "Operation",
    "RejectedUpdate",
    "ReleaseXds",
    "RemoveListener",
    "RestartControlPlane",
    "RestartEnvoy",
    "Resync",
    "Scale",
    "SetBackendPolicy",
    "SetFailOpen",
    "UpdateRoute",
    "publish_world",
]


def publish_world(stack: Stack, world: World) -> None:
    """The store becomes `world`: its manifests, and each Service's endpoints at its pods."""
    endpoints = {service.name: service.pods for service in world.services}
    grpc = stack.settings.grpc_clients > 0
    resources = to_resources(world, world.load_balancer, grpc=grpc)
    stack.apply(resources, endpoints={NAMESPACE: endpoints})


class Operation(abc.ABC):
    """One step, applied to the model (`on_model`) and to the stack (`on_stack`) alike."""

    kind: ClassVar[str]
    hitless: ClassVar[bool] = True

    @abc.abstractmethod
    def describe(self) -> str: ...

    @abc.abstractmethod
    def on_model(self, model: ModelState) -> ModelState:
        """The model's transition; pure."""

    @abc.abstractmethod
    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        """Make the running stack do what `on_model` did to the model."""

    def undo(self, before: ModelState) -> Operation | None:
        """The operation that puts back what this one is about to change, from `before`."""
        del before
        return None

    @property
    def target(self) -> int | None:
        """The proxy this operation acts on; None: the whole fleet (or none of it)."""
        return None

    def disrupts(self, proxies: int) -> frozenset[int]:
        """The proxies (of `proxies`) whose requests this operation may disrupt: none if it is
        hitless, else its target's, or every proxy's."""
        if self.hitless:
            return frozenset()
        target = self.target
        return frozenset(range(proxies)) if target is None else frozenset({target})


def _proxy_field() -> Any:
    return attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.ge(0)),
        metadata={"omit_if_none": True},
    )


class _LinkOperation(Operation):
    """An operation on one proxy: its xDS connection or its process."""

    proxy: int | None

    @property
    def target(self) -> int:
        return self.proxy or 0

    def _of(self, what: str) -> str:
        return what if self.proxy is None else f"{what} of proxy {self.proxy}"


class _StoreChange(Operation):
    """A change of the Gateway API store: the control plane reconciles the new world."""

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        publish_world(stack, after.world)


def _describe_route(route: Route) -> str:
    parts = [route.name]
    if route.section:
        parts.append(f"on listener {route.section}")
    parts.append("hostnames " + (", ".join(route.hostnames) if route.hostnames else "(any)"))
    rules = []
    for rule in route.rules:
        matches = " | ".join(
            f"{m.path_kind} {m.path}" + "".join(f" +{h.name}={h.value}" for h in m.headers)
            for m in rule.matches
        )
        backends = ", ".join(
            f"{b.service}" + (f" weight {b.weight}" if b.weight != 1 else "") for b in rule.backends
        )
        rules.append(f"[{matches} -> {backends}]")
    return " ".join(parts) + ": " + " ".join(rules)


def _put_route_back(before: ModelState, name: str) -> Operation:
    previous = before.world.route(name)
    return DeleteRoute(name) if previous is None else UpdateRoute(previous)


@attrs.frozen
class CreateRoute(_StoreChange):
    kind = "create-route"
    route: Route

    def describe(self) -> str:
        return f"create HTTPRoute {_describe_route(self.route)}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.with_route(self.route))

    def undo(self, before: ModelState) -> Operation:
        return _put_route_back(before, self.route.name)


@attrs.frozen
class UpdateRoute(_StoreChange):
    kind = "update-route"
    route: Route

    def describe(self) -> str:
        return f"update HTTPRoute {_describe_route(self.route)}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.with_route(self.route))

    def undo(self, before: ModelState) -> Operation:
        return _put_route_back(before, self.route.name)


@attrs.frozen
class DeleteRoute(_StoreChange):
    kind = "delete-route"
    name: str

    def describe(self) -> str:
        return f"delete HTTPRoute {self.name}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.without_route(self.name))

    def undo(self, before: ModelState) -> Operation | None:
        deleted = before.world.route(self.name)
        if deleted is None:
            return None
        newest = max((route.created for route in before.world.routes), default=0)
        # Created again: a new creation timestamp, newer than every route in the store.
        return CreateRoute(attrs.evolve(deleted, created=newest + 1))


@attrs.frozen
class AddListener(_StoreChange):
    kind = "add-listener"
    listener: GatewayListener

    def describe(self) -> str:
        host = self.listener.hostname or "(any host)"
        return (
            f"add Gateway listener {self.listener.name} ({self.listener.protocol}"
            f" {self.listener.port}, {host})"
        )

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.with_listener(self.listener))

    def undo(self, before: ModelState) -> Operation:
        previous = before.world.listener(self.listener.name)
        return RemoveListener(self.listener.name) if previous is None else AddListener(previous)


@attrs.frozen
class RemoveListener(_StoreChange):
    kind = "remove-listener"
    name: str

    def describe(self) -> str:
        return f"remove Gateway listener {self.name}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.without_listener(self.name))

    def undo(self, before: ModelState) -> Operation | None:
        listener = before.world.listener(self.name)
        return None if listener is None else AddListener(listener)


@attrs.frozen
class CreateGateway(_StoreChange):
    """Another Gateway enters the store (or is replaced): its proxies, running from the start on
    their own node, get its listeners."""

    kind = "create-gateway"
    gateway: Gateway

    def describe(self) -> str:
        listeners = ", ".join(
            f"{item.name} ({item.protocol} {item.port}, {item.hostname or '(any host)'})"
            for item in self.gateway.listeners
        )
        return f"create Gateway {self.gateway.name} with listeners {listeners}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.with_gateway(self.gateway))

    def undo(self, before: ModelState) -> Operation:
        previous = before.world.other(self.gateway.name)
        return DeleteGateway(self.gateway.name) if previous is None else CreateGateway(previous)


@attrs.frozen
class DeleteGateway(_StoreChange):
    """Another Gateway leaves the store: its proxies must withdraw every listener."""

    kind = "delete-gateway"
    name: str

    def describe(self) -> str:
        return f"delete Gateway {self.name}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.without_gateway(self.name))

    def undo(self, before: ModelState) -> Operation | None:
        previous = before.world.other(self.name)
        return None if previous is None else CreateGateway(previous)


@attrs.frozen
class Scale(Operation):
    """New pods start before their endpoints are published; withdrawn ones stop only once the
    proxy no longer names them (the session stops them when the model says so)."""

    kind = "scale"
    service: str
    replicas: int

    def describe(self) -> str:
        return f"scale Service {self.service} to {self.replicas} pod(s)"

    def on_model(self, model: ModelState) -> ModelState:
        return model.scale(self.service, self.replicas)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.start_pods(NAMESPACE, self.service, sorted(after.live_pods - before.live_pods))
        publish_world(stack, after.world)

    def undo(self, before: ModelState) -> Operation:
        service = before.world.service(self.service) or Service(self.service)
        return Scale(self.service, len(service.pods))


@attrs.frozen
class SetBackendPolicy(_StoreChange):
    kind = "set-backend-policy"
    load_balancer: str | None
    """None removes the policy."""

    def describe(self) -> str:
        if self.load_balancer is None:
            return "remove the Gateway's BackendTrafficPolicy"
        return f"Gateway BackendTrafficPolicy: load balancer {self.load_balancer}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_world(model.world.with_load_balancer(self.load_balancer))

    def undo(self, before: ModelState) -> Operation:
        return SetBackendPolicy(before.world.load_balancer)


@attrs.frozen
class ExtensionFault(Operation):
    kind = "extension-fault"
    fault: str
    hook: str | None = None
    """The failing hook; None fails every hook."""

    def describe(self) -> str:
        where = self.hook or "every hook"
        return f"extension starts failing on {where}: {self.fault} (from the next translation on)"

    def on_model(self, model: ModelState) -> ModelState:
        return model.extension_fails(self.fault, self.hook)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.extension_fault(Fault(self.fault), None if self.hook is None else Hook(self.hook))

    def undo(self, before: ModelState) -> Operation | None:
        # A recovery clears every fault: it undoes this one only if none was there before.
        healthy = before.extension is not None and before.extension.failing is None
        return ExtensionRecover(new_generation=False) if healthy else None


@attrs.frozen
class ExtensionRecover(Operation):
    kind = "extension-recover"
    new_generation: bool

    def describe(self) -> str:
        change = "with a new generation of its change" if self.new_generation else "unchanged"
        return f"extension recovers, {change}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.extension_recovers(self.new_generation)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        assert after.extension is not None
        stack.extension_recover(after.extension.generation)


@attrs.frozen
class SetFailOpen(Operation):
    kind = "set-fail-open"
    enabled: bool

    def describe(self) -> str:
        return f"set the extension to fail-{'open' if self.enabled else 'closed'}"

    def on_model(self, model: ModelState) -> ModelState:
        return model.with_fail_open(self.enabled)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.set_fail_open(self.enabled)

    def undo(self, before: ModelState) -> Operation:
        return SetFailOpen(before.extension is not None and before.extension.fail_open)


@attrs.frozen
class Resync(Operation):
    kind = "resync"

    def describe(self) -> str:
        return "resync: the control plane translates the unchanged store again"

    def on_model(self, model: ModelState) -> ModelState:
        return model.reconcile()

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.reconcile()


STREAM_KINDS = ("LDS", "CDS", "RDS", "EDS", "SDS")
"""The types whose streams a per-type cut may target (`CutXds.stream`)."""


@attrs.frozen
class CutXds(_LinkOperation):
    """Cut a proxy's xDS connections; with the per-type transport, `stream` cuts only that
    type's ("RDS": every RouteConfiguration stream of the proxy) while the others flow.

    A cut of one type is offered only on a flowing link: the model's link is the whole proxy
    (rule 5 makes the cut of a flowing link no change), and it cannot say what a held proxy
    would have of one type lost and the others queued. Hold and release stay whole-proxy."""

    kind = "cut-xds"
    proxy: int | None = _proxy_field()
    stream: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.in_(STREAM_KINDS)),
        metadata={"omit_if_none": True},
    )

    def describe(self) -> str:
        if self.stream is not None:
            return (
                f"{self._of(f'cut the {self.stream} streams')} (Envoy reconnects them; the other"
                " types flow on)"
            )
        return (
            f"{self._of('cut the xDS connection')} (Envoy reconnects on a new stream; what a"
            " held connection had not delivered is lost)"
        )

    def on_model(self, model: ModelState) -> ModelState:
        if self.stream is not None and model.link(self.target).held:
            raise ValueError(f"a cut of the {self.stream} streams needs a flowing connection")
        return model.cut(self.target)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.cut_xds(self.target, self.stream)
        if before.link(self.target).held:
            stack.release_xds(self.target)


@attrs.frozen
class HoldXds(_LinkOperation):
    kind = "hold-xds"
    proxy: int | None = _proxy_field()

    def describe(self) -> str:
        return f"{self._of('hold the xDS connection')} (nothing passes either way until released)"

    def on_model(self, model: ModelState) -> ModelState:
        return model.hold(self.target)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.hold_xds(self.target)


@attrs.frozen
class ReleaseXds(_LinkOperation):
    kind = "release-xds"
    proxy: int | None = _proxy_field()

    def describe(self) -> str:
        return self._of("release the xDS connection")

    def on_model(self, model: ModelState) -> ModelState:
        return model.release(self.target)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.release_xds(self.target)


@attrs.frozen
class RestartEnvoy(_LinkOperation):
    kind = "restart-envoy"
    hitless = False
    proxy: int | None = _proxy_field()

    def describe(self) -> str:
        return f"{self._of('restart Envoy')} (same node id, nothing cached)"

    def on_model(self, model: ModelState) -> ModelState:
        return model.proxy_restarted(self.target)

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.restart_envoy(self.target)


@attrs.frozen
class RestartControlPlane(Operation):
    kind = "restart-control-plane"

    def describe(self) -> str:
        return "restart the control plane (cache and streams lost, resource store kept)"

    def on_model(self, model: ModelState) -> ModelState:
        return model.control_plane_restarted()

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.restart_control_plane()


@attrs.frozen
class RejectedUpdate(Operation):
    kind = "rejected-update"

    def describe(self) -> str:
        return "publish a RouteConfiguration Envoy must reject (NACK), then the good one again"

    def on_model(self, model: ModelState) -> ModelState:
        return model.rejected_update()

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.push_rejected_update()


# ------------------------------------------------------------ every kind

OPERATIONS: dict[str, type[Operation]] = {
    cls.kind: cls
    for cls in (
        AddListener,
        CreateGateway,
        CreateRoute,
        CutXds,
        DeleteGateway,
        DeleteRoute,
        ExtensionFault,
        ExtensionRecover,
        HoldXds,
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
}

OPERATION_KINDS: tuple[str, ...] = tuple(sorted(OPERATIONS))
"""Every operation's `kind`, as replay files and `--stats` name them."""
