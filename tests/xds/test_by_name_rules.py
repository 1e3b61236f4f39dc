"""Clients that subscribe by name (proxyless gRPC: SotW, every type by name, LDS -> RDS -> CDS ->
EDS, names asked for before they exist), on the sans-IO core. Wildcard cases pin Envoy's side."""

from __future__ import annotations

import collections

from envoy.service.discovery.v3 import discovery_pb2

from sut.mutants import Mutants
from sut.xds import DeltaStream, Resource, ResourceType, Snapshot, SotwStream
from tests.xds.builders import (
    cluster,
    delta_request,
    listener,
    load_assignment,
    names_of,
    route_configuration,
    sotw_request,
    type_of,
)

LDS, RDS, CDS, EDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
)
FULL_STATE = (LDS, CDS)
"""Types whose SotW responses carry the whole subscribed set (absence deletes)."""
NAMED_BY = {RDS: LDS, CDS: RDS, EDS: CDS}
"""Each type is asked for once a resource of this type that the client holds names it."""


def mesh(route_to: str, *, ports: dict[str, int] | None = None, marker: str = "") -> Snapshot:
    """Listener `L` -> RouteConfiguration `rc` -> `route_to`; Clusters c1 and c2 both exist."""
    ports = {"c1": 8001, "c2": 8002} | (ports or {})
    messages: list[object] = [
        listener("L", "rc"),
        route_configuration("rc", route_to, marker=marker),
    ]
    for name, port in sorted(ports.items()):
        messages += [cluster(name), load_assignment(name, port)]
    return Snapshot.from_messages(messages)  # type: ignore[arg-type]


class ByNameClient:
    """Plays a proxyless gRPC client on one SotW stream: asks for `target`, then for what each
    resource it holds names; ACKs every response; ignores resources it did not ask for."""

    def __init__(self, target: str, mutants: Mutants = Mutants()) -> None:
        self.stream = SotwStream(mutants=mutants)
        self.names: dict[ResourceType, list[str]] = {LDS: [target]}
        self.held: dict[ResourceType, dict[str, Resource]] = {k: {} for k in (LDS, RDS, CDS, EDS)}
        self.last: dict[ResourceType, tuple[str, str]] = {}
        """Per type, the nonce and version of the last response (quoted by later requests)."""

    def start(self, snapshot: Snapshot) -> None:
        self.stream.on_snapshot(snapshot)
        self.follow(self.stream.receive(sotw_request(LDS, self.names[LDS])))

    def follow(self, responses: list, limit: int = 100) -> None:
        """Handle responses, and those they lead to, until the stream has nothing more to say."""
        pending = collections.deque(responses)
        for _ in range(limit):
            if not pending:
                return
            pending += self._handle(pending.popleft())
        raise AssertionError(f"still exchanging after {limit} responses")

    def _handle(self, response: discovery_pb2.DiscoveryResponse) -> list:
        kind = type_of(response)
        self.last[kind] = (response.nonce, response.version_info)
        asked = set(self.names.get(kind, ()))
        got = {r.name: r for r in map(_decoded, response.resources) if r.name in asked}
        self.held[kind] = got if kind in FULL_STATE else self.held[kind] | got
        answers = self._request(kind)  # the ACK
        for other, referrer in NAMED_BY.items():
            wanted = sorted(
                {n for r in self.held[referrer].values() for n in r.references.of_type(other)}
            )
            if wanted != self.names.get(other, []):
                self.names[other] = wanted
                self.held[other] = {n: r for n, r in self.held[other].items() if n in wanted}
                answers += self._request(other)
        return answers

    def _request(self, kind: ResourceType) -> list:
        nonce, version = self.last.get(kind, ("", ""))
        request = sotw_request(kind, self.names[kind], nonce=nonce, version=version)
        return self.stream.receive(request)

    def holds(self, kind: ResourceType) -> list[str]:
        return sorted(self.held[kind])


