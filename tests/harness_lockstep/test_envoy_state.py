"""Comparing what Envoy holds with a snapshot, without Envoy: the dump fields are built from a
snapshot the way Envoy's `/config_dump?resource=...` lists them."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format

from harness.lockstep import envoy_state
from harness.lockstep.envoy_state import (
    SECONDS_PER_RESOURCE,
    EnvoyView,
    read_envoy_view,
    snapshot_differences,
)
from harness.loopback import AdminError
from sut.xds import Resource, ResourceType, Snapshot
from tests.xds.builders import cluster, load_assignment, world

CLUSTERS = tuple(f"c{i}" for i in range(2500))
"""5,002 resources with their ClusterLoadAssignments: more than a cache of 4,096 held."""


def _json(resource: Resource) -> dict[str, Any]:
    document = json_format.MessageToDict(resource.message(), preserving_proto_field_name=True)
    return {"@type": resource.type.type_url, **document}


def _dump_fields(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    """The config_dump fields of an Envoy holding exactly `snapshot`."""
    of = snapshot.of_type
    return {
        "dynamic_listeners": [
            {"name": name, "active_state": {"version_info": "1", "listener": _json(listener)}}
            for name, listener in of(ResourceType.LISTENER).items()
        ],
        "dynamic_warming_clusters": [],
        "dynamic_active_clusters": [
            {"version_info": "1", "cluster": _json(item)}
            for item in of(ResourceType.CLUSTER).values()
        ],
        "dynamic_route_configs": [
            {"version_info": "1", "route_config": _json(item)}
            for item in of(ResourceType.ROUTE).values()
        ],
        "dynamic_endpoint_configs": [
            {"endpoint_config": _json(item)} for item in of(ResourceType.ENDPOINT).values()
        ],
        "dynamic_active_secrets": [],
    }


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return world(
        {"rc": CLUSTERS}, endpoints={name: (8000 + i % 100,) for i, name in enumerate(CLUSTERS)}
    )


@pytest.fixture(scope="module")
def held(snapshot: Snapshot) -> EnvoyView:
    return EnvoyView.from_fields(_dump_fields(snapshot))


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[Resource]:
    """Every resource whose expected form is computed, in order (with a fresh cache)."""
    converted: list[Resource] = []
    convert = envoy_state._expected_form

    def counting(resource: Resource) -> Any:
        converted.append(resource)
        return convert(resource)

    monkeypatch.setattr(envoy_state, "_FORMS", envoy_state._ExpectedForms())
    monkeypatch.setattr(envoy_state, "_expected_form", counting)
    return converted


def test_an_envoy_holding_the_snapshot_has_no_differences(snapshot, held):
    assert snapshot_differences(held, snapshot) == []


@pytest.mark.parametrize(
    ("replacement", "problem"),
    [
        (cluster("c7", connect_timeout_ms=300), "cluster 'c7' differs from the snapshot's"),
        (
            load_assignment("c7", 8007, 9999),
            "ClusterLoadAssignment 'c7': Envoy has [('127.0.0.1', 8007)], the snapshot"
            " [('127.0.0.1', 8007), ('127.0.0.1', 9999)]",
        ),
    ],
)
def test_one_resource_changed_in_the_snapshot_but_not_sent_is_a_difference(
    snapshot, held, replacement, problem
):
    assert snapshot_differences(held, snapshot.replacing(Resource.from_message(replacement))) == [
        problem
    ]


def test_one_route_changed_in_the_snapshot_but_not_sent_is_a_difference(snapshot, held):
    message = snapshot.get(ResourceType.ROUTE, "rc").message()
    message.virtual_hosts[0].routes[1234].match.prefix = "/changed"
    changed = snapshot.replacing(Resource.from_message(message))
    assert snapshot_differences(held, changed) == [
        "RouteConfiguration 'rc' differs from the snapshot's"
    ]


def test_each_resource_is_converted_once_however_many_the_snapshot_holds(
    snapshot, held, conversions
):
    assert len(snapshot.resources) > 4096
    assert snapshot_differences(held, snapshot) == []
    first = len(conversions)
    assert first == len(snapshot.resources)
    assert snapshot_differences(held, snapshot) == []
    assert len(conversions) == first

    changed = snapshot.replacing(Resource.from_message(cluster("c7", connect_timeout_ms=300)))
    assert snapshot_differences(held, changed) == ["cluster 'c7' differs from the snapshot's"]
    assert [(r.type, r.name) for r in conversions[first:]] == [(ResourceType.CLUSTER, "c7")]


def test_the_forms_kept_are_those_of_the_last_two_snapshots(snapshot, held, conversions):
    changed = snapshot.replacing(Resource.from_message(cluster("c7", connect_timeout_ms=300)))
    again = snapshot.replacing(Resource.from_message(cluster("c7", connect_timeout_ms=400)))
    for compared in (snapshot, changed, again):
        snapshot_differences(held, compared)
    assert len(envoy_state._FORMS) == len(snapshot.resources) + 1  # both changed c7s
    del conversions[:]
    snapshot_differences(held, snapshot)
    assert [(r.type, r.name) for r in conversions] == [(ResourceType.CLUSTER, "c7")]


def _whole_dump(fields: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A whole /config_dump holding these fields, each in its section."""
    sections = {
        "ListenersConfigDump": ("dynamic_listeners",),
        "ClustersConfigDump": ("dynamic_active_clusters", "dynamic_warming_clusters"),
        "RoutesConfigDump": ("dynamic_route_configs",),
        "EndpointsConfigDump": ("dynamic_endpoint_configs",),
        "SecretsConfigDump": ("dynamic_active_secrets",),
    }
    return {
        "configs": [
            {
                "@type": f"type.googleapis.com/envoy.admin.v3.{kind}",
                **{field: fields[field] for field in names if fields[field]},
            }
            for kind, names in sections.items()
        ]
    }


class _Admin:
    timeout = 2.0

    def __init__(self, dump: dict[str, Any]) -> None:
        self.dump = dump
        self.calls: list[tuple[str | None, bool, float | None]] = []

    def config_dump(self, resource=None, mask=None, include_eds=False, *, timeout=None):
        self.calls.append((resource, include_eds, timeout))
        return self.dump


def test_a_view_is_one_whole_dump_read_with_a_timeout_that_grows_with_the_snapshot(snapshot):
    admin = _Admin(_whole_dump(_dump_fields(snapshot)))
    view = read_envoy_view(admin, len(snapshot.resources))  # type: ignore[arg-type]
    assert snapshot_differences(view, snapshot) == []
    assert admin.calls == [(None, True, 2.0 + SECONDS_PER_RESOURCE * len(snapshot.resources))]


def test_a_dump_of_an_unexpected_shape_is_an_admin_error():
    admin = _Admin({"configs": [{"dynamic_active_clusters": [{"no_cluster": {}}]}]})
    with pytest.raises(AdminError, match="unexpected JSON shape"):
        read_envoy_view(admin)  # type: ignore[arg-type]


def test_a_whole_dump_and_its_fields_give_the_same_view(snapshot, held):
    assert EnvoyView.from_config_dump(_whole_dump(_dump_fields(snapshot))) == held
