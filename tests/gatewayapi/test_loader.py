"""Loading manifests: CRD defaults, and errors that name the document and the field."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest

from sut.errors import ManifestError
from sut.gatewayapi import (
    AllowedRoutes,
    BackendRef,
    HTTPRouteRule,
    ParentReference,
    PathMatch,
    Resources,
    RouteMatch,
    RouteNamespaces,
    load_manifests,
)

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: eg
  namespace: infra
spec:
  gatewayClassName: eg
  listeners:
  - name: http
    protocol: HTTP
    port: 80
"""


def route(spec: str, name: str = "store") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata:\n  name: {name}\nspec:\n{body}\n"
    )


def test_defaults_follow_the_crds() -> None:
    resources = load_manifests(
        GATEWAY
        + "---\n"
        + route(
            """
            parentRefs:
            - name: eg
              namespace: infra
            rules:
            - backendRefs:
              - name: store-v1
                port: 8080
            - matches:
              - headers:
                - name: version
                  value: v2
            """
        )
    )
    loaded = resources.http_route("default", "store")
    assert loaded is not None
    assert loaded.parent_refs == (ParentReference(name="eg", namespace="infra"),)
    assert loaded.rules[0].matches == (RouteMatch(path=PathMatch("PathPrefix", "/")),)
    assert loaded.rules[0].backend_refs == (BackendRef(name="store-v1", port=8080, weight=1),)
    assert loaded.rules[1].matches[0].path == PathMatch("PathPrefix", "/")
    assert loaded.rules[1].matches[0].headers[0].type == "Exact"
    gateway = resources.gateway("infra", "eg")
    assert gateway is not None
    assert gateway.listeners[0].allowed_routes == AllowedRoutes(RouteNamespaces("Same"))


def test_route_without_rules_gets_the_default_rule() -> None:
    resources = load_manifests(route("parentRefs:\n- name: eg"))
    loaded = resources.http_route("default", "store")
    assert loaded is not None and loaded.rules == (HTTPRouteRule(),)


def test_timestamp_and_generation_are_kept_comparable() -> None:
    resources = load_manifests(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: a\n"
        "  generation: 4\n  creationTimestamp: '2024-05-01T10:00:00Z'\nspec: {}\n---\n"
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: b\n"
        "  creationTimestamp: 2024-05-01T09:00:00Z\nspec: {}\n"
    )
    first = resources.http_route("default", "a")
    second = resources.http_route("default", "b")
    assert first is not None and second is not None
    assert first.metadata.generation == 4
    assert first.metadata.creation_timestamp == datetime.datetime(
        2024, 5, 1, 10, tzinfo=datetime.UTC
    )
    assert second.metadata.creation_timestamp is not None
    assert second.metadata.creation_timestamp < first.metadata.creation_timestamp


def test_secret_data_is_base64_decoded() -> None:
    resources = load_manifests(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\n"
        "data:\n  tls.crt: aGVsbG8=\n  tls.key: d29ybGQ=\n"
    )
    secret = resources.secret("default", "tls")
    assert secret is not None
    assert secret.get("tls.crt") == b"hello" and secret.get("tls.key") == b"world"


def test_paths_and_texts_can_be_mixed(tmp_path: Path) -> None:
    file = tmp_path / "gateway.yaml"
    file.write_text(GATEWAY)
    resources = load_manifests(file, route("parentRefs:\n- name: eg"))
    assert resources.gateway("infra", "eg") is not None
    assert resources.http_route("default", "store") is not None


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(GATEWAY + "---\n" + route("rules:\n- backendRefs:\n  - name: x"))
    with pytest.raises(ManifestError) as caught:
        load_manifests(file)
    assert f"{file}#1 (HTTPRoute default/store)" in str(caught.value)
    assert caught.value.field == "spec.rules[0].backendRefs[0]"