def _decoded(packed) -> Resource:
    return Resource.from_message(_message_of(packed))


def _message_of(packed):
    for kind in (LDS, RDS, CDS, EDS):
        if packed.type_url == kind.type_url:
            message = kind.message_class()
            packed.Unpack(message)
            return message
    raise AssertionError(f"unexpected resource type {packed.type_url}")


def ack(stream: SotwStream, response, names=()) -> list:
    return stream.receive(
        sotw_request(type_of(response), names, nonce=response.nonce, version=response.version_info)
    )


# ------------------------------------------------------------------ SotW, by name


def test_a_by_name_cds_request_gets_only_the_clusters_it_names():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["c1"]))
    assert names_of(cds) == ["c1"]
    assert stream.status().of_type(CDS).wildcard is False
    # Adding a name brings the whole subscribed set, still nothing unasked.
    (both,) = stream.receive(
        sotw_request(CDS, ["c1", "c2"], nonce=cds.nonce, version=cds.version_info)
    )
    assert names_of(both) == ["c1", "c2"]


def test_a_by_name_lds_request_gets_only_the_listeners_it_names():
    snapshot = Snapshot.from_messages(
        [listener("L", "rc"), listener("other", None), route_configuration("rc")]
    )
    stream = SotwStream()
    stream.on_snapshot(snapshot)
    (lds,) = stream.receive(sotw_request(LDS, ["L"]))
    assert names_of(lds) == ["L"]


def test_a_by_name_request_for_a_missing_listener_is_answered_empty_then_sent_when_it_appears():
    stream = SotwStream()
    stream.on_snapshot(Snapshot.empty())
    (lds,) = stream.receive(sotw_request(LDS, ["L"]))
    assert names_of(lds) == []  # absence from a full-state response: it does not exist
    assert ack(stream, lds, ["L"]) == []
    assert stream.converged()
    (appeared,) = stream.on_snapshot(mesh("c1"))
    assert type_of(appeared) is LDS and names_of(appeared) == ["L"]


def test_a_cds_request_adding_a_missing_name_is_answered_with_what_exists():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["c1"]))
    ack(stream, cds, ["c1"])
    (answer,) = stream.receive(
        sotw_request(CDS, ["c1", "missing"], nonce=cds.nonce, version=cds.version_info)
    )
    assert names_of(answer) == ["c1"]
    assert ack(stream, answer, ["c1", "missing"]) == []
    assert stream.converged()


def test_a_by_name_cds_request_for_only_missing_names_is_answered_empty():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["missing"]))
    assert type_of(cds) is CDS and names_of(cds) == []


def test_a_by_name_client_follows_the_chain_and_holds_only_what_its_route_uses():
    client = ByNameClient("L")
    client.start(mesh("c1"))
    assert [client.holds(k) for k in (LDS, RDS, CDS, EDS)] == [["L"], ["rc"], ["c1"], ["c1"]]
    assert client.stream.converged()


def test_a_route_moving_to_a_cluster_the_client_never_asked_for_converges():
    """RDS must not wait for c2's Cluster and endpoints: the client asks for them only once it
    holds the RouteConfiguration naming c2 (waiting would deadlock the stream)."""
    client = ByNameClient("L")
    client.start(mesh("c1"))
    pushed = client.stream.on_snapshot(mesh("c2"))
    assert [type_of(r) for r in pushed] == [RDS]
    client.follow(pushed)
    assert [client.holds(k) for k in (RDS, CDS, EDS)] == [["rc"], ["c2"], ["c2"]]
    assert client.stream.converged()


