"""Several Envoy replicas of one Gateway: per-proxy operations, the explore alphabet and abstract
state of a fleet (pure), and a held replica against real Envoy."""

from __future__ import annotations

import pytest

from harness.commands.explore import initial_model
from harness.lockstep.abstraction import History, abstract
from harness.lockstep.alphabet import COARSE, FULL, alphabet
from harness.lockstep.exploration import plan
from harness.lockstep.invariants import Addresses, observed_outcome
from harness.lockstep.invariants.routing import send
from harness.lockstep.operations import (
    CutXds,
    DeleteRoute,
    HoldXds,
    ReleaseXds,
    RestartEnvoy,
    Resync,
)
from harness.lockstep.replay_files import decode_operations, encode_operations
from harness.lockstep.session import Session
from harness.lockstep.stack import Stack, StackSettings
from harness.lockstep.worlds import probe_requests
from harness.loopback import processes
from model import ModelState, Served, Status

FLEET = initial_model(StackSettings(proxies=2))


def test_a_link_operation_names_its_proxy_only_in_a_fleet():
    assert HoldXds().describe() == (
        "hold the xDS connection (nothing passes either way until released)"
    )
    assert HoldXds(1).describe().startswith("hold the xDS connection of proxy 1 (")
    assert RestartEnvoy(0).describe().startswith("restart Envoy of proxy 0 (")
    assert (HoldXds().target, HoldXds(1).target, Resync().target) == (0, 1, None)
    assert '"proxy"' not in encode_operations([CutXds(), ReleaseXds()])
    operations = [CutXds(1), HoldXds(0), ReleaseXds(0), RestartEnvoy(1), CutXds()]
    assert decode_operations(encode_operations(operations)) == operations
    with pytest.raises(ValueError):
        HoldXds(-1)


def test_a_restart_disrupts_only_its_proxy():
    assert RestartEnvoy(1).disrupts(3) == {1}
    assert RestartEnvoy().disrupts(1) == {0}
    assert HoldXds(1).disrupts(3) == frozenset()


def test_link_letters_exist_per_proxy_and_apply_per_link():
    letters = {letter.label: letter for letter in alphabet("coarse", 2)}
    assert alphabet("coarse") is COARSE and alphabet("full", 1) is FULL
    assert len(letters) == len(COARSE) + 4  # cut, hold, release, restart: once more
    assert "cut xDS" not in letters and "cut xDS of proxy 1" in letters
    held = letters["hold xDS of proxy 1"].operation(FLEET)
    assert held == HoldXds(1)
    model = held.on_model(FLEET)
    assert letters["release xDS of proxy 1"].operation(model) == ReleaseXds(1)
    assert letters["release xDS of proxy 0"].operation(model) is None
    assert letters["restart Envoy of proxy 0"].operation(model) == RestartEnvoy(0)
    assert letters["restart Envoy of proxy 1"].operation(model) is None
    assert letters["restart control plane"].operation(model) is None


def test_replicas_are_interchangeable_in_the_abstract_state():
    hold_0, hold_1 = HoldXds(0).on_model(FLEET), HoldXds(1).on_model(FLEET)
    assert abstract(hold_0, History()) == abstract(hold_1, History())
    cut_0, cut_1 = History().after("cut-xds", 0), History().after("cut-xds", 1)
    assert abstract(hold_0, cut_0) == abstract(hold_1, cut_1)
    assert abstract(hold_0, cut_1) != abstract(hold_0, cut_0)  # cut the held one, or the other


def test_a_fleet_explores_more_than_one_proxy_and_fewer_than_every_order():
    one = plan(initial_model(StackSettings()), COARSE, 2)
    two = plan(FLEET, alphabet("coarse", 2), 2)
    assert one.states < two.states
    assert two.transitions < len(alphabet("coarse", 2)) ** 2


# ---------------------------------------------- through the real stack


def _outcome(session: Session, proxy: int, request: object) -> object:
    ports = session.stack.listener_ports(proxy=proxy)
    return observed_outcome(send(Addresses.of(ports, session.stack.origins), request))  # type: ignore[arg-type]


@pytest.mark.envoy
def test_a_held_replica_keeps_serving_a_deleted_route_the_other_no_longer_serves():
    before = set(processes.live_children())
    session = Session(StackSettings(proxies=2))
    try:
        session.start()
        assert session.check() == []
        xds = session.stack.xds
        assert xds is not None
        statuses = xds.stream_statuses(session.settings.node_id)
        assert sorted(s.node_metadata.get("instance") for s in statuses) == ["proxy-0", "proxy-1"]
        route = session.world.routes[0]
        session.apply(HoldXds(1))
        session.apply(DeleteRoute(route.name))
        assert session.check() == []  # proxy 0 converged alone, proxy 1 still held
        model = session.model
        changed = [
            request
            for request in probe_requests(session.world)
            if model.expect(request, proxy=0) == {Status(404)}
            and any(isinstance(outcome, Served) for outcome in model.expect(request, proxy=1))
        ]
        assert changed, "deleting the route changed no answer"
        request = changed[0]
        assert _outcome(session, 0, request) == Status(404)
        assert isinstance(_outcome(session, 1, request), Served)
        session.apply(ReleaseXds(1))
        assert session.check() == []
        assert _outcome(session, 1, request) == Status(404)
    finally:
        session.stop()
    assert set(processes.live_children()) == before


class _HoldTheOtherProxy(HoldXds):
    """A harness misstep, for this test only: the model holds one proxy, the stack the other."""

    def on_stack(self, stack: Stack, before: ModelState, after: ModelState) -> None:
        stack.hold_xds(1 - self.target)


@pytest.mark.envoy
def test_a_violation_names_the_replica_that_broke():
    session = Session(StackSettings(proxies=2))
    try:
        session.start()
        session.apply(_HoldTheOtherProxy(1))
        session.apply(DeleteRoute(session.world.routes[0].name))
        violations = session.check()
    finally:
        session.stop()
    named = {(v.invariant, v.summary.split(":")[0]) for v in violations}
    assert {("convergence", "proxy 0"), ("routing", "proxy 0"), ("routing", "proxy 1")} <= named
