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
