"""One test per SotW protocol rule the server must keep (ENVOY_FACTS.md), on the sans-IO core."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from sut.mutants import Mutants
from sut.xds import ResourceType, SotwStream
from tests.xds.builders import names_of, sotw_request, type_of, world

LDS, RDS, CDS, EDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
)


def ack(stream: SotwStream, response: discovery_pb2.DiscoveryResponse, names=()) -> list:
    kind = type_of(response)
    return stream.receive(
        sotw_request(kind, names, nonce=response.nonce, version=response.version_info)
    )


def started(snapshot, mutants: Mutants = Mutants(), routes=None) -> SotwStream:
    """A stream whose client holds every route config of the snapshot (or `routes`), all
    ACKed."""
    stream = SotwStream(mutants=mutants)
    stream.on_snapshot(snapshot)
    route_names = sorted(snapshot.of_type(RDS) if routes is None else routes)
    cluster_names = sorted(snapshot.of_type(EDS))
    (cds,) = stream.receive(sotw_request(CDS))
    (eds,) = stream.receive(sotw_request(EDS, cluster_names))
    ack(stream, cds)
    ack(stream, eds, cluster_names)
    (lds,) = stream.receive(sotw_request(LDS))
    ack(stream, lds)
    (rds,) = stream.receive(sotw_request(RDS, route_names))
    ack(stream, rds, route_names)
    assert stream.converged()
    return stream


def test_every_response_carries_a_nonce_and_the_type_version():
    snapshot = world({"r1": ("c1",)})
    stream = SotwStream()
    stream.on_snapshot(snapshot)
    (response,) = stream.receive(sotw_request(CDS))
    assert response.nonce
    assert response.version_info == snapshot.type_version(CDS)
    (second,) = stream.receive(sotw_request(EDS, ["c1"]))
    assert second.nonce != response.nonce
    assert second.version_info == snapshot.type_version(EDS)


def test_nack_keeps_previous_version_and_rejected_config_is_not_resent():
    stream = started(world({"r1": ("c1",)}))
    changed = world({"r1": ("c1",)}, marker="bad")
    (response,) = stream.on_snapshot(changed)
    assert type_of(response) is RDS
    after_nack = stream.receive(
        sotw_request(RDS, ["r1"], nonce=response.nonce, version="old", error="rejected")
    )
    assert after_nack == []
    status = stream.status().of_type(RDS)
    assert len(status.nacks) == 1
    assert status.acked_version != response.version_info
    # A plain re-request at the old version must not bring the rejected config back either.
    assert stream.receive(sotw_request(RDS, ["r1"], nonce=response.nonce, version="old")) == []
    assert stream.converged()


def test_newly_requested_name_is_answered_even_if_unchanged_and_sent_before():
    stream = started(world({"r1": ("c1",)}))
    rds = stream.status().of_type(RDS)
    # Listener switched to an inline route config: Envoy asks for no RDS names...
    last_nonce = stream.status().of_type(RDS).last_sent_nonce
    assert stream.receive(sotw_request(RDS, [], nonce=last_nonce, version=rds.acked_version)) == []
    # ...and back: same version, same nonce; only the added name tells it from an ACK.
    (response,) = stream.receive(
        sotw_request(RDS, ["r1"], nonce=last_nonce, version=rds.acked_version)
    )
    assert names_of(response) == ["r1"]


def test_requested_but_missing_names_are_sent_when_they_appear():
    stream = started(world({"r1": ("c1",)}))
    last_nonce = stream.status().of_type(RDS).last_sent_nonce
    assert stream.receive(sotw_request(RDS, ["r1", "r2"], nonce=last_nonce)) == []
    responses = stream.on_snapshot(world({"r1": ("c1",), "r2": ("c1",)}))
    by_type = {type_of(r): r for r in responses}
    assert names_of(by_type[RDS]) == ["r2"]


def test_lds_and_cds_responses_carry_the_full_set_and_absence_deletes():
    stream = started(world({"r1": ("c1",), "r2": ("c2",)}))
    responses = stream.on_snapshot(world({"r1": ("c1",)}))
    (lds,) = [r for r in responses if type_of(r) is LDS]
    assert names_of(lds) == ["L-r1"]
    assert [type_of(r) for r in responses] == [LDS]
    # The cluster only r2 used goes last, once listeners and routes have settled.
    (cds,) = ack(stream, lds)
    assert type_of(cds) is CDS
    assert names_of(cds) == ["c1"]


def test_rds_and_eds_responses_carry_what_changed_and_never_delete():
    stream = started(world({"r1": ("c1",), "r2": ("c1",)}))
    responses = stream.on_snapshot(world({"r1": ("c1", "c2"), "r2": ("c1",)}))
    assert [type_of(r) for r in responses] == [CDS]
    ack(stream, responses[0])
    (eds,) = stream.receive(sotw_request(EDS, ["c1", "c2"], nonce=responses[0].nonce))
    assert names_of(eds) == ["c2"]  # the newly requested name; c1 is unchanged
    rds_responses = ack(stream, eds, ["c1", "c2"])
    (rds,) = [r for r in rds_responses if type_of(r) is RDS]
    assert names_of(rds) == ["r1"]  # r2 did not change: not sent, and not deleted either


def test_stale_nonce_is_not_an_ack_but_its_names_are_honoured():
    stream = started(world({"r1": ("c1",), "r2": ("c1",)}))
    (response,) = stream.on_snapshot(world({"r1": ("c1",), "r2": ("c1",)}, marker="v2"))
    assert type_of(response) is RDS
    stale = stream.receive(sotw_request(RDS, ["r1", "r2"], nonce="not-the-latest"))
    assert stale == []
    assert stream.status().of_type(RDS).in_flight_nonce == response.nonce


def test_rds_request_without_names_is_not_a_wildcard():
    stream = started(world({"r1": ("c1",)}))
    last_nonce = stream.status().of_type(RDS).last_sent_nonce
    stream.receive(sotw_request(RDS, [], nonce=last_nonce))
    assert not stream.status().of_type(RDS).wildcard
    assert stream.on_snapshot(world({"r1": ("c1",)}, marker="changed")) == []


def test_first_request_of_a_stream_is_answered_even_at_the_client_version():
    snapshot = world({"r1": ("c1",)})
    stream = SotwStream()
    stream.on_snapshot(snapshot)
    (response,) = stream.receive(sotw_request(CDS, version=snapshot.type_version(CDS)))
    assert names_of(response) == ["c1"]


def test_one_response_in_flight_per_type():
    stream = started(world({"r1": ("c1",)}))
    (first,) = stream.on_snapshot(world({"r1": ("c1",)}, marker="a"))
    assert stream.on_snapshot(world({"r1": ("c1",)}, marker="b")) == []
    (second,) = ack(stream, first, ["r1"])
    assert second.nonce != first.nonce


def test_mutant_sotw_new_names_ignored_breaks_the_new_name_rule():
    stream = started(world({"r1": ("c1",)}), Mutants.of(["sotw-new-names-ignored"]))
    rds = stream.status().of_type(RDS)
    last_nonce = stream.status().of_type(RDS).last_sent_nonce
    stream.receive(sotw_request(RDS, [], nonce=last_nonce, version=rds.acked_version))
    assert (
        stream.receive(sotw_request(RDS, ["r1"], nonce=last_nonce, version=rds.acked_version)) == []
    )


def _adding_a_name_at_the_current_version(mutants: Mutants = Mutants()) -> list:
    """The client holds r1 at the current RDS version (which covers r2 too) and adds r2."""
    snapshot = world({"r1": ("c1",), "r2": ("c1",)}, listeners={"L-r1": "r1"})
    stream = started(snapshot, mutants, routes=["r1"])
    rds = stream.status().of_type(RDS)
    assert rds.acked_version == snapshot.type_version(RDS)
    last_nonce = stream.status().of_type(RDS).last_sent_nonce
    return stream.receive(
        sotw_request(RDS, ["r1", "r2"], nonce=last_nonce, version=rds.acked_version)
    )


def test_a_name_added_at_the_current_version_is_answered():
    (response,) = _adding_a_name_at_the_current_version()
    assert names_of(response) == ["r2"]


def test_mutant_request_version_trusted_ignores_a_name_added_at_the_current_version():
    assert _adding_a_name_at_the_current_version(Mutants.of(["request-version-trusted"])) == []


def test_mutant_request_version_trusted_leaves_a_new_stream_unanswered():
    snapshot = world({"r1": ("c1",)})
    stream = SotwStream(mutants=Mutants.of(["request-version-trusted"]))
    stream.on_snapshot(snapshot)
    assert stream.receive(sotw_request(CDS, version=snapshot.type_version(CDS))) == []
    assert stream.converged()  # the stream believes the client holds every Cluster
    # Any other version is still answered.
    (response,) = stream.receive(sotw_request(EDS, ["c1"], version="older"))
    assert names_of(response) == ["c1"]
