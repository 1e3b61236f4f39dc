"""Why `stale-nonce-drops-subscription` cannot be killed here: against real Envoy it is an
equivalent mutant of this SUT, in both modes.

The server keeps at most one response in flight per type (rule 1 of `sut/xds/stream.py`), which
the xDS spec allows together with ignoring stale requests. Then:
- Delta: Envoy sends a nonce only to ACK or NACK the response it just processed, which is the one
  in flight; a change of subscriptions on its own carries no nonce. No request is ever stale.
- SotW: Envoy does send a change of names with a stale nonce while a response is in flight, but
  its ACK of that response repeats the full set of names, so the change arrives anyway.

The test makes that situation happen on purpose (a new listener and a changed route while the
connection is held) and checks both halves against real Envoy, with the mutant switched on. If
either half ever fails, the mutant has become reachable and belongs in the kill table.
"""

from __future__ import annotations

import pytest

from harness.commands.kill_table import mutant_settings
from harness.lockstep.operations import AddListener, HoldXds, ReleaseXds, UpdateRoute
from harness.lockstep.session import Session
from harness.lockstep.worlds import LISTENERS
from model import Backend, Match, Route, Rule
from sut.mutants import Mutants

pytestmark = [pytest.mark.envoy]


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_stale_nonce_drops_subscription_changes_nothing_envoy_can_see(mode):
    session = Session(mutant_settings(mode, Mutants.of(["stale-nonce-drops-subscription"])))
    route_0_elsewhere = Route(
        "route-0", 0, (Rule((Match("PathPrefix", "/app"),), (Backend("svc-a"),)),)
    )
    try:
        session.start()
        for operation in (
            HoldXds(),
            AddListener(LISTENERS["http-wild"]),  # a new RouteConfiguration name to subscribe
            UpdateRoute(route_0_elsewhere),  # an RDS response in flight when Envoy asks for it
            ReleaseXds(),
        ):
            session.apply(operation)
            session.check_or_raise()
        stale = [e for e in session.stack.exchanges() if e.note == "stale"]
        if mode == "delta":
            assert stale == [], "Envoy sent a stale nonce: the mutant is reachable in Delta"
        else:
            assert any(e.type_short == "RDS" and "default/gw/http-wild" in e.names for e in stale)
    finally:
        session.stop()
