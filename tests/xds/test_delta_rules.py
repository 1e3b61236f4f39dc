"""One test per Delta protocol rule the server must keep (ENVOY_FACTS.md), on the sans-IO core."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from sut.errors import RemoteProtocolError
from sut.mutants import Mutants
from sut.xds import DeltaStream, ResourceType, ServedSets
from tests.xds.builders import delta_request, names_of, type_of, world

LDS, RDS, CDS, EDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
)


def ack(stream: DeltaStream, response: discovery_pb2.DeltaDiscoveryResponse) -> list:
    return stream.receive(delta_request(type_of(response), nonce=response.nonce))


def started(snapshot, mutants: Mutants = Mutants()) -> DeltaStream:
    """A stream whose client holds the whole snapshot, all ACKed, in the order Envoy asks."""
    stream = DeltaStream(mutants=mutants)
    stream.on_snapshot(snapshot)
    (cds,) = stream.receive(delta_request(CDS))
    (eds,) = stream.receive(delta_request(EDS, sorted(snapshot.of_type(EDS))))
    ack(stream, cds)
    ack(stream, eds)
    (lds,) = stream.receive(delta_request(LDS))
    ack(stream, lds)
    (rds,) = stream.receive(delta_request(RDS, sorted(snapshot.of_type(RDS))))
    ack(stream, rds)
    assert stream.converged()
    return stream


def test_subscribe_is_answered_even_if_the_client_has_the_latest_version():
    snapshot = world({"r1": ("c1",)})
    stream = started(snapshot)
    (response,) = stream.receive(
        delta_request(RDS, ["r1"], nonce=stream.status().of_type(RDS).last_sent_nonce)
    )
    assert names_of(response) == ["r1"]


def test_unsubscribe_forgets_the_client_version_so_a_resubscribe_is_answered():
    stream = started(world({"r1": ("c1",)}))
    nonce = stream.status().of_type(RDS).last_sent_nonce
    assert stream.receive(delta_request(RDS, unsubscribe=["r1"], nonce=nonce)) == []
    (response,) = stream.receive(delta_request(RDS, ["r1"], nonce=nonce))
    assert names_of(response) == ["r1"]


def test_names_that_do_not_exist_go_in_removed_resources():
    stream = started(world({"r1": ("c1",)}))
    (response,) = stream.receive(
        delta_request(RDS, ["missing"], nonce=stream.status().of_type(RDS).last_sent_nonce)
    )
    assert list(response.removed_resources) == ["missing"]
    assert list(response.resources) == []


def test_initial_resource_versions_seed_what_the_client_holds():
    snapshot = world({"r1": ("c1",), "r2": ("c1",)})
    stream = DeltaStream()
    stream.on_snapshot(snapshot)
    held = {"r1": snapshot.get(RDS, "r1").version, "r2": "stale-version"}
    (response,) = stream.receive(delta_request(RDS, ["r1", "r2"], initial=held))
    assert names_of(response) == ["r2"]


def test_initial_resource_versions_only_on_the_first_request_for_a_type():
    stream = started(world({"r1": ("c1",)}))
    with pytest.raises(RemoteProtocolError, match="initial_resource_versions"):
        stream.receive(delta_request(RDS, ["r1"], initial={"r1": "x"}))


def test_subscription_change_is_honoured_with_a_stale_nonce():
    stream = started(world({"r1": ("c1",), "r2": ("c1",)}))
    rds_nonce_before = stream.status().of_type(RDS).last_sent_nonce
    (in_flight,) = stream.on_snapshot(world({"r1": ("c1",), "r2": ("c1",)}, marker="v2"))
    # The client processes a listener update before the RDS response above and subscribes a
    # name, quoting the RDS nonce it last saw: stale, but the subscription counts.
    stream.receive(delta_request(RDS, unsubscribe=["r2"], nonce=rds_nonce_before))
    stream.receive(delta_request(RDS, ["r2"], nonce=rds_nonce_before))
    (answer,) = ack(stream, in_flight)
    assert names_of(answer) == ["r2"]


def test_mutant_stale_nonce_drops_subscription_loses_the_subscribe():
    stream = started(
        world({"r1": ("c1",), "r2": ("c1",)}), Mutants.of(["stale-nonce-drops-subscription"])
    )
    rds_nonce_before = stream.status().of_type(RDS).last_sent_nonce
    (in_flight,) = stream.on_snapshot(world({"r1": ("c1",), "r2": ("c1",)}, marker="v2"))
    stream.receive(delta_request(RDS, unsubscribe=["r2"], nonce=rds_nonce_before))
    stream.receive(delta_request(RDS, ["r2"], nonce=rds_nonce_before))
    assert ack(stream, in_flight) == []


def test_nack_keeps_the_previous_version_and_the_rejected_config_is_not_resent():
    stream = started(world({"r1": ("c1",)}))
    (response,) = stream.on_snapshot(world({"r1": ("c1",)}, marker="bad"))
    assert stream.receive(delta_request(RDS, nonce=response.nonce, error="rejected")) == []
    status = stream.status().of_type(RDS)
    assert [n.nonce for n in status.nacks] == [response.nonce]
    assert stream.converged()


def test_mutant_nack_loop_resends_the_rejected_config_at_once():
    stream = started(world({"r1": ("c1",)}), Mutants.of(["nack-loop"]))
    (response,) = stream.on_snapshot(world({"r1": ("c1",)}, marker="bad"))
    (again,) = stream.receive(delta_request(RDS, nonce=response.nonce, error="rejected"))
    assert names_of(again) == ["r1"]
    assert again.resources[0].version == response.resources[0].version


def test_first_request_without_names_is_a_legacy_wildcard_and_star_is_explicit():
    snapshot = world({"r1": ("c1",), "r2": ("c2",)})
    stream = DeltaStream()
    stream.on_snapshot(snapshot)
    (response,) = stream.receive(delta_request(CDS))
    assert names_of(response) == ["c1", "c2"]
    explicit = DeltaStream()
    explicit.on_snapshot(snapshot)
    (response,) = explicit.receive(delta_request(CDS, ["*"]))
    assert names_of(response) == ["c1", "c2"]


def test_a_request_that_only_unsubscribes_gets_no_response():
    stream = started(world({"r1": ("c1",), "r2": ("c1",)}))
    nonce = stream.status().of_type(RDS).last_sent_nonce
    assert stream.receive(delta_request(RDS, unsubscribe=["r2"], nonce=nonce)) == []


def test_responses_carry_only_what_changed():
    stream = started(world({"r1": ("c1",), "r2": ("c2",)}))
    responses = stream.on_snapshot(
        world({"r1": ("c1",), "r2": ("c2",)}, cluster_timeouts={"c2": 500})
    )
    (cds,) = responses[:1]
    assert names_of(cds) == ["c2"]


def test_wildcard_removal_is_sent_in_removed_resources():
    stream = started(world({"r1": ("c1",), "r2": ("c1",)}))
    (lds,) = stream.on_snapshot(world({"r1": ("c1",)}))
    assert type_of(lds) is LDS
    assert list(lds.removed_resources) == ["L-r2"]


def test_mutant_resubscribe_ignored_leaves_a_resubscribe_unanswered():
    stream = started(world({"r1": ("c1",)}), Mutants.of(["resubscribe-ignored"]))
    nonce = stream.status().of_type(RDS).last_sent_nonce
    stream.receive(delta_request(RDS, unsubscribe=["r1"], nonce=nonce))
    assert stream.receive(delta_request(RDS, ["r1"], nonce=nonce)) == []


def test_a_request_without_type_url_is_a_protocol_violation():
    stream = DeltaStream()
    request = delta_request(RDS, ["r1"])
    request.type_url = ""
    with pytest.raises(RemoteProtocolError, match="type_url"):
        stream.receive(request)


def test_the_first_request_must_carry_a_node():
    stream = DeltaStream()
    with pytest.raises(RemoteProtocolError, match="node"):
        stream.receive(delta_request(RDS, ["r1"], node=""))


def test_a_reconnect_reporting_versions_before_the_snapshot_still_gets_changed_endpoints():
    """Found by the harness: versions reported before the stream held a snapshot were kept as
    opaque placeholders without references, which blocked EDS (and then RDS) forever."""
    before = world({"r1": ("c1",)}, endpoints={"c1": (8001,)})
    after = world({"r1": ("c1",)}, endpoints={"c1": (8002,)}, marker="new")
    held = {
        kind: {name: r.version for name, r in before.of_type(kind).items()}
        for kind in (CDS, EDS, LDS, RDS)
    }
    stream = DeltaStream()
    assert stream.receive(delta_request(CDS, initial=held[CDS])) == []
    (cds,) = stream.on_snapshot(after)  # the wildcard subscription is answered, here empty
    assert names_of(cds) == []
    ack(stream, cds)
    (eds,) = stream.receive(delta_request(EDS, ["c1"], initial=held[EDS]))
    assert names_of(eds) == ["c1"]
    stream.receive(delta_request(LDS, initial=held[LDS]))
    stream.receive(delta_request(RDS, ["r1"], initial=held[RDS]))
    by_type = {type_of(response): response for response in ack(stream, eds)}
    assert names_of(by_type[RDS]) == ["r1"]
    for response in by_type.values():
        ack(stream, response)
    assert stream.converged()


def _route_config_came_and_went(mutants: Mutants = Mutants()) -> tuple[DeltaStream, list]:
    """r2 appears in one snapshot (no Listener names it, the client never asks) and goes in the
    next; returns the stream and what that second snapshot made it send."""
    stream = started(world({"r1": ("c1",)}), mutants)
    assert stream.on_snapshot(world({"r1": ("c1",), "r2": ("c1",)}, listeners={"L-r1": "r1"})) == []
    return stream, stream.on_snapshot(world({"r1": ("c1",)}))


def test_removed_resources_name_only_what_the_client_holds_or_asked_for():
    stream, sent = _route_config_came_and_went()
    assert sent == []
    assert stream.converged()


def test_mutant_removals_unscoped_removes_a_name_the_client_never_had():
    stream, sent = _route_config_came_and_went(Mutants.of(["removals-unscoped"]))
    (rds,) = sent
    assert type_of(rds) is RDS
    assert list(rds.removed_resources) == ["r2"]
    assert "r2" not in stream.status().of_type(RDS).subscribed
    # Told once: after the ACK the stream has nothing left to say.
    assert ack(stream, rds) == []
    assert stream.converged()


def test_mutant_removals_unscoped_tells_a_new_stream_of_names_an_old_one_saw():
    """The mutant's memory is the node's: a Cluster created and deleted while the client was
    away (sent on a stream that broke before it arrived) is removed on the next stream, though
    the client never had it; the correct stream removes only what the client reports."""
    now = world({"r1": ("c1",)})
    held = {kind: {n: r.version for n, r in now.of_type(kind).items()} for kind in (CDS, LDS)}
    for mutants, expected in ((Mutants(), set()), (Mutants.of(["removals-unscoped"]), {"c2"})):
        served = ServedSets()
        old = DeltaStream(mutants=mutants, served=served)
        old.receive(delta_request(CDS))
        old.on_snapshot(world({"r1": ("c1", "c2")}))  # c2 sent, but the stream breaks
        new = DeltaStream(mutants=mutants, served=served)
        new.on_snapshot(now)
        pending = list(new.receive(delta_request(CDS, initial=held[CDS])))
        pending += new.receive(delta_request(EDS, ["c1"]))
        pending += new.receive(delta_request(LDS, initial=held[LDS]))
        pending += new.receive(delta_request(RDS, ["r1"]))
        removed: set[str] = set()
        while pending:
            response = pending.pop(0)
            if type_of(response) is CDS:
                removed |= set(response.removed_resources)
            pending += ack(new, response)
        assert removed == expected
