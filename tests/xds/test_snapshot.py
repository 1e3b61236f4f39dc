"""Snapshots as values, content-hash versions, and the one consistency rule."""

from __future__ import annotations

import pytest

from sut.xds import Resource, ResourceType, Snapshot, consistency_errors
from tests.xds.builders import cluster, listener, load_assignment, route_configuration, world


def test_equal_content_gives_equal_snapshots_and_versions():
    first, second = world({"r1": ("c1",)}), world({"r1": ("c1",)})
    assert first == second
    assert first.version == second.version
    assert world({"r1": ("c1",)}, marker="x").version != first.version


def test_resource_version_is_a_content_hash():
    a = Resource.from_message(cluster("c1"))
    b = Resource.from_message(cluster("c1", connect_timeout_ms=900))
    assert a.version == Resource.from_message(cluster("c1")).version
    assert a.version != b.version
    assert a != b


def test_type_version_changes_only_with_that_type():
    before = world({"r1": ("c1",)})
    after = world({"r1": ("c1",)}, marker="new")
    assert before.type_version(ResourceType.CLUSTER) == after.type_version(ResourceType.CLUSTER)
    assert before.type_version(ResourceType.ROUTE) != after.type_version(ResourceType.ROUTE)


def test_a_consistent_snapshot_has_no_errors():
    assert consistency_errors(world({"r1": ("c1", "c2"), "r2": ("c2",)})) == []


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([listener("L", "missing")], "LDS 'L' references RDS 'missing'"),
        ([route_configuration("r", "c9")], "RDS 'r' references CDS 'c9'"),
        ([cluster("c1")], "CDS 'c1' references EDS 'c1'"),
    ],
    ids=["listener-names-absent-route", "route-names-absent-cluster", "cluster-without-endpoints"],
)
def test_every_dangling_reference_is_reported(messages, expected):
    errors = consistency_errors(Snapshot.from_messages(messages))
    assert any(expected in error for error in errors), errors


def test_inline_route_configs_reference_their_clusters():
    errors = consistency_errors(Snapshot.from_messages([listener("L", None)]))
    assert errors == []


def test_two_different_resources_with_one_name_are_refused():
    with pytest.raises(ValueError, match="two different CDS resources named 'c1'"):
        Snapshot.from_messages([cluster("c1"), cluster("c1", connect_timeout_ms=5)])


def test_resources_roundtrip_and_know_their_type():
    assignment = load_assignment("c1", 8080)
    resource = Resource.from_message(assignment)
    assert resource.type is ResourceType.ENDPOINT
    assert resource.name == "c1"
    assert resource.message() == assignment
    assert resource.to_any().type_url == ResourceType.ENDPOINT.type_url


def test_replacing_and_removing_resources():
    snapshot = world({"r1": ("c1",)})
    changed = snapshot.replacing(Resource.from_message(route_configuration("r1", "c1", marker="m")))
    assert changed.get(ResourceType.ROUTE, "r1") != snapshot.get(ResourceType.ROUTE, "r1")
    assert changed.without(ResourceType.ROUTE, "r1").get(ResourceType.ROUTE, "r1") is None


def test_relabelling_keeps_content_and_references_and_changes_only_versions():
    snapshot = world({"r1": ("c1",)})
    relabelled = snapshot.relabelled(lambda r: f"{r.type.short_name}-1")
    assert relabelled == snapshot  # equality is content
    assert relabelled.version != snapshot.version
    assert relabelled.type_version(ResourceType.ROUTE) != snapshot.type_version(ResourceType.ROUTE)
    for resource in snapshot:
        copy = relabelled.get(resource.type, resource.name)
        assert copy is not None and copy.version == f"{resource.type.short_name}-1"
        assert copy.body == resource.body and copy.references == resource.references
    # Equal labels give equal versions whatever the content: the scheme decides what they mean.
    changed = world({"r1": ("c1",)}, marker="new").relabelled(lambda r: f"{r.type.short_name}-1")
    assert changed != relabelled and changed.version == relabelled.version


def test_a_version_label_must_not_be_empty():
    with pytest.raises(ValueError, match="must not be empty"):
        Resource.from_message(cluster("c1")).relabelled("")
