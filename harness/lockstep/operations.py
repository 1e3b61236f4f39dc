"""The operations the harness applies, each to the model and to the running stack alike.

An operation is a small frozen value: it prints as one readable line, serializes to JSON for
replay files, and `run(session)` applies it to both sides. Nothing here is aimed at one bug:
these are the things that happen to a gateway in production.
"""

from __future__ import annotations

import abc
import json
from typing import Any, ClassVar

import attrs

from model import Backend, GatewayListener, HeaderMatch, Match, Route, Rule, Service
from sut.extension import Fault, Hook

__all__ = [
    "AddListener",
    "CreateRoute",
    "CutXds",
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
    "decode_operations",
    "encode_operations",
]


class Operation(abc.ABC):
    """One step. `run` receives the `harness.lockstep.session.Session`."""

    kind: ClassVar[str]

    @abc.abstractmethod
    def describe(self) -> str: ...

    @abc.abstractmethod
    def run(self, session: Any) -> None: ...


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


@attrs.frozen
class CreateRoute(Operation):
    kind = "create-route"
    route: Route

    def describe(self) -> str:
        return f"create HTTPRoute {_describe_route(self.route)}"

    def run(self, session: Any) -> None:
        session.change_world(session.world.with_route(self.route))


@attrs.frozen
class UpdateRoute(Operation):
    kind = "update-route"
    route: Route

    def describe(self) -> str:
        return f"update HTTPRoute {_describe_route(self.route)}"

    def run(self, session: Any) -> None:
        session.change_world(session.world.with_route(self.route))


@attrs.frozen
class DeleteRoute(Operation):
    kind = "delete-route"
    name: str

    def describe(self) -> str:
        return f"delete HTTPRoute {self.name}"

    def run(self, session: Any) -> None:
        session.change_world(session.world.without_route(self.name))


@attrs.frozen
class AddListener(Operation):
    kind = "add-listener"
    listener: GatewayListener

    def describe(self) -> str:
        host = self.listener.hostname or "(any host)"
        return (
            f"add Gateway listener {self.listener.name} ({self.listener.protocol}"
            f" {self.listener.port}, {host})"
        )

    def run(self, session: Any) -> None:
        session.change_world(session.world.with_listener(self.listener))


@attrs.frozen
class RemoveListener(Operation):
    kind = "remove-listener"
    name: str

    def describe(self) -> str:
        return f"remove Gateway listener {self.name}"

    def run(self, session: Any) -> None:
        session.change_world(session.world.without_listener(self.name))


@attrs.frozen
class Scale(Operation):
    kind = "scale"
    service: str
    replicas: int

    def describe(self) -> str:
        return f"scale Service {self.service} to {self.replicas} pod(s)"

    def run(self, session: Any) -> None:
        session.scale(self.service, self.replicas)


@attrs.frozen
class SetBackendPolicy(Operation):
    kind = "set-backend-policy"
    load_balancer: str | None
    """None removes the policy."""

    def describe(self) -> str:
        if self.load_balancer is None:
            return "remove the Gateway's BackendTrafficPolicy"
        return f"Gateway BackendTrafficPolicy: load balancer {self.load_balancer}"

    def run(self, session: Any) -> None:
        session.set_load_balancer(self.load_balancer)


@attrs.frozen
class ExtensionFault(Operation):
    kind = "extension-fault"
    fault: str
    hook: str | None = None
    """The failing hook; None fails every hook."""

    def describe(self) -> str:
        where = self.hook or "every hook"
        return f"extension starts failing on {where}: {self.fault} (from the next translation on)"

    def run(self, session: Any) -> None:
        hook = None if self.hook is None else Hook(self.hook)
        session.stack.extension_fault(Fault(self.fault), hook)
        session.model = session.model.extension_fails(self.fault, self.hook)