def test_endpoints_asked_for_by_name_are_not_held_back_for_a_cluster_the_client_dropped():
    """gRPC may still ask for c1's endpoints after it dropped Cluster c1: they are sent, and
    they gate nothing (they wait for no Cluster the client will not ask for again)."""
    stream = SotwStream()
    stream.on_snapshot(mesh("c2"))
    for kind, names in ((LDS, ["L"]), (RDS, ["rc"]), (CDS, ["c2"])):
        (response,) = stream.receive(sotw_request(kind, names))
        ack(stream, response, names)
    (eds,) = stream.receive(sotw_request(EDS, ["c1", "c2"]))
    assert names_of(eds) == ["c1", "c2"]
    ack(stream, eds, ["c1", "c2"])
    assert stream.converged()
    pushed = stream.on_snapshot(mesh("c2", ports={"c1": 9001}, marker="new"))
    (eds_c1,) = pushed
    assert (type_of(eds_c1), names_of(eds_c1)) == (EDS, ["c1"])
    (rds,) = ack(stream, eds_c1, ["c1", "c2"])  # RDS waits for EDS ACKed, and only that
    assert (type_of(rds), names_of(rds)) == (RDS, ["rc"])


def test_a_by_name_list_emptied_later_unsubscribes_and_is_no_wildcard():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["c1"]))
    assert stream.receive(sotw_request(CDS, [], nonce=cds.nonce, version=cds.version_info)) == []
    status = stream.status().of_type(CDS)
    assert (status.wildcard, status.subscribed) == (False, frozenset())
    assert stream.on_snapshot(mesh("c1", ports={"c3": 8003})) == []  # a wildcard would get c3


def test_mutant_sotw_new_names_ignored_leaves_a_missing_name_unanswered():
    stream = SotwStream(mutants=Mutants.of(["sotw-new-names-ignored"]))
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["c1"]))
    ack(stream, cds, ["c1"])
    request = sotw_request(CDS, ["c1", "missing"], nonce=cds.nonce, version=cds.version_info)
    assert stream.receive(request) == []


# ------------------------------------------------------------- SotW, wildcard (Envoy)


def test_a_wildcard_cds_gets_every_cluster_and_stays_wildcard_on_empty_acks():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS))
    assert names_of(cds) == ["c1", "c2"]
    ack(stream, cds)
    assert stream.status().of_type(CDS).wildcard is True
    (changed,) = stream.on_snapshot(mesh("c1", ports={"c3": 8003}))
    assert names_of(changed) == ["c1", "c2", "c3"]


def test_star_among_the_names_is_a_wildcard():
    stream = SotwStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(sotw_request(CDS, ["*", "c1"]))
    assert names_of(cds) == ["c1", "c2"]
    assert stream.status().of_type(CDS).wildcard is True
    # The client named something, so a later empty list is no legacy wildcard: it drops "*".
    assert stream.receive(sotw_request(CDS, [], nonce=cds.nonce, version=cds.version_info)) == []
    assert stream.status().of_type(CDS).wildcard is False


# ---------------------------------------------------------------------------- Delta


def test_delta_answers_a_missing_name_at_once_even_before_listeners_are_opened():
    """A name the client does not hold is no removal: nothing waits to tell it is missing."""
    stream = DeltaStream()
    stream.on_snapshot(mesh("c1"))
    (cds,) = stream.receive(delta_request(CDS, ["c1", "missing"]))
    assert names_of(cds) == ["c1"]
    assert list(cds.removed_resources) == ["missing"]
    (eds,) = stream.receive(delta_request(EDS, ["gone"]))  # while CDS is still in flight
    assert list(eds.removed_resources) == ["gone"] and list(eds.resources) == []


def test_delta_defers_a_missing_name_while_the_client_holds_content_the_stream_does_not_know():
    """After a reconnect, a Cluster reported at a version the stream never served may name the
    endpoints asked for: telling they do not exist waits like a removal."""
    stream = DeltaStream()
    stream.on_snapshot(Snapshot.from_messages([cluster("c1"), load_assignment("c1", 8001)]))
    (cds,) = stream.receive(delta_request(CDS, initial={"c2": "from-an-earlier-server"}))
    assert names_of(cds) == ["c1"] and list(cds.removed_resources) == []  # c2 waits too
    assert stream.receive(delta_request(EDS, ["c2"])) == []
