"""Decoders derived from the value classes: keys, nulls, types, paths, and no tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sut.errors import ManifestError
from sut.gatewayapi import (
    BackendRef,
    HTTPRoute,
    Listener,
    ObjectMeta,
    RouteNamespaces,
    load_manifests,
)
from sut.gatewayapi.decode import Invalid, decode, document_key
from sut.gatewayapi.schema import FieldError

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted(
    [*ROOT.glob("tests/translate/testdata/*.in.yaml"), *ROOT.glob("tests/e2e/manifests/*.yaml")]
)


def test_document_keys_are_camel_case_without_the_keyword_guard() -> None:
    assert document_key("section_name") == "sectionName"
    assert document_key("from_") == "from"
    assert document_key("port") == "port"


def test_a_class_is_decoded_with_its_own_defaults_and_null_means_unset() -> None:
    assert decode(BackendRef, {"name": "web", "port": 80, "weight": None}) == BackendRef(
        "web", port=80
    )
    assert decode(RouteNamespaces, {"from": "All"}) == RouteNamespaces("All")


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        ({"name": "web", "port": "80"}, ("port",), "must be an integer, got string"),
        ({"name": "web", "port": True}, ("port",), "must be an integer, got boolean"),
        ({"name": 7, "port": 80}, ("name",), "must be a string, got integer"),
        ({"port": 80}, ("name",), "is required"),
        ({"name": "web", "port": 80, "weigth": 2}, ("weigth",), "unknown field"),
        ({"name": "web", "port": 80, "filters": {}}, ("filters",), "must be a list, got object"),
        ({"name": "web", "port": 80, "filters": [{"type": "CORS"}]}, ("filters", 0, "cors"), ""),
        ({"name": "web", "port": 80, "weight": -1}, ("weight",), "must be >= 0, got -1"),
        ({"name": "web"}, (), "must have port for Service reference"),
    ],
)
def test_failures_carry_the_path_inside_the_document(
    document: dict[str, Any], path: tuple[str | int, ...], message: str
) -> None:
    with pytest.raises(Invalid) as caught:
        decode(BackendRef, document)
    assert caught.value.path == path
    assert message in caught.value.message


def test_the_same_rule_names_the_attribute_when_python_builds_the_value() -> None:
    with pytest.raises(FieldError, match=r"^hostname: must be a lowercase RFC 1123") as caught:
        Listener(name="http", port=80, protocol="HTTP", hostname="Foo.example")
    assert caught.value.field == "hostname"
    with pytest.raises(FieldError, match=r"^hostnames\[1\]: IP addresses are not allowed"):
        HTTPRoute(ObjectMeta("r", "default"), hostnames=("a.example", "10.0.0.1"))


def _replace(body: Any, where: int, new: Any) -> tuple[Any, int]:
    """`body` with its `where`-th node (depth first) replaced by `new`; the nodes still to go."""
    if where == 0:
        return new, -1
    where -= 1
    if isinstance(body, dict):
        result = {}
        for key, value in body.items():
            result[key], where = _replace(value, where, new) if where >= 0 else (value, where)
        return result, where
    if isinstance(body, list):
        items = []
        for value in body:
            item, where = _replace(value, where, new) if where >= 0 else (value, where)
            items.append(item)
        return items, where
    return body, where


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**33), 2**33),
    st.sampled_from(["", "/", "a", "*", "Exact", "RoundRobin", "HTTP", "10.0.0.1", "5s"]),
    st.text(max_size=8),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifest=st.sampled_from(MANIFESTS), where=st.integers(1, 400), new=_VALUES)
def test_any_corrupted_manifest_loads_or_is_refused_with_a_manifest_error(
    manifest: Path, where: int, new: Any
) -> None:
    documents = [doc for doc in yaml.safe_load_all(manifest.read_text()) if doc is not None]
    corrupted, _ = _replace(documents, where, new)
    text = yaml.safe_dump_all(corrupted)
    try:
        load_manifests(text, skip_unrelated=True)
    except ManifestError as error:
        assert error.reason and "Traceback" not in str(error)


def test_the_corpus_of_manifests_loads() -> None:
    assert MANIFESTS
    for manifest in MANIFESTS:
        load_manifests(manifest, skip_unrelated=True)