@attrs.frozen
class ExtensionRecover(Operation):
    kind = "extension-recover"
    new_generation: bool

    def describe(self) -> str:
        change = "with a new generation of its change" if self.new_generation else "unchanged"
        return f"extension recovers, {change}"

    def run(self, session: Any) -> None:
        session.model = session.model.extension_recovers(self.new_generation)
        assert session.model.extension is not None
        session.stack.extension_recover(session.model.extension.generation)


@attrs.frozen
class SetFailOpen(Operation):
    kind = "set-fail-open"
    enabled: bool

    def describe(self) -> str:
        return f"set the extension to fail-{'open' if self.enabled else 'closed'}"

    def run(self, session: Any) -> None:
        session.stack.set_fail_open(self.enabled)
        session.model = session.model.with_fail_open(self.enabled)


@attrs.frozen
class Resync(Operation):
    kind = "resync"

    def describe(self) -> str:
        return "resync: the control plane translates the unchanged store again"

    def run(self, session: Any) -> None:
        session.stack.reconcile()
        session.model = session.model.reconcile()


@attrs.frozen
class CutXds(Operation):
    kind = "cut-xds"

    def describe(self) -> str:
        return (
            "cut the xDS connection (Envoy reconnects on a new stream; what a held connection"
            " had not delivered is lost)"
        )

    def run(self, session: Any) -> None:
        session.cut()


@attrs.frozen
class HoldXds(Operation):
    kind = "hold-xds"

    def describe(self) -> str:
        return "hold the xDS connection (nothing passes either way until released)"

    def run(self, session: Any) -> None:
        session.hold()


@attrs.frozen
class ReleaseXds(Operation):
    kind = "release-xds"

    def describe(self) -> str:
        return "release the xDS connection"

    def run(self, session: Any) -> None:
        session.release()


@attrs.frozen
class RestartEnvoy(Operation):
    kind = "restart-envoy"

    def describe(self) -> str:
        return "restart Envoy (same node id, nothing cached)"

    def run(self, session: Any) -> None:
        session.restart_envoy()


@attrs.frozen
class RestartControlPlane(Operation):
    kind = "restart-control-plane"

    def describe(self) -> str:
        return "restart the control plane (cache and streams lost, resource store kept)"

    def run(self, session: Any) -> None:
        session.stack.restart_control_plane()
        session.model = session.model.control_plane_restarted()


@attrs.frozen
class RejectedUpdate(Operation):
    kind = "rejected-update"

    def describe(self) -> str:
        return "publish a RouteConfiguration Envoy must reject (NACK), then the good one again"

    def run(self, session: Any) -> None:
        session.rejected_update()


# ------------------------------------------------------------ replay files

_VALUE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Backend, GatewayListener, HeaderMatch, Match, Route, Rule, Service)
}
_OPERATIONS: dict[str, type[Operation]] = {
    cls.kind: cls
    for cls in (
        AddListener,
        CreateRoute,
        CutXds,
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


def _encode(value: Any) -> Any:
    if isinstance(value, Operation):
        fields = {f.name: _encode(getattr(value, f.name)) for f in attrs.fields(type(value))}  # type: ignore[arg-type]
        return {"op": value.kind, **fields}
    if attrs.has(type(value)):
        fields = {f.name: _encode(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_decode(item) for item in value)
    if isinstance(value, dict):
        fields = {k: _decode(v) for k, v in value.items() if k not in ("op", "type")}
        if "op" in value:
            return _OPERATIONS[value["op"]](**fields)
        return _VALUE_TYPES[value["type"]](**fields)
    return value


def encode_operations(operations: list[Operation]) -> str:
    return json.dumps([_encode(op) for op in operations], indent=1)


def decode_operations(text: str) -> list[Operation]:
    """Operations from a replay file; raises ValueError naming what is wrong."""
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise ValueError("a replay file holds a JSON list of operations")
        return [_decode(item) for item in document]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a routeproof replay file: {error}") from error
