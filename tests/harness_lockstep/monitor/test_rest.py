"""`ProtocolMonitor.at_rest`: convergence read from the wire alone, against hand-built exchanges.

Contents are compared, never versions (an external server owns its versions); a response not
ACKed yet, content missing, stale or extra keeps the stream from rest; a NACK puts back what
the client held; a Delta client's reported version counts as held when its content was seen.
"""

from __future__ import annotations

from harness.lockstep.monitor.messages import CLUSTER, ROUTE, StreamKey
from harness.lockstep.monitor.rest import by_type
from tests.harness_lockstep.monitor.test_rules import (
    CLUSTER_A,
    CLUSTER_B,
    RC_A,
    RC_B,
    STREAM,
    Clock,
    item,
    monitor,
    request,
    response,
)

PUBLISHED = by_type({(CLUSTER, "cluster-a"): CLUSTER_A, (ROUTE, "rc"): RC_A})


def test_no_stream_is_not_at_rest():
    assert monitor(Clock()).at_rest(PUBLISHED) == ["no xDS stream is open"]


def test_a_stream_is_at_rest_once_it_acked_the_published_contents_whatever_their_versions():
    watcher = monitor(Clock())
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(
        response(100.1, CLUSTER, [item(CLUSTER, "cluster-a", CLUSTER_A, "7")], nonce="1")
    )
    watcher.observe(response(100.1, ROUTE, [item(ROUTE, "rc", RC_A, "server-own")], nonce="2"))
    [problem] = watcher.at_rest(PUBLISHED)
    assert "not ACKed or NACKed yet" in problem
    watcher.observe(request(100.2, CLUSTER, nonce="1"))
    watcher.observe(request(100.2, ROUTE, nonce="2"))
    assert watcher.at_rest(PUBLISHED) == []


def test_stale_missing_and_extra_contents_are_named():
    watcher = monitor(Clock())
    watcher.observe(request(100.0, CLUSTER))
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.1, CLUSTER, [item(CLUSTER, "cluster-b", CLUSTER_B)], nonce="1"))
    watcher.observe(response(100.1, ROUTE, [item(ROUTE, "rc", RC_B)], nonce="2"))
    watcher.observe(request(100.2, CLUSTER, nonce="1"))
    watcher.observe(request(100.2, ROUTE, nonce="2"))
    problems = "\n".join(watcher.at_rest(PUBLISHED))
    assert "CDS: not delivered: 'cluster-a'" in problems
    assert "CDS: still held though not published: 'cluster-b'" in problems
    assert "RDS: held content differs from the published: 'rc'" in problems


def test_a_nack_puts_back_what_was_held():
    watcher = monitor(Clock())
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.1, ROUTE, [item(ROUTE, "rc", RC_A, "1")], nonce="1"))
    watcher.observe(request(100.2, ROUTE, nonce="1"))
    watcher.observe(response(100.3, ROUTE, [item(ROUTE, "rc", RC_B, "2")], nonce="2"))
    watcher.observe(request(100.4, ROUTE, nonce="2", error="bad"))
    assert watcher.at_rest(by_type({(ROUTE, "rc"): RC_A})) == []


def test_a_reported_version_counts_as_held_when_its_content_was_delivered_before():
    watcher = monitor(Clock())
    watcher.observe(request(100.0, ROUTE, ["rc"]))
    watcher.observe(response(100.1, ROUTE, [item(ROUTE, "rc", RC_A, "v9")], nonce="1"))
    watcher.observe(request(100.2, ROUTE, nonce="1"))
    watcher.connection_closed(STREAM.connection, 100.3)
    again = StreamKey(2, 1)
    watcher.observe(request(100.4, ROUTE, ["rc"], initial=[("rc", "v9")], stream=again))
    assert watcher.at_rest(by_type({(ROUTE, "rc"): RC_A})) == []
    assert watcher.at_rest(by_type({(ROUTE, "rc"): RC_B})) != []
