"""Weighted backends through real Envoy (manifests/weights.yaml).

Spec (HTTPBackendRef / BackendRef.Weight, apis/v1): "Weight specifies the proportion of requests
forwarded to the referenced backend ... Weight is not a percentage and the sum of weights does
not need to equal 100. If only one backend is specified and it has a weight greater than 0,
100% of the traffic is forwarded to that backend. If weight is set to 0, no traffic should be
forwarded for this entry. If unspecified, weight defaults to 1." Conformance
HTTPRouteAllBackendsWeightZero: every weight 0 answers 500. HTTPBackendRef.Filters apply only
when the request is forwarded to that backend.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from tests.e2e.served import Served, served_manifest

GATEWAY = "default/split"
HOST = "canary.example.com"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("weights.yaml") as served:
        yield served


def _services(served: Served, path: str, count: int) -> Counter[str | None]:
    return Counter(served.get(GATEWAY, 80, HOST, path).service for _ in range(count))


def test_equal_weights_reach_both_backends(served: Served) -> None:
    seen = _services(served, "/even", 80)
    assert set(seen) == {"blue", "green"}
    # Binomial(80, 0.5): outside 20..60 with probability < 1e-5.
    assert 20 <= seen["blue"] <= 60, seen


def test_default_weights_are_equal(served: Served) -> None:
    assert set(_services(served, "/default-weights", 60)) == {"blue", "green"}


def test_weight_zero_gets_no_traffic(served: Served) -> None:
    assert _services(served, "/green-off", 40) == Counter({"blue": 40})


def test_all_weights_zero_answers_500(served: Served) -> None:
    for _ in range(5):
        reply = served.get(GATEWAY, 80, HOST, "/all-off")
        assert reply.status == 500, reply
        assert reply.echo is None


def test_backend_filters_apply_to_their_backend_only(served: Served) -> None:
    seen = set()
    for _ in range(40):
        reply = served.get(GATEWAY, 80, HOST, "/tagged")
        assert reply.status == 200, reply
        assert reply.service is not None
        seen.add(reply.service)
        assert reply.request_header("x-backend") == reply.service
        assert reply.header("x-served-by") == reply.service
    assert seen == {"blue", "green"}
