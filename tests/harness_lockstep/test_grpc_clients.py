"""Proxyless gRPC clients in the lockstep harness, against real Envoy, the real control plane and
gRPC's own xDS client: they converge, route as the model says, and a NACK shows in their CSDS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from harness.commands.check import (
    CheckOptions,
    describe_settings,
    load_replay,
    run_check,
    save_replay,
)
from harness.lockstep.invariants import grpc_violations
from harness.lockstep.invariants.grpc import csds_problems, pending
from harness.lockstep.machine import Failure
from harness.lockstep.operations import DeleteRoute
from harness.lockstep.session import Session
from harness.lockstep.stack import StackSettings
from harness.lockstep.worlds import PROBE_HOSTS, initial_world, manifests, to_resources
from harness.loopback.proxyless import CsdsResource, ProxylessClient
from model import GrpcCall, GrpcServed, GrpcStatus
from sut.translate import TranslateOptions, translate
from sut.xds import Resource, ResourceType, Snapshot

ONE_CLIENT = StackSettings(mode="sotw", grpc_clients=1)


@pytest.fixture
def session() -> Iterator[Session]:
    session = Session(ONE_CLIENT)
    try:
        session.start()
        yield session
    finally:
        session.stop()


def _client(session: Session) -> ProxylessClient:
    client = session.stack.grpc.clients[0].client
    assert client is not None
    return client


def test_envoys_resources_do_not_change_with_the_grpc_port():
    world = initial_world({"svc-a": ("svc-a-0",)})
    assert "grpc" not in manifests(world) and "grpc" in manifests(world, grpc=True)
    options = TranslateOptions(readiness_port=0)
    plain = translate(to_resources(world), options).xds
    with_grpc = translate(to_resources(world, grpc=True), options).xds
    assert plain == with_grpc


def test_the_header_names_the_grpc_clients():
    assert "1 gRPC client," in describe_settings(ONE_CLIENT)
    assert "gRPC" not in describe_settings(StackSettings())


def test_a_replay_file_carries_the_grpc_clients(tmp_path):
    path = save_replay(Failure(((DeleteRoute("route-1"),),), (), ()), ONE_CLIENT, tmp_path)
    settings, steps = load_replay(path)
    assert settings.grpc_clients == 1 and steps == [[DeleteRoute("route-1")]]
    assert (
        load_replay(save_replay(Failure((), (), ()), StackSettings(), tmp_path, "x.json"))[0]
        == StackSettings()
    )


LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def _published() -> Snapshot:
    cluster = cluster_pb2.Cluster(name="c", type=cluster_pb2.Cluster.EDS)
    return Snapshot.from_messages([cluster])


def test_convergence_asks_for_the_published_content_under_the_acked_version():
    snapshot = _published()
    body = snapshot.get(ResourceType.CLUSTER, "c").body  # type: ignore[union-attr]
    acked = CsdsResource(CLUSTER, "c", "v1", "ACKED")

    def sent(content: bytes | None):
        return lambda type_url, name, version: content if version == "v1" else None

    assert pending([acked], snapshot, sent(body)) == []
    assert pending([acked], snapshot, sent(b"older")) != []
    assert pending([CsdsResource(CLUSTER, "c", "", "REQUESTED")], snapshot, sent(body)) != []
    gone = CsdsResource(CLUSTER, "old", "v0", "ACKED")
    assert pending([gone], snapshot, sent(body)) == ["Cluster old: ACKED, not published"]
    # SotW never deletes a RouteConfiguration: one the snapshot lacks may stay as it was.
    assert pending([CsdsResource(ROUTE, "old", "v0", "ACKED")], snapshot, sent(body)) == []


def test_csds_problems_name_nacks_and_listeners_against_the_model():
    published = frozenset({"b.example.com"})
    assert (
        csds_problems(
            [
                CsdsResource(LISTENER, "b.example.com", "v", "ACKED"),
                CsdsResource(LISTENER, "c.example.com", "", "REQUESTED"),
                CsdsResource(LISTENER, "d.example.com", "", "DOES_NOT_EXIST"),
            ],
            published,
        )
        == []
    )
    found = csds_problems(
        [
            CsdsResource(CLUSTER, "c", "v", "NACKED", "LEAST_REQUEST"),
            CsdsResource(LISTENER, "b.example.com", "", "DOES_NOT_EXIST"),
            CsdsResource(LISTENER, "c.example.com", "v", "ACKED"),
        ],
        published,
    )
    assert found == [
        "Cluster c NACKED: LEAST_REQUEST",
        "Listener b.example.com is DOES_NOT_EXIST; the model publishes it",
        "Listener c.example.com is ACKED; the model does not publish it",
    ]


def test_the_grpc_port_is_backed_by_the_pods_grpc_servers(session: Session):
    stack = session.stack
    resources = stack.control_plane.store  # type: ignore[union-attr]
    service = resources.service("default", "svc-b")
    assert service is not None
    assert {port.name for port in service.ports} == {"http", "grpc"}
    (pod,) = stack.pods.backends("default", "svc-b")
    assert pod.grpc is not None and pod.grpc.running
    grpc_port = next(port for port in service.ports if port.name == "grpc")
    (endpoint,) = resources.service_endpoints("default", "svc-b", grpc_port.port)
    assert (endpoint.address, endpoint.port) == pod.grpc_endpoint
    (endpoint,) = resources.service_endpoints("default", "svc-b", 8080)
    assert (endpoint.address, endpoint.port) == pod.endpoint
    stack.stop_pods([pod.pod])
    assert not pod.grpc.running


def test_deleting_a_route_makes_its_hostnames_calls_unavailable(session: Session):
    assert session.check() == []
    call = GrpcCall("b.example.com", "/app/x")
    assert session.model.expect_grpc(call) == {GrpcServed("svc-b", "svc-b-0")}
    before = _client(session).call(call.host, 2.0, call.method)
    assert (before.code, before.pod) == ("OK", "svc-b-0")

    session.apply(DeleteRoute("route-1"))
    assert session.check() == []
    assert GrpcStatus("UNAVAILABLE") in session.model.expect_grpc(call)
    after = _client(session).call(call.host, 2.0, call.method)
    assert after.code == "UNAVAILABLE"
    # The step's exchange names the gRPC client's part of it (the LDS update that removed it).
    grpc_lines = [line for line in session.exchanges_of_step() if line.startswith("grpc client 0:")]
    assert any("LDS" in line for line in grpc_lines), grpc_lines


def test_a_cluster_grpc_must_nack_fails_the_csds_invariant(session: Session):
    assert session.check() == []
    stack = session.stack
    published = stack.published_proxyless_snapshot()
    assert published is not None
    node_id = stack.settings.proxyless_node_id
    assert node_id is not None
    clusters = published.of_type(ResourceType.CLUSTER)
    assert clusters
    replacements = []
    for resource in clusters.values():
        cluster = cluster_pb2.Cluster.FromString(resource.body)
        cluster.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST  # gRPC NACKs it
        replacements.append(Resource.from_message(cluster))
    stack.cache.set_snapshot(node_id, published.replacing(*replacements))

    found = grpc_violations(
        _client(session),
        name="grpc client 0",
        snapshot=stack.published_proxyless_snapshot(),
        model=session.model,
        hosts=PROBE_HOSTS,
        delivered=stack.grpc.clients[0].monitor.delivered,
    )
    csds = [violation for violation in found if violation.invariant == "grpc-csds"]
    assert csds, found
    assert csds[0].summary.startswith("grpc client 0: Cluster ")
    assert "NACKED" in csds[0].summary


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_check_passes_with_a_grpc_client(mode: str):
    stack = StackSettings(mode=mode, grpc_clients=1)
    result = run_check(CheckOptions(stack=stack, max_examples=3, steps=6, seed=20261202))
    assert result.passed, result
    assert result.steps > 0
