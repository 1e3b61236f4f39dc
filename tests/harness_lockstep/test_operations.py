"""Operations print readably and survive the replay-file round trip."""

from __future__ import annotations

import attrs
import pytest

from harness.lockstep.operations import (
    AddListener,
    CreateRoute,
    CutXds,
    DeleteRoute,
    ExtensionFault,
    ExtensionRecover,
    HoldXds,
    RemoveListener,
    RestartEnvoy,
    Resync,
    Scale,
    SetBackendPolicy,
    SetFailOpen,
    UpdateRoute,
)
from harness.lockstep.replay_files import decode_operations, encode_operations
from harness.lockstep.session import initial_pods
from harness.lockstep.worlds import LISTENERS, initial_world, to_resources
from model import Backend, Extension, HeaderMatch, Match, ModelState, Route, Rule

ROUTE = Route(
    "route-1",
    3,
    (
        Rule(
            (Match("Exact", "/app", (HeaderMatch("x-variant", "blue"),)),),
            (Backend("svc-a"), Backend("svc-b", 0)),
        ),
    ),
    hostnames=("*.example.com",),
    section="https-a",
)


def test_operations_round_trip_through_a_replay_file():
    operations = [
        CreateRoute(ROUTE),
        AddListener(LISTENERS["http-wild"]),
        Scale("svc-a", 0),
        ExtensionFault("hang", "PostTranslateModify"),
        SetFailOpen(True),
        SetBackendPolicy("Random"),
        SetBackendPolicy(None),
    ]
    assert decode_operations(encode_operations(operations)) == operations


def test_operations_describe_themselves_in_one_line():
    text = CreateRoute(ROUTE).describe()
    assert (
        "route-1" in text and "on listener https-a" in text and "Exact /app +x-variant=blue" in text
    )
    assert "svc-b weight 0" in text
    assert "\n" not in text


@pytest.mark.parametrize("text", ["{}", '[{"op": "no-such-op"}]', "not json"])
def test_a_malformed_replay_file_is_a_clear_error(text):
    with pytest.raises(ValueError, match="replay"):
        decode_operations(text)


def test_a_backend_policy_tunes_every_cluster_of_the_gateway_and_nothing_the_model_sees():
    world = initial_world({})
    plain, tuned = to_resources(world), to_resources(world, "Random")
    assert not plain.backend_traffic_policies
    (policy,) = tuned.backend_traffic_policies
    assert policy.load_balancer == "Random"
    assert (tuned.gateways, tuned.http_routes) == (plain.gateways, plain.http_routes)
    assert "load balancer Random" in SetBackendPolicy("Random").describe()


def _started() -> ModelState:
    return ModelState(extension=Extension()).started(initial_world(initial_pods()))


@pytest.mark.parametrize(
    "change",
    [
        CreateRoute(ROUTE),
        UpdateRoute(attrs.evolve(ROUTE, name="route-0", created=0)),
        DeleteRoute("route-0"),
        AddListener(LISTENERS["http-wild"]),
        RemoveListener("https-a"),
        Scale("svc-a", 2),
        Scale("svc-b", 0),
        SetBackendPolicy("Random"),
        ExtensionFault("hang", "PostTranslateModify"),
        SetFailOpen(True),
    ],
    ids=lambda change: change.kind,
)
def test_every_change_knows_the_operation_that_undoes_it(change):
    """A change and its undo bring the store (world) and the extension back; pods may differ
    (a pod is never started twice under one name), routes re-created get a new timestamp."""
    before = _started()
    undo = change.undo(before)
    assert undo is not None
    after = undo.on_model(change.on_model(before))
    assert after.extension == before.extension
    assert [s.name for s in after.world.services] == [s.name for s in before.world.services]
    assert [len(s.pods) for s in after.world.services] == [
        len(s.pods) for s in before.world.services
    ]
    assert after.world.listeners == before.world.listeners
    assert after.world.load_balancer == before.world.load_balancer
    strip = lambda world: [attrs.evolve(r, created=0) for r in world.routes]  # noqa: E731
    assert strip(after.world) == strip(before.world)


def test_operations_that_change_nothing_of_the_store_have_no_undo():
    before = _started()
    for operation in (Resync(), CutXds(), HoldXds(), RestartEnvoy(), ExtensionRecover(True)):
        assert operation.undo(before) is None
    failing = ExtensionFault("internal").on_model(before)
    assert ExtensionFault("hang").undo(failing) is None  # a recovery would clear both
