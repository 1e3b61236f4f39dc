"""The Hypothesis state machine: every operation a gateway meets, against model and real Envoy.

Each rule builds one `Operation`, notes it, and applies it to both sides through the `Session`;
one invariant checks everything after every step. Route names live in a Bundle and are also read
from the store, because preconditions cannot read Bundles. A fresh stack (Envoy, control plane,
extension, pods) per example; `teardown` always stops it.

On a fleet (`StackSettings.proxies` > 1) a rule on an xDS connection or an Envoy draws the proxy
it acts on among those it applies to (release: a held one; hold and restart: a flowing one); a
compound rule holds one proxy. A fleet of one draws nothing, so its examples are as before.

With a second Gateway (`StackSettings.gateways` = 2) its proxy is one more to draw, routes may
name it among their parentRefs, and it is created and deleted whole (rules and changes of the
compound rules alike, always enabled); with one Gateway nothing of it is drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import note, reject
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from harness.lockstep import extensions
from harness.lockstep.configuration import configuration_key
from harness.lockstep.extensions import Extensions
from harness.lockstep.invariants import InvariantViolated, Violation
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
from harness.lockstep.progress import BudgetSpent, Failure, Progress, StopFlag
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.lockstep.strategies import CHANGE_KINDS, GATEWAY_CHANGE_KINDS, route_strategy, swarm
from harness.lockstep.verdict import Inconclusive
from harness.lockstep.worlds import (
    FAULTS,
    HOOKS,
    LISTENERS,
    LOAD_BALANCERS,
    MAX_ROUTES,
    ROUTE_NAMES,
    SECOND_GATEWAY,
    SERVICES,
    second_gateway,
)
from harness.loopback.spares import SpareEnvoys
from model import Link, Route

__all__ = [
    "BudgetSpent",
    "Failure",
    "Progress",
    "StopFlag",
    "configuration_key",
    "machine_for",
    "route_strategy",
]


def _any(link: Link) -> bool:
    return True


def _flowing(link: Link) -> bool:
    return not link.held


def _held(link: Link) -> bool:
    return link.held


class _Machine(RuleBasedStateMachine):
    stack_settings: ClassVar[StackSettings]
    progress: ClassVar[Progress]
    spares: ClassVar[SpareEnvoys | None] = None
    routes = Bundle("routes")

    def __init__(self) -> None:
        super().__init__()
        if self.progress.search_over:
            raise BudgetSpent(self.progress.elapsed)
        self.session = Session(self.stack_settings, self.spares)
        self.next_created = 10
        """Creation timestamps of new routes, after every route of the initial world."""
        self.enabled: frozenset[str] = frozenset(CHANGE_KINDS)
        """The change kinds compound rules may draw in this example (swarm testing)."""
        self.user_enabled: frozenset[str] = frozenset()
        """The user's operation kinds this example enabled (`_WithExtensions`)."""
        if self.progress.first_failure_at is None:
            self.progress.examples += 1
        else:
            self.progress.shrink_runs += 1
        self.session.start()

    @property
    def route_names(self) -> set[str]:
        """The routes in the store now (preconditions cannot read Bundles)."""
        return {route.name for route in self.session.world.routes}

    # --------------------------------------------------------------- helpers

    def _do(self, operation: Operation) -> None:
        ongoing = self.session.current_window() is not None
        number = len(self.session.steps) + 1
        note(f"     + {operation.describe()}" if ongoing else f"{number}. {operation.describe()}")
        try:
            self.session.apply(operation)
        except Inconclusive as why:
            note(f"discarded: {why}")
            self.progress.discarded += 1
            reject()
        except Exception as error:
            self._record((Violation("no-crash", f"{type(error).__name__}: {error}"),))
            raise
        self.progress.steps += 1
        self.progress.kinds[operation.kind] += 1
        if self.progress.report is not None:
            self.progress.report(self.progress)

    @property
    def _two_gateways(self) -> bool:
        return self.stack_settings.gateways == 2

    def _routes(self, name: str, created: int) -> st.SearchStrategy[Route]:
        return route_strategy(name, created, self.stack_settings.gateways)

    @property
    def _second_exists(self) -> bool:
        return self.session.world.other(SECOND_GATEWAY) is not None

    @property
    def _has_extension(self) -> bool:
        return self.session.model.extension is not None

    def _some(self, wanted: Callable[[Link], bool]) -> bool:
        return any(wanted(link) for link in self.session.model.all_links)

    def _target(self, data: st.DataObject, wanted: Callable[[Link], bool]) -> int | None:
        """The proxy a link operation acts on: None in a fleet of one (its only proxy, nothing
        drawn), else one drawn among those whose link `wanted` accepts."""
        links = self.session.model.all_links
        if len(links) == 1:
            return None
        return data.draw(
            st.sampled_from([index for index, link in enumerate(links) if wanted(link)]),
            label="proxy",
        )

    # ----------------------------------------------------------------- rules

    @initialize(target=routes)
    def initial_routes(self) -> object:
        """The initial world's routes enter the Bundle (no operation runs)."""
        return multiple(*sorted(self.route_names))

    @initialize(fail_open=st.booleans(), enabled=swarm())
    def extension_deployment(self, fail_open: bool, enabled: frozenset[str]) -> None:
        """Whether the extension fails open is a deployment setting (Envoy Gateway's
        `failOpen`), not something operators flip mid-flight: half the examples start with it on,
        instead of waiting for the toggle rule to come up. The toggle stays a rule. Also draws
        the change kinds this example's compound rules use (`strategies.swarm`)."""
        self.enabled = enabled
        if self._two_gateways:
            self.enabled |= frozenset(GATEWAY_CHANGE_KINDS)
        if fail_open and self._has_extension:
            self._do(SetFailOpen(True))

    @precondition(lambda self: len(self.route_names) < MAX_ROUTES)
    @rule(target=routes, data=st.data())
    def create_route(self, data: st.DataObject) -> str:
        operation = self._draw_change(data, "create-route")
        self._do(operation)
        assert isinstance(operation, CreateRoute)
        return operation.route.name

    @rule(name=routes, data=st.data())
    def update_route(self, name: str, data: st.DataObject) -> None:
        current = self.session.world.route(name)
        if current is None:
            return  # deleted since it entered the bundle
        self._do(UpdateRoute(data.draw(self._routes(name, current.created))))

    @rule(name=consumes(routes))
    def delete_route(self, name: str) -> None:
        if name not in self.route_names:
            return
        self._do(DeleteRoute(name))

    @precondition(lambda self: len(self.session.world.listeners) < len(LISTENERS))
    @rule(data=st.data())
    def add_listener(self, data: st.DataObject) -> None:
        self._do(self._draw_change(data, "add-listener"))

    @precondition(lambda self: len(self.session.world.listeners) > 1)  # a Gateway needs one
    @rule(data=st.data())
    def remove_listener(self, data: st.DataObject) -> None:
        self._do(self._draw_change(data, "remove-listener"))

    @rule(service=st.sampled_from(SERVICES), replicas=st.integers(0, 2))
    def scale(self, service: str, replicas: int) -> None:
        self._do(Scale(service, replicas))

    @rule(load_balancer=st.sampled_from((None, *LOAD_BALANCERS)))
    def set_backend_policy(self, load_balancer: str | None) -> None:
        self._do(SetBackendPolicy(load_balancer))

    @precondition(lambda self: self._has_extension)
    @rule(fault=st.sampled_from(FAULTS), hook=st.sampled_from(HOOKS))
    def extension_fails(self, fault: str, hook: str | None) -> None:
        self._do(ExtensionFault(fault, hook))

    @precondition(
        lambda self: self._has_extension and self.session.model.extension.failing is not None
    )
    @rule(new_generation=st.booleans())
    def extension_recovers(self, new_generation: bool) -> None:
        self._do(ExtensionRecover(new_generation))

    @precondition(lambda self: self._has_extension)
    @rule(enabled=st.booleans())
    def set_fail_open(self, enabled: bool) -> None:
        self._do(SetFailOpen(enabled))

    @rule()
    def resync(self) -> None:
        self._do(Resync())

    @rule(data=st.data())
    def cut_xds(self, data: st.DataObject) -> None:
        """Per-type: a flowing proxy may lose one type's streams only; ADS draws nothing more."""
        target, stream = self._target(data, _any), None
        if self.stack_settings.transport == "per-type" and _flowing(
            self.session.model.link(target or 0)
        ):
            stream = data.draw(st.sampled_from((None, *STREAM_KINDS)), label="stream")
        self._do(CutXds(target, stream))

    @precondition(lambda self: self._some(_flowing))
    @rule(data=st.data())
    def changes_while_held(self, data: st.DataObject) -> None:
        """A stalled xDS connection that heals after a few changes: the proxy then meets them all
        at once, in whatever state the server's streams reached meanwhile. The separate hold and
        release rules rarely close a hold after just a few changes."""
        proxy = self._held_changes(data)
        self._do(ReleaseXds(proxy))

    @precondition(lambda self: self._some(_flowing))
    @rule(data=st.data())
    def changes_then_connection_lost(self, data: st.DataObject) -> None:
        """A stalled xDS connection that breaks after a few changes (a keepalive gives up): what
        was held is lost, and Envoy reconnects naming versions older than the server's."""
        proxy = self._held_changes(data)
        self._do(CutXds(proxy))

    def _held_changes(self, data: st.DataObject) -> int | None:
        """Hold one proxy's connection, then one to three changes; returns the proxy. A change
        may be reverted at once (as in `change_and_undo`): what a response in flight carries is
        then already gone from the snapshot when the proxy reads it."""
        proxy = self._target(data, _flowing)
        self._do(HoldXds(proxy))
        for _ in range(data.draw(st.integers(1, 3), label="changes while held")):
            if data.draw(st.booleans(), label="undone at once"):
                self._change_and_undo(data)
            else:
                self._do(self._draw_change(data))
        return proxy

    @rule(data=st.data())
    def change_and_undo(self, data: st.DataObject) -> None:
        """A change reverted at once, before anyone looks (a flapping object, a rolled-back
        deploy): every resource returns to content the proxy may already hold, which is where
        caches that answer only what changed go wrong."""
        self._change_and_undo(data)

    def _change_and_undo(self, data: st.DataObject) -> None:
        # A recovery has no exact undo (it would need the faults it cleared), nor has a fault
        # on top of others (its undo, a recovery, would clear them too).
        kinds = [
            kind
            for kind in self._change_kinds()
            if kind not in ("extension-recover", "resync") and self._undoable(kind)
        ]
        extension = self.session.model.extension
        if extension is not None and extension.failing is not None:
            kinds.remove("extension-fault")
        change = self._draw_change(data, data.draw(self._sampled(kinds), label="change"))
        undo = change.undo(self.session.model)
        assert undo is not None, f"{change.kind} has no undo"
        self._do(change)
        self._do(undo)

    def _sampled(self, kinds: list[str]) -> st.SearchStrategy[str]:
        """Among `kinds`, those this example enabled (all of them if it enabled none)."""
        enabled = [kind for kind in kinds if kind in self.enabled | self.user_enabled]
        return st.sampled_from(enabled or kinds)

    def _change_kinds(self) -> list[str]:
        """The changes of the Gateway API world or of the extension possible right now."""
        world = self.session.world
        kinds = ["scale", "backend-policy", "resync"]
        if len(self.route_names) < MAX_ROUTES:
            kinds.append("create-route")
        if self.route_names:
            kinds += ["update-route", "delete-route"]
        if len(world.listeners) < len(LISTENERS):
            kinds.append("add-listener")
        if len(world.listeners) > 1:
            kinds.append("remove-listener")
        if self._two_gateways:
            kinds.append("delete-gateway" if self._second_exists else "create-gateway")
        extension = self.session.model.extension
        if extension is not None:
            kinds += ["extension-fault", "fail-open"]
            if extension.failing is not None:
                kinds.append("extension-recover")
        return kinds + self._user_kinds()

    def _user_kinds(self) -> list[str]:
        """The user's operation kinds that apply now (none without extensions)."""
        return []

    def _draw_user(self, data: st.DataObject, kind: str) -> Operation:
        raise AssertionError(f"no extensions, so no {kind!r}")

    def _undoable(self, kind: str) -> bool:
        """Whether a change of `kind` has an exact undo now (every built-in change drawn here
        has one)."""
        return True

    def _draw_change(self, data: st.DataObject, kind: str | None = None) -> Operation:
        """One change of `kind` (any possible kind when None), drawn from the catalogue."""
        if kind is None:
            kind = data.draw(self._sampled(self._change_kinds()), label="change")
        if kind in self._user_kinds():
            return self._draw_user(data, kind)
        world = self.session.world
        routes = sorted(self.route_names)
        present = sorted(item.name for item in world.listeners)
        if kind == "create-route":
            name = data.draw(st.sampled_from(sorted(set(ROUTE_NAMES) - self.route_names)))
            self.next_created += 1
            return CreateRoute(data.draw(self._routes(name, self.next_created)))
        if kind == "update-route":
            current = world.route(data.draw(st.sampled_from(routes)))
            assert current is not None
            return UpdateRoute(data.draw(self._routes(current.name, current.created)))
        if kind == "create-gateway":
            return CreateGateway(second_gateway())
        if kind == "delete-gateway":
            return DeleteGateway(SECOND_GATEWAY)
        if kind == "delete-route":
            return DeleteRoute(data.draw(st.sampled_from(routes)))
        if kind == "add-listener":
            name = data.draw(st.sampled_from(sorted(set(LISTENERS) - set(present))))
            return AddListener(LISTENERS[name])
        if kind == "remove-listener":
            return RemoveListener(data.draw(st.sampled_from(present)))
        if kind == "scale":
            return Scale(data.draw(st.sampled_from(SERVICES)), data.draw(st.integers(0, 2)))
        if kind == "backend-policy":
            return SetBackendPolicy(data.draw(st.sampled_from((None, *LOAD_BALANCERS))))
        if kind == "extension-fault":
            fault, hook = data.draw(st.sampled_from(FAULTS)), data.draw(st.sampled_from(HOOKS))
            return ExtensionFault(fault, hook)
        if kind == "fail-open":
            return SetFailOpen(data.draw(st.booleans()))
        if kind == "resync":
            return Resync()
        return ExtensionRecover(data.draw(st.booleans()))

    @precondition(lambda self: self._some(_flowing))
    @rule(data=st.data())
    def hold_xds(self, data: st.DataObject) -> None:
        self._do(HoldXds(self._target(data, _flowing)))

    @precondition(lambda self: self._some(_held))
    @rule(data=st.data())
    def release_xds(self, data: st.DataObject) -> None:
        self._do(ReleaseXds(self._target(data, _held)))

    @precondition(lambda self: self._some(_flowing))
    @rule(data=st.data())
    def restart_envoy(self, data: st.DataObject) -> None:
        """Only a proxy whose connection flows: one restarted behind a hold would get nothing."""
        self._do(RestartEnvoy(self._target(data, _flowing)))

    @precondition(lambda self: not self.session.held)
    @rule()
    def restart_control_plane(self) -> None:
        self._do(RestartControlPlane())

    @precondition(lambda self: not self.session.held)
    @rule()
    def rejected_update(self) -> None:
        self._do(RejectedUpdate())

    # ------------------------------------------------------------ invariants

    @invariant()
    def every_invariant_holds(self) -> None:
        try:
            self.session.check_or_raise()
        except InvariantViolated as violated:
            self._record(violated.violations)
            raise

    def _record(self, violations: tuple[Violation, ...]) -> None:
        self.progress.failed()
        try:
            final = current_build_context().is_final
        except Exception:
            final = True
        failure = Failure(
            steps=self.session.trace,
            violations=violations,
            exchanges=tuple(self.session.exchanges_of_step()),
        )
        self.progress.last = failure
        if self.progress.first is None:
            self.progress.first = failure
        if final:
            self.progress.final = failure

    def teardown(self) -> None:
        self.session.stop()


