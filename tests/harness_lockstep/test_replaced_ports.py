"""A listener the control plane removed during a step was replaced, even if it ends the step on
the port number it had: its port is left out of the hitless judgement."""

from __future__ import annotations

from harness.lockstep.invariants import replaced_ports
from harness.lockstep.stack import ListenerOrigin
from sut.gatewayapi import ObjectKey
from tests.xds.builders import world

GATEWAY = ObjectKey("default", "gw")
ORIGINS = {
    "L-a": ListenerOrigin(GATEWAY, 8443, "HTTPS"),
    "L-b": ListenerOrigin(GATEWAY, 8443, "HTTPS"),
    "L-c": ListenerOrigin(GATEWAY, 8080, "HTTP"),
}


def test_a_listener_removed_and_added_back_within_the_step_counts_as_replaced():
    both = world({"a": ("c1",), "c": ("c1",)})
    renamed = world({"b": ("c1",), "c": ("c1",)})
    # L-a gives way to L-b, then comes back: the step starts and ends on the same names.
    assert replaced_ports([both, renamed, both], ORIGINS) == {(8443, "https")}


def test_listeners_updated_in_place_or_added_are_not_replaced():
    before = world({"a": ("c1",), "c": ("c1",)})
    updated = world({"a": ("c2",), "c": ("c1",)})
    grown = world({"a": ("c2",), "b": ("c1",), "c": ("c1",)})
    assert replaced_ports([before, updated, grown], ORIGINS) == frozenset()
    assert replaced_ports([before], ORIGINS) == frozenset()


def test_a_listener_changed_in_place_counts_as_updated_not_replaced():
    from harness.lockstep.invariants import updated_ports

    before = world({"a": ("c1",), "c": ("c1",)})
    changed = world({"a": ("c1",), "c": ("c1",)}, listeners={"L-a": "other", "L-c": "c"})
    assert replaced_ports([before, changed], ORIGINS) == frozenset()
    assert updated_ports([before, changed], ORIGINS) == {(8443, "https")}
    assert updated_ports([before, before], ORIGINS) == frozenset()


def test_a_failed_handshake_is_judged_unless_its_listener_changed_in_the_step():
    from harness.lockstep.invariants import Sample, window_violations
    from harness.loopback.probe import ProbeResult
    from model import Request, Served

    request = Request(8443, "https", "b.example.com", "/")
    failed = ProbeResult(status=None, error="EOF in handshake", error_kind="tls")
    samples = [Sample(request, 0.0, failed)]

    def allowed(_request):
        return frozenset({Served("svc-b", "svc-b-0", 1)})

    assert window_violations(samples, allowed, {})
    assert not window_violations(samples, allowed, {}, updated={(8443, "https")})
    assert window_violations(samples, allowed, {}, updated={(8080, "http")})
