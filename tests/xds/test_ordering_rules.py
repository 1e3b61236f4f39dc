"""Make-before-break and bookkeeping rules shared by SotW and Delta, on the sans-IO core."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from sut.mutants import Mutants
from sut.xds import DeltaStream, ResourceType, ServedSets, Snapshot, SotwStream
from sut.xds.stream import AdsStream
from tests.xds.builders import (
    delta_request,
    listener,
    load_assignment,
    names_of,
    resource,
    sotw_request,
    type_of,
    world,
)

LDS, RDS, CDS, EDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
)


class Client:
    """Plays Envoy's side of one stream: subscribes like Envoy and ACKs on request."""

    def __init__(
        self, mode: str, mutants: Mutants = Mutants(), served: ServedSets | None = None
    ) -> None:
        self.mode = mode
        stream_class = DeltaStream if mode == "delta" else SotwStream
        self.stream: AdsStream = stream_class(mutants=mutants, served=served)
        self.names: dict[ResourceType, list[str]] = {}

    def request(self, kind: ResourceType, names=(), nonce: str = "") -> list:
        self.names[kind] = sorted(names)
        if self.mode == "delta":
            return self.stream.receive(delta_request(kind, names, nonce=nonce))
        return self.stream.receive(sotw_request(kind, names, nonce=nonce))

    def ack(self, response) -> list:
        kind = type_of(response)
        if self.mode == "delta":
            return self.stream.receive(delta_request(kind, nonce=response.nonce))
        return self.stream.receive(
            sotw_request(
                kind, self.names.get(kind, ()), nonce=response.nonce, version=response.version_info
            )
        )

    def start(
        self,
        snapshot: Snapshot,
        *,
        clusters: Iterable[str] | None = None,
        routes: Iterable[str] | None = None,
    ) -> dict[ResourceType, object]:
        """Subscribe like Envoy (every name, unless given) and ACK; the first response per type."""
        self.stream.on_snapshot(snapshot)
        (cds,) = self.request(CDS)
        (eds,) = self.request(EDS, sorted(snapshot.of_type(EDS) if clusters is None else clusters))
        self.ack(cds)
        self.ack(eds)
        (lds,) = self.request(LDS)
        self.ack(lds)
        (rds,) = self.request(RDS, sorted(snapshot.of_type(RDS) if routes is None else routes))
        self.ack(rds)
        assert self.stream.converged()
        return {CDS: cds, EDS: eds, LDS: lds, RDS: rds}


MODES = ["delta", "sotw"]