class _TwoGatewayMachine(_Machine):
    """The machine with the second Gateway's rules: a class of its own, so a machine of one
    Gateway keeps exactly the rules (and so the examples) it always had."""

    @precondition(lambda self: not self._second_exists)
    @rule()
    def create_gateway(self) -> None:
        self._do(CreateGateway(second_gateway()))

    @precondition(lambda self: self._second_exists)
    @rule()
    def delete_gateway(self) -> None:
        self._do(DeleteGateway(SECOND_GATEWAY))


class _WithExtensions(_Machine):
    """The machine with a user's operations (`extensions`): a rule drawing among the letters
    that apply, their kinds in the swarm (an example enables a random subset of them, as of the
    built-in change kinds), and in the compound rules; a change undone at once needs an undo."""

    @property
    def _extensions(self) -> Extensions:
        return extensions.load(self.stack_settings.extensions)

    @initialize(data=st.data())
    def user_swarm(self, data: st.DataObject) -> None:
        kinds = sorted(self._extensions.kinds)
        self.user_enabled = frozenset(data.draw(st.sets(st.sampled_from(kinds)), label="user"))

    def _user_kinds(self) -> list[str]:
        model = self.session.model
        return sorted({op.kind for op in self._extensions.applicable(model)})

    def _draw_user(self, data: st.DataObject, kind: str) -> Operation:
        choices = self._extensions.applicable(self.session.model, kind)
        return data.draw(st.sampled_from(choices), label=kind)

    def _undoable(self, kind: str) -> bool:
        model = self.session.model
        return all(op.undo(model) for op in self._extensions.applicable(model, kind))

    @precondition(lambda self: bool(self._user_kinds()))
    @rule(data=st.data())
    def user_operation(self, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(self._user_kinds()), label="user operation")
        self._do(self._draw_user(data, kind))


def machine_for(
    settings: StackSettings, progress: Progress, spares: SpareEnvoys | None = None
) -> type[RuleBasedStateMachine]:
    """A machine class bound to one SUT configuration and one progress record; with `spares`
    (which the caller closes), each example's Envoy is one parked while the last one ran.

    Its name spells the configuration: Hypothesis keys a state machine's examples in the
    database by the class (by its name, as a class made here has no source of its own), so
    failures saved for one mutant or mode are neither replayed nor deleted by another's runs."""
    namespace: dict[str, Any] = {"stack_settings": settings, "progress": progress, "spares": spares}
    name = f"RouteproofMachine[{configuration_key(settings)}]"
    bases: tuple[type[_Machine], ...] = (
        _TwoGatewayMachine if settings.gateways == 2 else _Machine,
    )
    if settings.extensions is not None:
        extensions.load(settings.extensions)  # ValueError now, not in the first example
        bases = (_WithExtensions, *bases)
    machine = type(name, bases, namespace)
    machine.__qualname__ = name
    return machine
