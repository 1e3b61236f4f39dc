"""Manifest text that would crash a plain YAML reader, or silently merge two objects, is refused
with a ManifestError naming the document and the line."""

from __future__ import annotations

import pytest

from sut.errors import ManifestError
from sut.gatewayapi import load_manifests, parse_documents
from sut.gatewayapi.yaml_reader import MAX_DEPTH

ROUTE = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: a
spec:
  parentRefs: [{name: gw}]
"""


def test_a_missing_document_separator_is_a_duplicate_key_not_a_merge():
    merged = ROUTE + ROUTE.replace("name: a", "name: b")  # no '---' between them
    with pytest.raises(ManifestError, match=r"duplicate key 'apiVersion' \(first on line 1\)"):
        parse_documents(merged, source="routes.yaml")
    assert len(parse_documents(ROUTE + "---\n" + ROUTE.replace("name: a", "name: b"))) == 2


def test_a_duplicate_key_in_a_flow_mapping_is_refused():
    with pytest.raises(ManifestError, match="duplicate key 'name'"):
        parse_documents("metadata: {name: a, name: b}\n")


@pytest.mark.parametrize(
    "text",
    ["[" * 5000, "a:\n" + "".join("  " * i + "- \n" for i in range(1, 3000))],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused_before_it_recurses(text):
    with pytest.raises(ManifestError, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_documents(text, source="deep.yaml")


def test_nesting_within_the_bound_loads():
    text = "a: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    with pytest.raises(ManifestError) as raised:  # loads as YAML, then is not a Gateway object
        parse_documents(text)
    assert "nested" not in str(raised.value)


def test_a_file_that_is_not_utf8_names_the_byte_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(ROUTE.encode() + b"  labels: {team: caf\xe9}\n")
    with pytest.raises(ManifestError, match=r"latin1.yaml: not UTF-8: byte 0xe9 .*\(line 7\)"):
        load_manifests(path)
