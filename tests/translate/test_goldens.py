"""Golden files: testdata/<case>.in.yaml -> <case>.out.yaml (xDS as protojson, plus statuses).

Regenerate with `pytest tests/translate --update-goldens`; never edit an .out.yaml by hand. The
same inputs are also handed to real Envoy (`envoy --mode validate`) to prove the protos load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from sut.gatewayapi import Endpoint, Resources, ServiceEndpoints, load_manifests, statuses_as_dict
from sut.translate import Translation, translate
from tests.translate.envoy_static import envoy_validate
from tests.translate.worlds import TESTDATA

CASES = sorted(path.name.removesuffix(".in.yaml") for path in TESTDATA.glob("*.in.yaml"))


def golden_world(case: str) -> Resources:
    """The manifests plus one endpoint per Service port (manifests carry no endpoints)."""
    resources = load_manifests(TESTDATA / f"{case}.in.yaml")
    port = 10000
    for item in resources.services:
        for service_port in item.ports:
            resources = resources.with_endpoints(
                ServiceEndpoints(
                    item.metadata.namespace,
                    item.metadata.name,
                    service_port.port,
                    (Endpoint("127.0.0.1", port),),
                )
            )
            port += 1
    return resources


def rendered(result: Translation) -> str:
    def messages(items: Any) -> list[dict[str, Any]]:
        return [json.loads(json_format.MessageToJson(item)) for item in items]

    document = {
        "xds": {
            "listeners": messages(result.xds.listeners),
            "routeConfigurations": messages(result.xds.route_configurations),
            "clusters": messages(result.xds.clusters),
            "clusterLoadAssignments": messages(result.xds.cluster_load_assignments),
            "secrets": messages(result.xds.secrets),
        },
        "statuses": statuses_as_dict(result.statuses),
    }
    return yaml.safe_dump(document, sort_keys=True, width=100)


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_goldens: bool) -> None:
    output = rendered(translate(golden_world(case)))
    golden = TESTDATA / f"{case}.out.yaml"
    if update_goldens:
        golden.write_text(output)
    assert golden.exists(), f"{golden.name} missing: run pytest tests/translate --update-goldens"
    assert output == golden.read_text(), f"{case}: output differs from {golden.name}"


@pytest.mark.envoy
@pytest.mark.parametrize("case", CASES)
def test_real_envoy_accepts_translation(case: str, tmp_path: Path) -> None:
    completed = envoy_validate(translate(golden_world(case)).xds, tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
