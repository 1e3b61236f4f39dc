"""Each protocol rule of the monitor against hand-built exchanges: no Envoy, no bytes.

Every rule has a violating exchange that it must report and a compliant one that it must not;
the clock is a plain number the test moves.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from google.protobuf.message import Message

from harness.lockstep.monitor.messages import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    StreamKey,
    WireResource,
    XdsRequest,
    XdsResponse,
)
from harness.lockstep.monitor.monitor import ProtocolMonitor, Published
from harness.lockstep.verdict import Strength
from tests.xds.builders import cluster, listener, load_assignment, route_configuration

STREAM = StreamKey(1, 1)
BOUND = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def body(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


RC_A = body(route_configuration("rc", "cluster-a"))
RC_B = body(route_configuration("rc", "cluster-b"))
CLUSTER_A = body(cluster("cluster-a"))
CLUSTER_B = body(cluster("cluster-b"))
LISTENER_RC = body(listener("listener", "rc"))
CLA_A = body(load_assignment("cluster-a", 8080))


def item(type_url: str, name: str, content: bytes | None, version: str = "v1") -> WireResource:
    return WireResource(name=name, version=version, body=content, type_url=type_url)


def request(
    at: float,
    type_url: str,
    names: Iterable[str] = (),
    *,
    delta: bool = True,
    nonce: str = "",
    unsubscribe: Iterable[str] = (),
    initial: Iterable[tuple[str, str]] = (),
    error: str | None = None,
    version: str = "",
    stream: StreamKey = STREAM,
) -> XdsRequest:
    return XdsRequest(
        stream=stream,
        at=at,
        delta=delta,
        type_url=type_url,
        node_id="node",
        version_info=version,
        resource_names=tuple(names),
        unsubscribe=tuple(unsubscribe),
        initial_resource_versions=tuple(sorted(initial)),
        response_nonce=nonce,
        error_detail=error,
    )


def response(
    at: float,
    type_url: str,
    resources: Iterable[WireResource] = (),
    *,
    nonce: str,
    delta: bool = True,
    removed: Iterable[str] = (),
    version: str = "v1",
    stream: StreamKey = STREAM,
) -> XdsResponse:
    return XdsResponse(
        stream=stream,
        at=at,
        delta=delta,
        type_url=type_url,
        version_info=version,
        nonce=nonce,
        resources=tuple(resources),
        removed=tuple(removed),
    )


def monitor(clock: Clock, published: dict[tuple[str, str], bytes] | None = None) -> ProtocolMonitor:
    watcher = ProtocolMonitor(answer_bound=BOUND, clock=clock)
    watcher.control_plane_started(0.0)
    if published is not None:
        watcher.published(Published(1.0, 1, published))
    return watcher


def rules_broken(watcher: ProtocolMonitor, *, strict: bool = True) -> dict[str, Strength]:
    return {
        violation.invariant.removeprefix("protocol:"): violation.strength
        for violation in watcher.judge(strict=strict)
    }


EVERYTHING = {
    (ROUTE, "rc"): RC_A,
    (CLUSTER, "cluster-a"): CLUSTER_A,
    (LISTENER, "listener"): LISTENER_RC,
}


# ------------------------------------------------------------------ answered


def test_a_delta_subscription_never_answered_is_reported_once_the_bound_passes():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    clock.now = 100.0 + BOUND / 2
    assert rules_broken(watcher) == {}
    clock.now = 100.0 + BOUND * 2
    assert rules_broken(watcher) == {"answered": Strength.MUST}


def test_a_delta_subscription_answered_in_time_or_as_removed_is_fine():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc", "gone"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1", removed=["gone"]))
    clock.now = 200.0
    assert rules_broken(watcher) == {}


def test_a_late_answer_is_reported_and_the_clock_stops_while_held():
    clock = Clock()
    late = monitor(clock, EVERYTHING)
    late.observe(request(100.0, ROUTE, ["rc"]))
    late.observe(response(102.0, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1"))
    assert rules_broken(late) == {"answered": Strength.MUST}
    held = monitor(clock, EVERYTHING)
    held.hold_changed(True, 100.0)
    held.observe(request(100.0, ROUTE, ["rc"]))
    held.hold_changed(False, 101.9)
    held.observe(response(102.0, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1"))
    assert rules_broken(held) == {}


def test_nothing_published_for_the_node_exempts_every_subscription():
    clock = Clock()
    watcher = monitor(clock, published=None)
    watcher.observe(request(100.0, LISTENER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    clock.now = 200.0
    assert rules_broken(watcher) == {}


def test_the_clock_starts_at_the_first_publication_of_the_server_lifetime():
    clock = Clock()
    watcher = monitor(clock, published=None)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.published(Published(150.0, 1, EVERYTHING))
    clock.now = 150.0 + BOUND / 2
    assert rules_broken(watcher) == {}
    clock.now = 150.0 + 2 * BOUND
    assert rules_broken(watcher) == {"answered": Strength.MUST}


def test_sotw_route_names_absent_from_the_snapshot_are_exempt_but_listener_ones_are_not():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["absent"], delta=False))
    clock.now = 200.0
    assert rules_broken(watcher) == {}
    lds = monitor(clock, EVERYTHING)
    lds.observe(request(100.0, LISTENER, ["absent"], delta=False))
    assert rules_broken(lds) == {"answered": Strength.MUST}


def test_a_sotw_listener_response_answers_every_name_even_by_omitting_it():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, LISTENER, ["listener", "absent"], delta=False))
    watcher.observe(
        response(
            100.01, LISTENER, [item(LISTENER, "listener", LISTENER_RC)], nonce="1", delta=False
        )
    )
    clock.now = 200.0
    assert rules_broken(watcher) == {}


def test_a_sotw_name_added_at_an_unchanged_version_must_be_answered():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER, [], delta=False))
    watcher.observe(
        response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="1", delta=False)
    )
    watcher.observe(request(100.02, CLUSTER, [], nonce="1", version="v1", delta=False))
    watcher.observe(request(100.03, ROUTE, ["rc"], delta=False))
    clock.now = 200.0
    assert rules_broken(watcher) == {"answered": Strength.MUST}


def test_a_reported_current_version_needs_no_answer_but_a_stale_one_does():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    old = StreamKey(1, 1)
    watcher.observe(request(100.0, ROUTE, ["rc"], stream=old))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A, "va")], nonce="1", stream=old))
    new = StreamKey(2, 1)
    watcher.observe(request(101.0, ROUTE, ["rc"], initial=[("rc", "va")], stream=new))
    clock.now = 200.0
    assert rules_broken(watcher) == {}
    watcher.published(Published(150.0, 1, {**EVERYTHING, (ROUTE, "rc"): RC_B}))
    stale = StreamKey(3, 1)
    watcher.observe(request(160.0, ROUTE, ["rc"], initial=[("rc", "va")], stream=stale))
    assert rules_broken(watcher) == {"answered": Strength.MUST}


# ---------------------------------------------------------------- identity


def test_one_name_and_version_with_two_contents_breaks_identity():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A, "7")], nonce="1"))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A, "7")], nonce="2"))
    assert rules_broken(watcher) == {}
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "7")], nonce="3"))
    assert rules_broken(watcher) == {"resource-identity": Strength.MUST}


def test_a_version_reused_after_a_control_plane_restart_is_a_should():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A, "1")], nonce="1"))
    watcher.control_plane_started(110.0)
    watcher.published(Published(110.5, 2, EVERYTHING))
    later = StreamKey(2, 1)
    watcher.recorder.connection_opened(2, 111.0)
    watcher.sync()
    watcher.observe(request(111.0, ROUTE, ["rc"], stream=later))
    watcher.observe(
        response(111.01, ROUTE, [item(ROUTE, "rc", RC_B, "1")], nonce="1", stream=later)
    )
    assert rules_broken(watcher) == {"resource-identity-across-restarts": Strength.SHOULD}
    watcher.observe(
        response(111.02, ROUTE, [item(ROUTE, "rc", RC_A, "1")], nonce="2", stream=later)
    )
    assert rules_broken(watcher) == {"resource-identity": Strength.MUST}


def test_a_should_finding_is_dropped_unless_strict():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1", removed=["x"]))
    assert rules_broken(watcher, strict=False) == {}


def test_a_sotw_version_is_the_responses_and_subsets_at_one_version_are_fine():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc", "other"], delta=False))
    watcher.observe(
        response(
            100.01, ROUTE, [item(ROUTE, "rc", RC_A, "v9")], nonce="1", delta=False, version="v9"
        )
    )
    watcher.observe(
        response(
            100.02, ROUTE, [item(ROUTE, "other", RC_B, "v9")], nonce="2", delta=False, version="v9"
        )
    )
    assert rules_broken(watcher) == {}


# ----------------------------------------------------------- nothing unasked


def test_an_unasked_name_is_a_should_and_only_under_strict():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"], delta=False))
    watcher.observe(
        response(
            100.01,
            ROUTE,
            [item(ROUTE, "rc", RC_A), item(ROUTE, "stranger", RC_B)],
            nonce="1",
            delta=False,
        )
    )
    assert rules_broken(watcher, strict=False) == {}
    watcher.observe(
        response(100.02, ROUTE, [item(ROUTE, "stranger", RC_B, "v2")], nonce="2", delta=False)
    )
    assert rules_broken(watcher) == {"nothing-unasked": Strength.SHOULD}


def test_a_response_crossing_an_unsubscribe_may_still_carry_the_name():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(request(100.01, ROUTE, unsubscribe=["rc"]))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1"))
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "v2")], nonce="2"))
    assert rules_broken(watcher) == {"nothing-unasked": Strength.SHOULD}


def test_wildcard_subscriptions_accept_anything():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="1"))
    assert rules_broken(watcher) == {}


# ------------------------------------------------------------------- nonces


def test_a_nonce_used_twice_on_a_stream_breaks_the_nonce_rule_but_not_across_streams():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, CLUSTER, stream=StreamKey(1, 3)))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="n"))
    watcher.observe(
        response(
            100.01,
            CLUSTER,
            [item(CLUSTER, "cluster-a", CLUSTER_A)],
            nonce="n",
            stream=StreamKey(1, 3),
        )
    )
    assert rules_broken(watcher) == {}
    watcher.observe(request(100.02, ROUTE, ["rc"]))
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="n"))
    assert rules_broken(watcher) == {"nonce": Strength.MUST}


def test_a_response_without_a_nonce_breaks_the_nonce_rule():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce=""))
    assert rules_broken(watcher) == {"nonce": Strength.MUST}


# --------------------------------------------------------------- NACK rules


def nacked(watcher: ProtocolMonitor, *, rejected: bool = True) -> None:
    if rejected:
        watcher.rejected(RC_B)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_B, "bad")], nonce="1"))
    watcher.observe(request(100.02, ROUTE, nonce="1", error="invalid regex"))


def test_the_identical_response_after_a_nack_breaks_nack_resend():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    nacked(watcher)
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "bad")], nonce="2"))
    assert rules_broken(watcher) == {"nack-resend": Strength.MUST}


def test_after_a_nack_a_new_publication_or_subscription_allows_the_same_response():
    clock = Clock()
    republished = monitor(clock, EVERYTHING)
    nacked(republished)
    republished.published(Published(100.025, 1, EVERYTHING))
    republished.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "bad")], nonce="2"))
    assert rules_broken(republished) == {}
    resubscribed = monitor(clock, EVERYTHING)
    nacked(resubscribed)
    resubscribed.observe(request(100.025, ROUTE, unsubscribe=["rc"]))
    resubscribed.observe(request(100.026, ROUTE, ["rc"]))
    resubscribed.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "bad")], nonce="2"))
    assert rules_broken(resubscribed) == {}


def test_a_nack_of_content_the_harness_did_not_spoil_breaks_the_nack_rule():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    nacked(watcher, rejected=False)
    assert rules_broken(watcher) == {"nack": Strength.MUST}


def test_a_nack_puts_back_what_the_client_held():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.rejected(RC_B)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="c1"))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A, "good")], nonce="r1"))
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "bad")], nonce="r2"))
    watcher.observe(request(100.04, ROUTE, nonce="r2", error="rejected"))
    # The client still holds RC_A, which names cluster-a: removing it now breaks before making.
    watcher.observe(response(100.05, CLUSTER, [], nonce="c2", removed=["cluster-a"]))
    assert "make-before-break" in rules_broken(watcher)


# ------------------------------------------------------------ make-before-break


def test_a_route_naming_a_cluster_the_client_lacks_breaks_make():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1"))
    assert rules_broken(watcher) == {"make-before-break": Strength.SHOULD}


def test_clusters_first_then_routes_is_make_before_break():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="1"))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="2"))
    assert rules_broken(watcher) == {}


def test_a_cluster_reported_in_initial_resource_versions_counts_as_held():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER, initial=[("cluster-a", "v1")]))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="2"))
    assert rules_broken(watcher) == {}


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
def test_removing_a_cluster_a_held_route_still_names_breaks_before_making(delta):
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER, delta=delta))
    watcher.observe(request(100.0, ROUTE, ["rc"], delta=delta))
    a, b = item(CLUSTER, "cluster-a", CLUSTER_A), item(CLUSTER, "cluster-b", CLUSTER_B)
    watcher.observe(response(100.01, CLUSTER, [a, b], nonce="1", delta=delta))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="2", delta=delta))
    removal = (
        response(100.03, CLUSTER, [], nonce="3", removed=["cluster-a"])
        if delta
        else response(100.03, CLUSTER, [b], nonce="3", delta=False, version="v2")
    )
    watcher.observe(removal)
    assert rules_broken(watcher) == {"make-before-break": Strength.SHOULD}


def test_removing_a_cluster_after_the_route_moved_away_is_fine():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    a, b = item(CLUSTER, "cluster-a", CLUSTER_A), item(CLUSTER, "cluster-b", CLUSTER_B)
    watcher.observe(response(100.01, CLUSTER, [a, b], nonce="1"))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="2"))
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_B, "v2")], nonce="3"))
    watcher.observe(response(100.04, CLUSTER, [], nonce="4", removed=["cluster-a"]))
    assert rules_broken(watcher) == {}


def test_removing_a_route_configuration_a_held_listener_names_breaks_before_making():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, LISTENER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(
        response(100.01, LISTENER, [item(LISTENER, "listener", LISTENER_RC)], nonce="1")
    )
    watcher.observe(response(100.02, ROUTE, [], nonce="2", removed=["rc"]))
    assert rules_broken(watcher) == {"make-before-break": Strength.SHOULD}


def test_removing_endpoints_a_held_cluster_names_breaks_before_making():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ENDPOINT, ["cluster-a"]))
    watcher.observe(response(100.01, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A)], nonce="1"))
    watcher.observe(response(100.02, ENDPOINT, [item(ENDPOINT, "cluster-a", CLA_A)], nonce="2"))
    watcher.observe(response(100.03, ENDPOINT, [], nonce="3", removed=["cluster-a"]))
    assert rules_broken(watcher) == {"make-before-break": Strength.SHOULD}


# ------------------------------------------------------------------ removals


def test_removing_a_name_the_client_never_held_nor_asked_for_is_a_should():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1", removed=["x"]))
    assert rules_broken(watcher) == {"removals": Strength.SHOULD}


def test_removing_what_the_client_asked_for_or_reported_is_fine():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, ROUTE, ["rc", "asked"], initial=[("reported", "v0")]))
    watcher.observe(
        response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1", removed=["asked", "reported"])
    )
    assert rules_broken(watcher) == {}


# ------------------------------------------------------------------- reports


def test_a_violation_prints_the_decoded_exchange_around_it():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(response(100.01, CLUSTER, [], nonce=""))
    (violation,) = watcher.judge(strict=True)
    text = violation.describe()
    assert "decoded exchange around it" in text
    assert ">> #2 stream 1/1 server -> envoy CDS" in text


def test_a_route_configuration_no_held_listener_uses_does_not_hold_its_clusters():
    """SotW: Envoy drops the RouteConfiguration of a removed Listener at once but says so in
    its next RDS request; removing the Cluster it named meanwhile breaks nothing."""
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    for type_url in (LISTENER, CLUSTER):
        watcher.observe(request(100.0, type_url, delta=False))
    watcher.observe(request(100.0, ROUTE, ["rc"], delta=False))
    a = item(CLUSTER, "cluster-a", CLUSTER_A)
    watcher.observe(response(100.01, CLUSTER, [a], nonce="1", delta=False))
    listener_item = item(LISTENER, "listener", LISTENER_RC)
    watcher.observe(response(100.02, LISTENER, [listener_item], nonce="2", delta=False))
    watcher.observe(response(100.03, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="3", delta=False))
    watcher.observe(response(100.04, LISTENER, [], nonce="4", delta=False, version="v2"))
    watcher.observe(response(100.05, CLUSTER, [], nonce="5", delta=False, version="v2"))
    assert rules_broken(watcher) == {}


def test_a_reported_version_current_when_subscribed_stays_exempt_after_later_changes():
    """A reconnecting client that holds the current content owes the server nothing to answer;
    a change published later is an update (convergence judges it), not an unanswered
    subscription."""
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    old, new = StreamKey(1, 1), StreamKey(2, 1)
    watcher.observe(request(100.0, ROUTE, ["rc"], stream=old))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A, "va")], nonce="1", stream=old))
    watcher.observe(request(101.0, ROUTE, ["rc"], initial=[("rc", "va")], stream=new))
    watcher.published(Published(105.0, 1, {**EVERYTHING, (ROUTE, "rc"): RC_B}))
    watcher.observe(response(106.0, ROUTE, [item(ROUTE, "rc", RC_B, "vb")], nonce="2", stream=new))
    clock.now = 200.0
    assert rules_broken(watcher) == {}
