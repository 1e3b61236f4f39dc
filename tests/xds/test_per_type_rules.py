"""Per-type streams on the sans-IO core: one type each, no cross-type gates, other types refused."""

from __future__ import annotations

import pytest

from sut.errors import RemoteProtocolError
from sut.mutants import MUTANTS, Mutant, Mutants
from sut.xds import DeltaStream, ResourceType, SotwStream, ordering
from sut.xds.stream import AdsStream
from tests.xds.builders import delta_request, names_of, sotw_request, world

LDS, RDS, CDS, EDS = (
    ResourceType.LISTENER,
    ResourceType.ROUTE,
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
)
MODES = ["delta", "sotw"]


def stream_of(mode: str, *types: ResourceType) -> AdsStream:
    stream_class = DeltaStream if mode == "delta" else SotwStream
    return stream_class(types=frozenset(types) if types else None)


def request(mode: str, kind: ResourceType, names: tuple[str, ...] = (), nonce: str = "") -> object:
    if mode == "delta":
        return delta_request(kind, names, nonce=nonce)
    return sotw_request(kind, names, nonce=nonce)


def removed_by(mode: str, response: object) -> list[str]:
    """The Cluster names a CDS response removes (Delta says so; SotW leaves them out)."""
    if mode == "delta":
        return sorted(response.removed_resources)  # type: ignore[attr-defined]
    return sorted({"a", "b"} - set(names_of(response)))


