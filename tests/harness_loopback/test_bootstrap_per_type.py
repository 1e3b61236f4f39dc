"""The per-type transport option of `AdsServer`: one gRPC cluster and stream per type, no ADS."""

from __future__ import annotations

import pytest

from harness.loopback import AdsServer, DirectResponseListener, EnvoyBootstrap, validate_bootstrap
from harness.loopback.bootstrap import PER_TYPE_CLUSTERS, XDS_CLUSTER


def per_type(mode: str) -> EnvoyBootstrap:
    return EnvoyBootstrap(
        node_id="validate",
        ads=AdsServer("127.0.0.1", 9, mode=mode, transport="per-type"),  # type: ignore[arg-type]
        static_listeners=(DirectResponseListener("direct"),),
    )


@pytest.mark.parametrize(
    ("mode", "api_type", "node_once"), [("delta", "DELTA_GRPC", True), ("sotw", "GRPC", False)]
)
def test_per_type_bootstrap_document(mode: str, api_type: str, node_once: bool) -> None:
    document = per_type(mode).to_dict()
    dynamic = document["dynamic_resources"]
    assert "ads_config" not in dynamic
    for key, short_name in (("lds_config", "LDS"), ("cds_config", "CDS")):
        api = dynamic[key]["api_config_source"]
        assert api["api_type"] == api_type
        assert api["set_node_on_first_message_only"] is node_once
        assert (
            api["grpc_services"][0]["envoy_grpc"]["cluster_name"] == PER_TYPE_CLUSTERS[short_name]
        )
        assert dynamic[key]["initial_fetch_timeout"] == "15s"
    clusters = document["static_resources"]["clusters"]
    assert [c["name"] for c in clusters] == list(PER_TYPE_CLUSTERS.values())
    for cluster in clusters:
        assert cluster["load_assignment"]["cluster_name"] == cluster["name"]
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        assert endpoint["endpoint"]["address"]["socket_address"]["port_value"] == 9


def test_ads_stays_the_default() -> None:
    document = EnvoyBootstrap(node_id="n", ads=AdsServer("127.0.0.1", 9)).to_dict()
    assert [c["name"] for c in document["static_resources"]["clusters"]] == [XDS_CLUSTER]
    assert document["dynamic_resources"]["lds_config"]["ads"] == {}


def test_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        AdsServer("127.0.0.1", 9, transport="rest")  # type: ignore[arg-type]


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_validates_per_type_bootstrap(mode: str) -> None:
    assert "OK" in validate_bootstrap(per_type(mode))
