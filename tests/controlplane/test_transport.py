"""The control plane carries the xDS transport of its settings into every published snapshot."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from sut.controlplane import ControlPlane, ControlPlaneSettings, FailurePolicy, Outcome
from sut.translate import TranslateOptions
from sut.translate.envoy_protos import connection_managers
from sut.xds import ResourceType, SnapshotCache
from tests.controlplane.conftest import SITES
from tests.controlplane.manifests import world


@pytest.mark.parametrize("policy", list(FailurePolicy))
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_a_per_type_control_plane_publishes_per_type_sources(
    mode: str, policy: FailurePolicy
) -> None:
    options = TranslateOptions(readiness_port=0, transport="per-type", per_type_mode=mode)
    settings = ControlPlaneSettings(
        node_id="node", failure_policy=policy, translate_options=options
    )
    control_plane = ControlPlane(settings, SnapshotCache(), None)
    assert control_plane.apply(world(SITES)).outcome is Outcome.PUBLISHED
    snapshot = control_plane.published_snapshot
    assert snapshot is not None
    rds_clusters, eds_clusters = set(), set()
    for resource in snapshot.of_type(ResourceType.LISTENER).values():
        listener = resource.message()
        assert isinstance(listener, listener_pb2.Listener)
        for _, manager in connection_managers(listener):
            if manager.HasField("rds"):
                api = manager.rds.config_source.api_config_source
                rds_clusters |= {s.envoy_grpc.cluster_name for s in api.grpc_services}
    for resource in snapshot.of_type(ResourceType.CLUSTER).values():
        cluster = resource.message()
        assert isinstance(cluster, cluster_pb2.Cluster)
        api = cluster.eds_cluster_config.eds_config.api_config_source
        eds_clusters |= {s.envoy_grpc.cluster_name for s in api.grpc_services}
    assert rds_clusters == {options.rds_cluster}
    assert eds_clusters == {options.eds_cluster}