ERRORS = [
    pytest.param(
        route(
            """
            rules:
            - matches:
              - path: {type: Exact, value: /a}
              - path: {type: Prefix, value: /b}
            """
        ),
        "spec.rules[0].matches[1].path.type",
        "unsupported value 'Prefix'",
        id="path-type-enum",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - path: {type: PathPrefix, value: foo}"),
        "spec.rules[0].matches[0].path.value",
        "start with '/'",
        id="path-must-be-absolute",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - path: {value: /a//b}"),
        "spec.rules[0].matches[0].path.value",
        "must not contain '//'",
        id="path-no-double-slash",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - headers:\n    - {name: 'bad header', value: x}"),
        "spec.rules[0].matches[0].headers[0].name",
        "header name",
        id="header-name-pattern",
    ),
    pytest.param(
        route("rules:\n- backendRefs:\n  - {name: s, port: 80, weight: 1000001}"),
        "spec.rules[0].backendRefs[0].weight",
        "must be <= 1000000",
        id="weight-range",
    ),
    pytest.param(
        route("rules:\n- backendRefs:\n  - {name: s, port: 70000}"),
        "spec.rules[0].backendRefs[0].port",
        "must be <= 65535",
        id="port-range",
    ),
    pytest.param(
        route("rules:\n- backendRefs:\n  - {name: s}"),
        "spec.rules[0].backendRefs[0]",
        "must have port for Service reference",
        id="service-needs-port",
    ),
    pytest.param(
        route(
            "rules:\n- backendRefs:\n"
            + "".join(f"  - {{name: s{i}, port: 80}}\n" for i in range(17))
        ),
        "spec.rules[0].backendRefs",
        "at most 16 items",
        id="at-most-16-backends",
    ),
    pytest.param(
        route("hostnames: ['Foo.example.com']"),
        "spec.hostnames[0]",
        "lowercase RFC 1123",
        id="hostname-format",
    ),
    pytest.param(
        route("hostnames: ['10.0.0.1']"),
        "spec.hostnames[0]",
        "IP addresses are not allowed",
        id="hostname-not-ip",
    ),
    pytest.param(
        route(
            """
            rules:
            - filters:
              - type: RequestRedirect
                requestRedirect: {scheme: https}
              backendRefs:
              - {name: s, port: 80}
            """
        ),
        "spec.rules[0]",
        "RequestRedirect filter must not be used together with backendRefs",
        id="redirect-with-backends",
    ),
    pytest.param(
        route(
            """
            rules:
            - matches:
              - path: {type: Exact, value: /a}
              filters:
              - type: URLRewrite
                urlRewrite:
                  path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}
            """
        ),
        "spec.rules[0]",
        "exactly one PathPrefix match",
        id="prefix-rewrite-needs-prefix-match",
    ),
    pytest.param(
        route("rules:\n- filters:\n  - type: RequestHeaderModifier"),
        "spec.rules[0].filters[0].requestHeaderModifier",
        "must be specified for RequestHeaderModifier",
        id="filter-union-member-missing",
    ),
    pytest.param(
        route(
            "rules:\n- filters:\n  - type: RequestHeaderModifier\n"
            "    requestHeaderModifier: {set: [{name: a, value: b}]}\n"
            "    urlRewrite: {hostname: x.com}"
        ),
        "spec.rules[0].filters[0].urlRewrite",
        "must be nil",
        id="filter-union-extra-member",
    ),
    pytest.param(
        route(
            "rules:\n- filters:\n  - type: RequestRedirect\n    requestRedirect: {statusCode: 304}"
        ),
        "spec.rules[0].filters[0].requestRedirect.statusCode",
        "unsupported value 304: must be one of 301, 302, 303, 307, 308",
        id="redirect-status-enum",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - method: FETCH"),
        "spec.rules[0].matches[0].method",
        "unsupported value 'FETCH'",
        id="method-enum",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - path: {value: /a}\n    bogus: 1"),
        "spec.rules[0].matches[0].bogus",
        "unknown field",
        id="unknown-field",
    ),
    pytest.param(
        route("parentRefs:\n- {name: eg}\n- {name: eg}"),
        "spec",
        "sectionName or port must be specified",
        id="distinct-parent-refs",
    ),
    pytest.param(
        route("rules:\n- matches:\n  - path: {value: 5}"),
        "spec.rules[0].matches[0].path.value",
        "must be a string, got integer",
        id="value-type",
    ),
    pytest.param(
        GATEWAY.replace("port: 80", "port: 0"),
        "spec.listeners[0].port",
        "must be >= 1",
        id="listener-port-range",
    ),
    pytest.param(
        GATEWAY.replace(
            "protocol: HTTP", "protocol: HTTP\n    tls: {certificateRefs: [{name: a}]}"
        ),
        "spec.listeners[0].tls",
        "tls must not be specified for protocol HTTP",
        id="tls-on-http",
    ),
    pytest.param(
        GATEWAY.replace("protocol: HTTP", "protocol: HTTPS\n    tls: {mode: Terminate}"),
        "spec.listeners[0].tls",
        "certificateRefs or options must be specified",
        id="terminate-needs-certificates",
    ),
    pytest.param(
        GATEWAY + "  - name: http\n    protocol: HTTP\n    port: 81\n",
        "spec.listeners",
        "listener names must be unique",
        id="unique-listener-names",
    ),
    pytest.param(
        GATEWAY.replace(
            "port: 80",
            "port: 80\n    allowedRoutes:\n      namespaces: {from: Selector}",
        ),
        "spec.listeners[0].allowedRoutes.namespaces.selector",
        "is required when from is Selector",
        id="selector-required",
    ),
    pytest.param(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
        "kind",
        "unsupported kind 'ConfigMap'",
        id="unknown-kind",
    ),
    pytest.param(
        "apiVersion: gateway.networking.k8s.io/v2\nkind: HTTPRoute\nmetadata: {name: x}\n",
        "apiVersion",
        "unsupported apiVersion",
        id="unknown-version",
    ),
    pytest.param(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {tls.crt: '***'}\n",
        "data.tls.crt",
        "must be base64-encoded",
        id="secret-base64",
    ),
    pytest.param(
        "kind: HTTPRoute\nmetadata: {name: x}\n",
        "apiVersion",
        "is required",
        id="missing-api-version",
    ),
]


@pytest.mark.parametrize(("manifest", "field", "message"), ERRORS)
def test_malformed_manifests_name_document_and_field(
    manifest: str, field: str, message: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(GATEWAY + "---\n" + manifest)
    error = caught.value
    assert error.document.startswith("<manifest 0>#1")
    assert error.field == field
    assert message in error.reason
    assert field in str(error)


def test_document_names_kind_namespace_and_name() -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifests(
            route("rules:\n- matches:\n  - method: FETCH", name="shop").replace(
                "name: shop", "name: shop\n  namespace: team-a"
            )
        )
    assert caught.value.document == "<manifest 0>#0 (HTTPRoute team-a/shop)"


def test_an_identical_object_in_two_files_is_loaded_once(tmp_path: Path) -> None:
    """As `kubectl apply -f a.yaml -f b.yaml` would leave it: one object."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GATEWAY + "---\n" + route("parentRefs:\n- name: eg"))
    second.write_text(route("parentRefs:\n- name: eg"))
    resources = load_manifests(first, second)
    assert len(resources.http_routes) == 1
    assert resources == load_manifests(first)


def test_different_objects_with_one_name_are_refused_naming_both_documents(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(GATEWAY + "---\n" + route("parentRefs:\n- name: eg"))
    second.write_text(route("parentRefs:\n- name: other"))
    with pytest.raises(ManifestError) as caught:
        load_manifests(first, second)
    assert caught.value.document == f"{second}#0 (HTTPRoute default/store)"
    assert f"{first}#1" in caught.value.reason
    assert "HTTPRoute default/store" in caught.value.reason


def test_duplicates_in_one_text_follow_the_same_rule() -> None:
    assert len(load_manifests(route("{}") + "---\n" + route("{}")).http_routes) == 1
    with pytest.raises(ManifestError, match="already defined differently in <manifest 0>#0"):
        load_manifests(route("{}") + "---\n" + route("hostnames: [a.example.com]"))


def test_same_name_in_different_kinds_or_namespaces_is_no_duplicate() -> None:
    service = "apiVersion: v1\nkind: Service\nmetadata: {name: store}\nspec: {}\n"
    other_namespace = route("{}").replace("name: store", "name: store\n  namespace: shop")
    resources = load_manifests(route("{}"), service, other_namespace)
    assert len(resources.http_routes) == 2 and len(resources.services) == 1


# ------------------------------------------------------------------ skip_unrelated

UNRELATED = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: backend}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: backend}
spec: {replicas: 1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: grpc}
spec: {}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: client}
spec: {}
---
apiVersion: v1
kind: List
items:
- apiVersion: cert-manager.io/v1
  kind: Certificate
  metadata: {name: cert}
- apiVersion: v1
  kind: Service
  metadata: {name: listed}
  spec: {ports: [{port: 80}]}
"""


def test_skip_unrelated_leaves_out_what_a_gateway_does_not_read_with_a_note() -> None:
    notes: list[str] = []
    resources = load_manifests(GATEWAY, UNRELATED, skip_unrelated=True, on_skip=notes.append)
    assert notes == [
        "<manifest 1>#0 (v1 ServiceAccount backend)",
        "<manifest 1>#1 (apps/v1 Deployment backend)",
        "<manifest 1>#2 (gateway.networking.k8s.io/v1 GRPCRoute grpc)",
        "<manifest 1>#3 (gateway.envoyproxy.io/v1alpha1 ClientTrafficPolicy client)",
        "<manifest 1>#4#0 (cert-manager.io/v1 Certificate cert)",
    ]
    assert resources.gateway("infra", "eg") is not None
    assert resources.service("default", "listed") is not None
    assert load_manifests(GATEWAY, UNRELATED, skip_unrelated=True) == resources  # no callback


def test_without_skip_unrelated_those_objects_are_errors() -> None:
    with pytest.raises(ManifestError, match="unsupported kind 'ServiceAccount'"):
        load_manifests(UNRELATED)


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("gateway.networking.k8s.io/v1", "HTTPRoutes"),
        ("v1", "Servce"),
        ("gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicies"),
    ],
)
def test_misspelt_kinds_of_groups_we_read_are_errors_even_when_skipping(
    api_version: str, kind: str
) -> None:
    manifest = f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x}}\n"
    with pytest.raises(ManifestError, match="unsupported kind") as caught:
        load_manifests(manifest, skip_unrelated=True, on_skip=pytest.fail)
    assert caught.value.document == f"<manifest 0>#0 ({kind})"


def test_skipping_keeps_the_document_numbers_of_errors(tmp_path: Path) -> None:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
        "spec: {ports: [{port: web}]}\n"
    )
    notes: list[str] = []
    with pytest.raises(ManifestError) as caught:
        load_manifests(manifest, skip_unrelated=True, on_skip=notes.append)
    assert caught.value.document == f"{manifest}#1 (Service default/web)"
    assert caught.value.field == "spec.ports[0].port"
    assert notes == [f"{manifest}#0 (apps/v1 Deployment web)"]


def test_invalid_yaml_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="invalid YAML"):
        load_manifests("apiVersion: v1\nkind: [unclosed\n")


def test_a_bad_document_leaves_nothing_half_applied() -> None:
    before = Resources()
    with pytest.raises(ManifestError):
        load_manifests(GATEWAY + "---\n" + route("rules: 5"))
    assert before == Resources()
