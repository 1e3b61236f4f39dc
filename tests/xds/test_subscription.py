"""The per-type transition table and the make-before-break rows, as plain values."""

from __future__ import annotations

import itertools

import pytest

from sut.errors import LocalProtocolError, RemoteProtocolError
from sut.xds import ADS_ORDER, DeltaStream, ResourceType
from sut.xds.ordering import REMOVALS, UPDATES
from sut.xds.subscription import (
    CLIENT_VIOLATIONS,
    TRANSITIONS,
    Ack,
    Initial,
    Nack,
    Phase,
    Sent,
    SentResponse,
    Stale,
    Subscription,
    SubscriptionChange,
    classify,
)
from tests.xds.builders import delta_request, world

RDS = ResourceType.ROUTE
EVENTS = {
    Initial: Initial(""),
    SubscriptionChange: SubscriptionChange(""),
    Ack: Ack("1-1"),
    Nack: Nack("1-1", "rejected"),
    Stale: Stale("9-9"),
    Sent: Sent(SentResponse("1-1", "v1", "s1", ("r1",))),
}


def in_phase(phase: Phase) -> Subscription:
    subscription = Subscription(RDS)
    if phase is Phase.CLOSED:
        return subscription
    subscription = subscription.apply(Initial(""))
    return subscription.apply(EVENTS[Sent]) if phase is Phase.IN_FLIGHT else subscription


@pytest.mark.parametrize(("phase", "event_type"), list(itertools.product(Phase, EVENTS)))
def test_every_pair_is_a_transition_or_names_whose_fault_it_is(phase, event_type):
    subscription, event = in_phase(phase), EVENTS[event_type]
    key = (phase, event_type)
    if key in TRANSITIONS:
        assert subscription.apply(event).phase is TRANSITIONS[key]
        return
    error = RemoteProtocolError if key in CLIENT_VIOLATIONS else LocalProtocolError
    with pytest.raises(error) as raised:
        subscription.apply(event)
    message = str(raised.value)
    assert "RDS" in message and repr(event.nonce) in message and phase.value in message


def test_ack_and_nack_settle_the_response_in_flight():
    in_flight = in_phase(Phase.IN_FLIGHT)
    acked = in_flight.apply(Ack("1-1"))
    assert acked.acked == EVENTS[Sent].response and acked.in_flight is None
    nacked = in_flight.apply(Nack("1-1", "rejected"))
    assert nacked.acked is None
    assert [(n.nonce, n.message) for n in nacked.nacks] == [("1-1", "rejected")]
    assert nacked.known == in_flight.known  # rule 4: the rejected content stays known


def test_a_second_response_in_flight_is_our_bug():
    with pytest.raises(LocalProtocolError, match="Sent is not allowed"):
        in_phase(Phase.IN_FLIGHT).apply(EVENTS[Sent])


def test_a_subscription_is_a_value_that_checks_its_phase():
    assert in_phase(Phase.IDLE) == in_phase(Phase.IDLE)
    with pytest.raises(LocalProtocolError, match="in flight"):
        Subscription(RDS, phase=Phase.IN_FLIGHT)


def test_classify_reads_the_nonce_once():
    closed, in_flight = in_phase(Phase.CLOSED), in_phase(Phase.IN_FLIGHT)
    acked = in_flight.apply(Ack("1-1"))
    assert classify(closed, "", None) == Initial("")
    assert classify(closed, "old", None) == Stale("old")
    assert classify(in_flight, "", None) == SubscriptionChange("")
    assert classify(in_flight, "1-1", None) == Ack("1-1")
    assert classify(in_flight, "1-1", "bad") == Nack("1-1", "bad")
    assert classify(acked, "1-1", None) == SubscriptionChange("1-1")
    assert classify(acked, "0-7", None) == Stale("0-7")
    assert classify(acked, "1-1", None, claims_initial=True) == Initial("1-1")


def test_a_delta_client_claiming_a_first_request_twice_is_refused_by_the_table():
    stream = DeltaStream()
    stream.on_snapshot(world({"r1": ("c1",)}))
    stream.receive(delta_request(RDS, ["r1"]))
    with pytest.raises(RemoteProtocolError, match=r"RDS: initial_resource_versions .* in flight"):
        stream.receive(delta_request(RDS, ["r1"], initial={"r1": "x"}))


def test_every_type_has_one_row_for_updates_and_one_for_removals():
    assert set(UPDATES) == set(REMOVALS) == set(ResourceType)
    # Make-before-break: an update waits only for types before it in ADS order.
    for kind, waits in UPDATES.items():
        waited = {*waits.acked, *waits.sent, *waits.settled, *waits.told, *waits.referrers_sent}
        assert all(ADS_ORDER.index(other) < ADS_ORDER.index(kind) for other in waited), kind
