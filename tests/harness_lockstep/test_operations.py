"""Operations print readably and survive the replay-file round trip."""

from __future__ import annotations

import pytest

from harness.lockstep.operations import (
    AddListener,
    CreateRoute,
    ExtensionFault,
    Scale,
    SetBackendPolicy,
    SetFailOpen,
    decode_operations,
    encode_operations,
)
from harness.lockstep.worlds import LISTENERS, initial_world, to_resources
from model import Backend, HeaderMatch, Match, Route, Rule

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