@pytest.mark.parametrize("mode", MODES)
def test_make_before_break_cds_then_eds_then_lds_then_rds(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    new_world = world({"r1": ("c1", "c2"), "r2": ("c2",)})
    rds_nonce_before = client.stream.status().of_type(RDS).last_sent_nonce
    pushed = client.stream.on_snapshot(new_world)
    assert [type_of(r) for r in pushed] == [CDS]
    (eds,) = client.request(
        EDS, ["c1", "c2"], nonce=client.stream.status().of_type(EDS).last_sent_nonce
    )
    assert "c2" in names_of(eds)
    assert client.ack(pushed[0]) == []  # CDS ACKed, but c2's endpoints are not yet ACKed
    lds, rds = client.ack(eds)
    # LDS once clusters and endpoints are ACKed; RDS right after it (r1 now names c2).
    assert (type_of(lds), type_of(rds)) == (LDS, RDS)
    assert names_of(rds) == ["r1"]
    # The new listener's route config is asked for while the RDS response is in flight.
    assert client.request(RDS, ["r1", "r2"], nonce=rds_nonce_before) == []
    (r2,) = client.ack(rds)
    assert "r2" in names_of(r2)


@pytest.mark.parametrize("mode", MODES)
def test_a_route_never_names_a_cluster_before_the_cluster_is_acked(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    pushed = client.stream.on_snapshot(world({"r1": ("c1", "c2")}))
    assert RDS not in [type_of(r) for r in pushed]


@pytest.mark.parametrize("mode", MODES)
def test_an_updated_cluster_gets_its_load_assignment_again(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    # Delta: Envoy sends no EDS request; SotW: its EDS request looks exactly like an ACK. So
    # the server sends the unchanged ClusterLoadAssignment right behind the Cluster.
    cds, eds = client.stream.on_snapshot(world({"r1": ("c1",)}, cluster_timeouts={"c1": 900}))
    assert (type_of(cds), type_of(eds)) == (CDS, EDS)
    assert names_of(eds) == ["c1"]


@pytest.mark.parametrize("mode", MODES)
def test_mutant_eds_not_resent_on_cds_leaves_the_cluster_warming(mode):
    client = Client(mode, Mutants.of(["eds-not-resent-on-cds"]))
    client.start(world({"r1": ("c1",)}))
    (cds,) = client.stream.on_snapshot(world({"r1": ("c1",)}, cluster_timeouts={"c1": 900}))
    assert type_of(cds) is CDS
    eds_nonce = client.stream.status().of_type(EDS).last_sent_nonce
    assert client.ack(cds) == []
    if mode == "sotw":
        assert client.stream.receive(sotw_request(EDS, ["c1"], nonce=eds_nonce)) == []


@pytest.mark.parametrize("mode", MODES)
def test_a_cluster_deleted_while_in_flight_still_gets_its_endpoints(mode):
    """Found by the machine (a held xDS connection): Envoy ACKs CDS only once the new Cluster
    has warmed, so the server must not make that Cluster's endpoints wait for the ACK."""
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    (cds,) = client.stream.on_snapshot(world({"r1": ("c1", "c2")}, endpoints={"c2": (8002,)}))
    assert names_of(cds) == ["c1", "c2"] if mode == "sotw" else ["c2"]
    # Before the client reads that response, the snapshot drops c2 again.
    assert client.stream.on_snapshot(world({"r1": ("c1",)})) == []
    # The client warms c2 and asks for its endpoints, holding the CDS ACK until it has them.
    eds_nonce = client.stream.status().of_type(EDS).last_sent_nonce
    if mode == "delta":
        (eds,) = client.stream.receive(delta_request(EDS, ["c2"], nonce=""))
    else:
        (eds,) = client.stream.receive(sotw_request(EDS, ["c1", "c2"], nonce=eds_nonce))
    assert names_of(eds) == ["c2"]
    # Once warm, the CDS ACK lets the deletion through, and then the endpoints go too.
    client.ack(eds)
    (cds_removal,) = client.ack(cds)
    assert type_of(cds_removal) is CDS
    if mode == "delta":
        assert list(cds_removal.removed_resources) == ["c2"]
        (eds_removal,) = client.ack(cds_removal)
        assert list(eds_removal.removed_resources) == ["c2"]
        client.ack(eds_removal)
        assert client.stream.receive(delta_request(EDS, unsubscribe=["c2"])) == []
    else:
        assert names_of(cds_removal) == ["c1"]
        client.ack(cds_removal)
        client.stream.receive(sotw_request(EDS, ["c1"], nonce=eds.nonce))
    assert client.stream.converged()


@pytest.mark.parametrize("mode", MODES)
def test_mutant_warming_cluster_starved_withholds_those_endpoints(mode):
    client = Client(mode, Mutants.of(["warming-cluster-starved"]))
    client.start(world({"r1": ("c1",)}))
    (cds,) = client.stream.on_snapshot(world({"r1": ("c1", "c2")}))
    assert type_of(cds) is CDS
    client.stream.on_snapshot(world({"r1": ("c1",)}))
    if mode == "delta":
        assert client.stream.receive(delta_request(EDS, ["c2"])) == []
    else:
        eds_nonce = client.stream.status().of_type(EDS).last_sent_nonce
        assert client.stream.receive(sotw_request(EDS, ["c1", "c2"], nonce=eds_nonce)) == []


@pytest.mark.parametrize("mode", MODES)
def test_removals_go_last(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",), "r2": ("c2",)}))
    pushed = client.stream.on_snapshot(world({"r1": ("c1",)}))
    assert [type_of(r) for r in pushed] == [LDS]
    after_lds = client.ack(pushed[0])
    if mode == "delta":
        # Envoy drops the removed listener's RouteConfiguration subscription.
        after_lds += client.stream.receive(
            delta_request(
                RDS, unsubscribe=["r2"], nonce=client.stream.status().of_type(RDS).last_sent_nonce
            )
        )
    (cds,) = [r for r in after_lds if type_of(r) is CDS]
    if mode == "delta":
        assert list(cds.removed_resources) == ["c2"]
    else:
        assert names_of(cds) == ["c1"]


@pytest.mark.parametrize("mode", MODES)
def test_mutant_unordered_push_sends_routes_before_clusters(mode):
    client = Client(mode, Mutants.of(["unordered-push"]))
    client.start(world({"r1": ("c1",)}))
    pushed = client.stream.on_snapshot(world({"r1": ("c1", "c2")}))
    kinds = [type_of(r) for r in pushed]
    assert kinds.index(RDS) < kinds.index(CDS)


@pytest.mark.parametrize("mode", MODES)
def test_converged_means_nothing_in_flight_and_nothing_to_send(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    (rds,) = client.stream.on_snapshot(world({"r1": ("c1",)}, marker="m"))
    assert not client.stream.converged()
    assert client.stream.status().of_type(RDS).in_flight_nonce == rds.nonce
    client.ack(rds)
    assert client.stream.converged()
    assert client.stream.status().converged


@pytest.mark.parametrize("mode", MODES)
def test_exchange_log_records_requests_and_responses_in_order(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",)}))
    log = list(client.stream.exchanges)
    assert [e.seq for e in log] == sorted(e.seq for e in log)
    notes = [(e.direction, e.type_short, e.note) for e in log]
    assert ("response", "CDS", "") in notes
    assert ("request", "RDS", "ack") in notes


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_wildcard_subscription_is_still_answered(mode):
    """Found by the harness: with no clusters at all, a fresh Envoy's CDS request got no
    answer and Envoy waited out its initial_fetch_timeout."""
    client = Client(mode)
    client.stream.on_snapshot(Snapshot.from_messages([listener("L", None)]))
    (cds,) = client.request(CDS)
    assert type_of(cds) is CDS and names_of(cds) == []
    client.ack(cds)
    (lds,) = client.request(LDS)
    assert names_of(lds) == ["L"]


@pytest.mark.parametrize("mode", MODES)
def test_removals_wait_for_the_listeners_and_routes_that_named_them(mode):
    client = Client(mode)
    client.start(world({"r1": ("c1",), "r2": ("c2",)}))
    (lds,) = client.stream.on_snapshot(world({"r1": ("c1",)}))
    assert type_of(lds) is LDS
    assert client.stream.status().of_type(CDS).pending_removals == {"c2"}


@pytest.mark.parametrize("mode", MODES)
def test_mutant_removals_not_deferred_removes_the_cluster_first(mode):
    client = Client(mode, Mutants.of(["removals-not-deferred"]))
    client.start(world({"r1": ("c1",), "r2": ("c2",)}))
    pushed = client.stream.on_snapshot(world({"r1": ("c1",)}))
    kinds = [type_of(r) for r in pushed]
    # The Cluster goes while the Listener (and its RouteConfiguration) naming it is still held.
    assert kinds[0] is CDS and LDS in kinds
    if mode == "delta":
        assert list(pushed[0].removed_resources) == ["c2"]
        # Delta removes the endpoints and the RouteConfiguration without waiting too.
        removed = {type_of(r): list(r.removed_resources) for r in pushed}
        assert removed == {CDS: ["c2"], EDS: ["c2"], LDS: ["L-r2"], RDS: ["r2"]}
    else:
        assert names_of(pushed[0]) == ["c1"]
    # Updates keep their order: a new Cluster still goes before the route naming it.
    client = Client(mode, Mutants.of(["removals-not-deferred"]))
    client.start(world({"r1": ("c1",)}))
    assert [type_of(r) for r in client.stream.on_snapshot(world({"r1": ("c1", "c2")}))] == [CDS]


def _subscribed_to_some(mode: str, mutants: Mutants = Mutants()) -> dict[ResourceType, object]:
    """A client subscribed to c1 and r1, in a snapshot that also has the ClusterLoadAssignment
    "spare" (no Cluster uses it) and the RouteConfiguration r2 (no Listener names it)."""
    client = Client(mode, mutants)
    snapshot = world({"r1": ("c1",), "r2": ("c1",)}, listeners={"L-r1": "r1"})
    snapshot = snapshot.replacing(resource(load_assignment("spare", 8001)))
    return client.start(snapshot, clusters=["c1"], routes=["r1"])


@pytest.mark.parametrize("mode", MODES)
def test_route_and_endpoint_responses_carry_only_subscribed_names(mode):
    first = _subscribed_to_some(mode)
    assert names_of(first[EDS]) == ["c1"]
    assert names_of(first[RDS]) == ["r1"]


@pytest.mark.parametrize("mode", MODES)
def test_mutant_unrequested_resources_sends_every_route_and_endpoint(mode):
    first = _subscribed_to_some(mode, Mutants.of(["unrequested-resources"]))
    assert names_of(first[EDS]) == ["c1", "spare"]
    assert names_of(first[RDS]) == ["r1", "r2"]
    # Wildcard types are unchanged: they carry every name anyway.
    assert names_of(first[CDS]) == ["c1"]


def _second_response_at_one_version(mode: str, mutants: Mutants = Mutants()):
    """The client and two RDS responses at one version: r1, then r2 once it is asked for."""
    client = Client(mode, mutants)
    snapshot = world({"r1": ("c1",), "r2": ("c1",)}, listeners={"L-r1": "r1"})
    first = client.start(snapshot, routes=["r1"])[RDS]
    if mode == "delta":
        (second,) = client.request(RDS, ["r2"])
    else:
        (second,) = client.request(RDS, ["r1", "r2"], nonce=first.nonce)
    return client, first, second


def _repeat_first(client: Client, first) -> None:
    """A request quoting the first response's nonce, sent before the second response arrived
    (SotW: the same names again; Delta: a repeated ACK)."""
    if client.mode == "delta":
        client.stream.receive(delta_request(RDS, nonce=first.nonce))
    else:
        client.request(RDS, ["r1", "r2"], nonce=first.nonce)


@pytest.mark.parametrize("mode", MODES)
def test_every_response_has_its_own_nonce_and_an_old_nonce_is_no_ack(mode):
    client, first, second = _second_response_at_one_version(mode)
    assert first.nonce != second.nonce
    # A request quoting the first response (sent before the second arrived) is stale.
    _repeat_first(client, first)
    assert client.stream.status().of_type(RDS).in_flight_nonce == second.nonce
    assert client.stream.exchanges[-1].note == "stale"


@pytest.mark.parametrize("mode", MODES)
def test_mutant_nonce_from_version_reuses_the_nonce_and_misreads_an_old_request(mode):
    client, first, second = _second_response_at_one_version(
        mode, Mutants.of(["nonce-from-version"])
    )
    version = second.system_version_info if mode == "delta" else second.version_info
    assert first.nonce == second.nonce == version
    # The request quoting the first response now settles the second, which the client has
    # not even read.
    _repeat_first(client, first)
    assert client.stream.status().of_type(RDS).in_flight_nonce == ""
    assert client.stream.exchanges[-1].note == "ack"


@pytest.mark.parametrize("mode", MODES)
def test_a_new_stream_removes_no_cluster_before_it_knows_the_clients_routes(mode):
    """A reconnecting client still holds its old Listeners and routes; the server learns of
    them only when it subscribes (Delta: initial_resource_versions; SotW: the version it names,
    looked up in what the server sent it before). A Cluster the snapshot dropped meanwhile goes
    only once the client holds routes that no longer name it (found by the window probe)."""
    old, new = world({"r1": ("c1",)}), world({"r1": ("c2",)})
    served = ServedSets()
    before = Client(mode, served=served)
    first = before.start(old)
    client = Client(mode, served=served)
    client.stream.on_snapshot(new)
    if mode == "delta":
        held = {"c1": old.get(CDS, "c1").version}  # type: ignore[union-attr]
        (cds,) = client.stream.receive(delta_request(CDS, initial=held))
        assert list(cds.removed_resources) == []
    else:
        version = first[CDS].version_info  # type: ignore[attr-defined]
        (cds,) = client.stream.receive(sotw_request(CDS, version=version))
        assert names_of(cds) == ["c1", "c2"]  # the full set keeps c1 for now
    (eds,) = client.request(EDS, ["c2"])
    client.ack(cds)
    client.ack(eds)
    (lds,) = client.request(LDS)
    client.ack(lds)
    (rds,) = client.request(RDS, ["r1"])
    (removal,) = client.ack(rds)
    assert type_of(removal) is CDS
    if mode == "delta":
        assert list(removal.removed_resources) == ["c1"]
    else:
        assert names_of(removal) == ["c2"]


@pytest.mark.parametrize("mode", MODES)
def test_endpoints_no_cluster_names_are_answered_and_block_nothing(mode):
    """A subscription to a ClusterLoadAssignment that exists but that no Cluster names (a
    client asking on its own) must be answered, and must not hold Listeners and routes back."""
    snapshot = world({"r1": ("c1",)})
    extra = resource(load_assignment("lonely", 9090))
    snapshot = snapshot.replacing(extra)
    client = Client(mode)
    client.stream.on_snapshot(snapshot)
    (cds,) = client.request(CDS)
    (eds,) = client.request(EDS, ["c1", "lonely"])
    assert names_of(eds) == ["c1", "lonely"]
    client.ack(cds)
    client.ack(eds)
    (lds,) = client.request(LDS)
    assert type_of(lds) is LDS


def test_a_listener_removal_waits_for_clusters_like_any_listener_response():
    """SotW: a reconnecting client named the Listener set it holds; dropping one of them is a
    whole LDS response, which goes only after CDS and EDS (rule 4), like any other."""
    old = world({"r1": ("c1",), "r2": ("c1",)})
    new = world({"r1": ("c1",)})
    served = ServedSets()
    first = Client("sotw", served=served).start(old)
    client = Client("sotw", served=served)
    client.stream.on_snapshot(new)
    (cds,) = client.stream.receive(sotw_request(CDS, version=first[CDS].version_info))  # type: ignore[attr-defined]
    (eds,) = client.request(EDS, ["c1"])
    assert client.stream.receive(sotw_request(LDS, version=first[LDS].version_info)) == []  # type: ignore[attr-defined]
    client.ack(cds)
    (lds,) = client.ack(eds)
    assert type_of(lds) is LDS