def test_within_keeps_only_the_rows_of_served_types() -> None:
    row = ordering.REMOVALS[EDS]
    assert ordering.within(row, None) == row
    assert ordering.within(row, frozenset({EDS})) == ordering.Waits()
    assert ordering.within(ordering.UPDATES[RDS], frozenset({RDS, LDS})) == ordering.Waits(
        sent=(LDS,)
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_per_type_stream_serves_its_type_without_waiting_for_others(mode: str) -> None:
    snapshot = world({"web": ("a",)})
    ads = stream_of(mode)
    ads.on_snapshot(snapshot)
    assert len(ads.receive(request(mode, CDS))) == 1  # in flight, not ACKed
    assert ads.receive(request(mode, LDS)) == []  # ADS: LDS waits for CDS to be ACKed
    for kind, names in ((LDS, ()), (RDS, ("web",)), (EDS, ("a",))):
        own = stream_of(mode, kind)
        own.on_snapshot(snapshot)
        (response,) = own.receive(request(mode, kind, names))
        assert ResourceType.from_type_url(response.type_url) is kind  # type: ignore[attr-defined]
        assert own.converged() is False  # in flight until ACKed


@pytest.mark.parametrize("mode", MODES)
def test_removals_on_a_per_type_stream_wait_for_no_other_type(mode: str) -> None:
    before, after = world({"web": ("a", "b")}), world({"web": ("a",)})
    for types, removed in (((), []), ((CDS,), ["b"])):
        stream = stream_of(mode, *types)
        stream.on_snapshot(before)
        (cds,) = stream.receive(request(mode, CDS))
        assert names_of(cds) == ["a", "b"]
        assert stream.receive(request(mode, CDS, nonce=cds.nonce)) == []  # type: ignore[attr-defined]
        responses = stream.on_snapshot(after)
        # ADS: a Cluster goes only once LDS has settled, and this client never opened LDS.
        assert [removed_by(mode, r) for r in responses] == ([removed] if removed else [])


@pytest.mark.parametrize("mode", MODES)
def test_a_request_for_another_type_is_the_clients_protocol_violation(mode: str) -> None:
    stream = stream_of(mode, CDS)
    stream.on_snapshot(world({"web": ("a",)}))
    with pytest.raises(RemoteProtocolError, match="LDS request on a CDS stream"):
        stream.receive(request(mode, LDS))


@pytest.mark.parametrize("mode", MODES)
def test_status_says_which_types_a_stream_serves(mode: str) -> None:
    stream = stream_of(mode, RDS)
    stream.on_snapshot(world({"web": ("a",)}))
    (rds,) = stream.receive(request(mode, RDS, ("web",)))
    # An ACK: SotW repeats its names, Delta changes no subscription.
    names = ("web",) if mode == "sotw" else ()
    assert stream.receive(request(mode, RDS, names, nonce=rds.nonce)) == []  # type: ignore[attr-defined]
    status = stream.status()
    assert status.serves == frozenset({"RDS"})
    assert status.aggregated is False
    assert [t.type_short for t in status.types] == ["RDS"]
    assert status.converged
    aggregated = stream_of(mode).status()
    assert aggregated.aggregated and aggregated.serves == frozenset(
        {"CDS", "EDS", "LDS", "RDS", "SDS"}
    )


def test_a_single_type_stream_takes_a_request_without_type_url() -> None:
    stream = stream_of("sotw", EDS)
    stream.on_snapshot(world({"web": ("a",)}))
    unnamed = sotw_request(EDS, ("a",))
    unnamed.type_url = ""
    (response,) = stream.receive(unnamed)
    assert names_of(response) == ["a"]
    with pytest.raises(RemoteProtocolError, match="type_url"):
        stream_of("sotw").receive(unnamed)


@pytest.mark.parametrize("mode", MODES)
def test_an_updated_cluster_on_a_cds_stream_marks_nothing_it_does_not_serve(mode: str) -> None:
    stream = stream_of(mode, CDS)
    stream.on_snapshot(world({"web": ("a",)}))
    (cds,) = stream.receive(request(mode, CDS))
    stream.receive(request(mode, CDS, nonce=cds.nonce))  # type: ignore[attr-defined]
    (update,) = stream.on_snapshot(world({"web": ("a",)}, cluster_timeouts={"a": 500}))
    assert names_of(update) == ["a"]
    assert not stream.subscription(EDS).opened


ADS_ONLY_STREAM_MUTANTS = [
    Mutant.UNORDERED_PUSH,
    Mutant.REMOVALS_NOT_DEFERRED,
    Mutant.WARMING_CLUSTER_STARVED,
    Mutant.EDS_NOT_RESENT_ON_CDS,
]


def transcript(mode: str, kind: ResourceType, names: tuple[str, ...], mutants: Mutants) -> list:
    """A per-type stream's responses over a world that adds, changes and removes everything."""
    stream_class = DeltaStream if mode == "delta" else SotwStream
    stream = stream_class(types=frozenset({kind}), mutants=mutants)
    stream.on_snapshot(world({"web": ("a", "b")}))
    sent = []
    (first,) = stream.receive(request(mode, kind, names))
    sent.append(first)
    for snapshot in (
        world({"web": ("a",)}, cluster_timeouts={"a": 500}),
        world({"web": ("a", "c")}, endpoints={"a": (9000,)}),
        world({}, listeners={}),
    ):
        acked = request(mode, kind, names if mode == "sotw" else (), nonce=sent[-1].nonce)
        stream.receive(acked)
        sent += stream.on_snapshot(snapshot)
    return [(names_of(r), getattr(r, "removed_resources", None)) for r in sent]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", [CDS, EDS, LDS, RDS], ids=lambda k: k.short_name)
def test_the_ads_only_mutants_change_nothing_on_a_per_type_stream(
    mode: str, kind: ResourceType
) -> None:
    """The kill table's `transports`: these mechanisms have nothing to act on per type."""
    names = {CDS: (), LDS: (), EDS: ("a", "b", "c"), RDS: ("web",)}[kind]
    for mutant in ADS_ONLY_STREAM_MUTANTS:
        assert MUTANTS[mutant].transports == frozenset({"ads"})
        correct = transcript(mode, kind, names, Mutants())
        assert len(correct) >= 2
        assert transcript(mode, kind, names, Mutants.of([mutant])) == correct, mutant


def test_a_per_type_stream_of_no_type_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one type"):
        SotwStream(types=frozenset())
