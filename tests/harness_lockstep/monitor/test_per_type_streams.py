"""The monitor over per-type streams, hand-built: each stream serves one type, so rules that
relate two types (make-before-break) have nothing to judge across streams, and `answered`
follows a subscription to whichever stream carries it."""

from __future__ import annotations

import pytest

from harness.lockstep.monitor.messages import CLUSTER, ENDPOINT, LISTENER, ROUTE, StreamKey
from harness.lockstep.verdict import Strength
from tests.harness_lockstep.monitor.test_rules import (
    BOUND,
    CLA_A,
    CLUSTER_A,
    CLUSTER_B,
    EVERYTHING,
    LISTENER_RC,
    RC_A,
    Clock,
    item,
    monitor,
    request,
    response,
    rules_broken,
)

# One proxy's per-type connections: the relay mux numbers relay i's connection n as n * 5 + i.
LDS, CDS, RDS, EDS = StreamKey(5, 1), StreamKey(6, 1), StreamKey(7, 1), StreamKey(8, 1)


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
def test_a_route_configuration_ahead_of_its_cluster_on_another_stream_breaks_nothing(delta):
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER, delta=delta, stream=CDS))
    watcher.observe(request(100.0, ROUTE, ["rc"], delta=delta, stream=RDS))
    route = response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1", delta=delta, stream=RDS)
    watcher.observe(route)
    assert rules_broken(watcher, strict=True) == {}


def test_the_same_order_on_one_aggregated_stream_is_still_judged():
    """The per-stream judgement is what keeps ADS strict: one stream, both types."""
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.01, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="1"))
    assert rules_broken(watcher) == {"make-before-break": Strength.SHOULD}


def test_removing_a_cluster_a_route_on_another_stream_names_breaks_nothing():
    clock = Clock()
    watcher = monitor(clock, EVERYTHING)
    watcher.observe(request(100.0, CLUSTER, stream=CDS))
    watcher.observe(request(100.0, ROUTE, ["rc"], stream=RDS))
    a, b = item(CLUSTER, "cluster-a", CLUSTER_A), item(CLUSTER, "cluster-b", CLUSTER_B)
    watcher.observe(response(100.01, CLUSTER, [a, b], nonce="1", stream=CDS))
    watcher.observe(response(100.02, ROUTE, [item(ROUTE, "rc", RC_A)], nonce="2", stream=RDS))
    watcher.observe(response(100.03, CLUSTER, [], nonce="3", removed=["cluster-a"], stream=CDS))
    listener = item(LISTENER, "listener", LISTENER_RC)
    watcher.observe(request(100.0, LISTENER, stream=LDS))
    watcher.observe(response(100.04, LISTENER, [listener], nonce="4", stream=LDS))
    watcher.observe(response(100.05, ROUTE, [], nonce="5", removed=["rc"], stream=RDS))
    assert rules_broken(watcher, strict=True) == {}


def test_a_stream_the_client_closes_before_the_bound_owes_nothing_and_its_successor_is_judged():
    """Per type, Envoy opens an EDS stream per Cluster and a new one when the Cluster changes:
    the subscription moves to the new stream, and so does the obligation to answer it."""
    clock = Clock()
    published = {**EVERYTHING, (ENDPOINT, "cluster-a"): CLA_A}
    watcher = monitor(clock, published)
    watcher.observe(request(100.0, ENDPOINT, ["cluster-a"], stream=EDS))
    watcher.connection_closed(EDS.connection, 100.0 + BOUND / 2)
    successor = StreamKey(13, 1)  # the EDS relay's next connection
    watcher.observe(request(100.0 + BOUND / 2, ENDPOINT, ["cluster-a"], stream=successor))
    clock.now = 100.0 + BOUND
    assert rules_broken(watcher) == {}
    clock.now = 100.0 + BOUND * 3
    assert rules_broken(watcher) == {"answered": Strength.MUST}


def test_a_successor_stream_that_answers_in_time_is_fine():
    clock = Clock()
    published = {**EVERYTHING, (ENDPOINT, "cluster-a"): CLA_A}
    watcher = monitor(clock, published)
    watcher.observe(request(100.0, ENDPOINT, ["cluster-a"], stream=EDS))
    watcher.connection_closed(EDS.connection, 100.1)
    successor = StreamKey(13, 1)
    watcher.observe(request(100.1, ENDPOINT, ["cluster-a"], stream=successor))
    cla = item(ENDPOINT, "cluster-a", CLA_A)
    watcher.observe(response(100.2, ENDPOINT, [cla], nonce="1", stream=successor))
    clock.now = 100.0 + BOUND * 3
    assert rules_broken(watcher) == {}
