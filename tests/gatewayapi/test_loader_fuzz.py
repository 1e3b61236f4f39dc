"""The loader never raises anything but ManifestError, whatever it is fed: generated YAML text,
raw bytes, real manifests edited at random (lines dropped, doubled, re-indented), and generated
objects of every kind. A few hundred examples per test under the dev and ci profiles, 10,000
under `deep` (`HYPOTHESIS_PROFILE=deep`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sut.errors import ManifestError
from sut.gatewayapi import load_manifests, parse_documents

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(
    [*ROOT.glob("tests/translate/testdata/*.in.yaml"), *ROOT.glob("tests/e2e/manifests/*.yaml")]
)
EXAMPLES = 10_000 if (settings.default and settings.default.max_examples >= 1000) else 300
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
KINDS = [
    ("gateway.networking.k8s.io/v1", "GatewayClass"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("gateway.networking.k8s.io/v1beta1", "ReferenceGrant"),
    ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("v1", "Namespace"),
    ("v1", "List"),
]


def _loads_or_refuses(text: str) -> None:
    try:
        parse_documents(text, source="fuzz.yaml", skip_unrelated=True)
    except ManifestError as error:
        assert error.reason


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    _loads_or_refuses(text)


@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_in_a_file(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "manifest.yaml"
    path.write_bytes(data)
    try:
        load_manifests(path, skip_unrelated=True)
    except ManifestError as error:
        assert "manifest.yaml" in str(error)


_EDIT = st.tuples(
    st.sampled_from(["drop", "double", "indent", "dedent", "insert", "swap"]),
    st.integers(0, 10_000),
    st.text(alphabet=" -:#{}[]'\"\t\n*&!|>%@`a0", max_size=4),
)


@FUZZ
@given(st.sampled_from(MANIFESTS), st.lists(_EDIT, min_size=1, max_size=4))
def test_real_manifests_edited_at_random(manifest: Path, edits: list[tuple[str, int, str]]) -> None:
    lines = manifest.read_text().splitlines()
    for edit, where, text in edits:
        if not lines:
            break
        at = where % len(lines)
        if edit == "drop":
            del lines[at]
        elif edit == "double":
            lines.insert(at, lines[at])  # a duplicate key, or a missing '---'
        elif edit == "indent":
            lines[at] = "  " + lines[at]
        elif edit == "dedent":
            lines[at] = lines[at].removeprefix("  ")
        elif edit == "insert":
            column = where % (len(lines[at]) + 1)
            lines[at] = lines[at][:column] + text + lines[at][column:]
        else:
            other = (at + 1) % len(lines)
            lines[at], lines[other] = lines[other], lines[at]
    _loads_or_refuses("\n".join(lines) + "\n")


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.sampled_from(["", "/", "*", "gw", "default", "HTTP", "HTTPS", "Exact", "PathPrefix", "80"]),
    st.text(max_size=10),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "metadata",
                    "spec",
                    "name",
                    "namespace",
                    "listeners",
                    "rules",
                    "parentRefs",
                    "hostnames",
                    "matches",
                    "path",
                    "type",
                    "value",
                    "port",
                    "protocol",
                    "backendRefs",
                    "items",
                    "tls",
                    "allowedRoutes",
                    "targetRef",
                    "loadBalancer",
                ]
            )
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(KINDS), _TREES), max_size=3))
def test_generated_objects_of_every_kind(documents: list[tuple[tuple[str, str], Any]]) -> None:
    bodies = []
    for (api_version, kind), tree in documents:
        body = tree if isinstance(tree, dict) else {"spec": tree}
        bodies.append({"apiVersion": api_version, "kind": kind, **body})
    _loads_or_refuses(yaml.safe_dump_all(bodies))
