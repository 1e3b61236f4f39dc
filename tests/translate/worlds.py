"""Manifest builders for translation tests: dicts shaped like the YAML users write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sut.gatewayapi import Endpoint, Resources, ServiceEndpoints, load_manifests

GW_API = "gateway.networking.k8s.io/v1"
TESTDATA = Path(__file__).parent / "testdata"
CERT_PEM = (TESTDATA / "certs" / "cert.pem").read_bytes()
KEY_PEM = (TESTDATA / "certs" / "key.pem").read_bytes()


def gateway(
    listeners: list[dict[str, Any]],
    name: str = "eg",
    namespace: str = "infra",
    gateway_class: str = "eg",
    **metadata: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": GW_API,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"gatewayClassName": gateway_class, "listeners": listeners},
    }


def listener(  # noqa: PLR0917
    name: str = "http",
    port: int = 80,
    protocol: str = "HTTP",
    hostname: str | None = None,
    allowed_routes: dict[str, Any] | None = None,
    certificates: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "port": port, "protocol": protocol}
    if hostname is not None:
        result["hostname"] = hostname
    if allowed_routes is not None:
        result["allowedRoutes"] = allowed_routes
    if certificates is not None:
        result["tls"] = {"mode": "Terminate", "certificateRefs": certificates}
    return result


def route(
    name: str,
    namespace: str = "default",
    *,
    parents: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    rules: list[dict[str, Any]] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = created
    spec: dict[str, Any] = {
        "parentRefs": parents if parents is not None else [{"name": "eg", "namespace": "infra"}]
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    if rules is not None:
        spec["rules"] = rules
    return {"apiVersion": GW_API, "kind": "HTTPRoute", "metadata": metadata, "spec": spec}


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def backend(name: str, port: int = 8080, **extra: Any) -> dict[str, Any]:
    return {"name": name, "port": port, **extra}


def service(name: str, namespace: str = "default", ports: tuple[int, ...] = (8080,)) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": [{"port": port} for port in ports]},
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def reference_grant(
    namespace: str, from_kind: str, from_namespace: str, to_kind: str, to_name: str | None = None
) -> dict[str, Any]:
    to: dict[str, Any] = {"group": "", "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": f"allow-{from_namespace}", "namespace": namespace},
        "spec": {
            "from": [
                {
                    "group": "gateway.networking.k8s.io",
                    "kind": from_kind,
                    "namespace": from_namespace,
                }
            ],
            "to": [to],
        },
    }


def tls_secret(name: str, namespace: str = "infra", valid: bool = True) -> dict[str, Any]:
    import base64

    cert = (
        CERT_PEM
        if valid
        else b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(cert).decode(),
            "tls.key": base64.b64encode(KEY_PEM).decode(),
        },
    }


def backend_traffic_policy(
    name: str,
    targets: list[tuple[str, str]],
    namespace: str = "default",
    *,
    load_balancer: str | None = None,
    connect_timeout: str | None = None,
    created: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Envoy Gateway BackendTrafficPolicy; `targets` are (kind, name) in its namespace."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if created is not None:
        metadata["creationTimestamp"] = created
    spec: dict[str, Any] = {
        "targetRefs": [
            {"group": "gateway.networking.k8s.io", "kind": kind, "name": target}
            for kind, target in targets
        ],
        **extra,
    }
    if load_balancer is not None:
        spec["loadBalancer"] = {"type": load_balancer}
    if connect_timeout is not None:
        spec["timeout"] = {"tcp": {"connectTimeout": connect_timeout}}
    return {
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "BackendTrafficPolicy",
        "metadata": metadata,
        "spec": spec,
    }


def world(
    *documents: dict[str, Any], endpoints: dict[tuple[str, str, int], int] | None = None
) -> Resources:
    """Load documents; `endpoints` gives (ns, service, port) -> endpoint count on 127.0.0.1."""
    resources = load_manifests(yaml.safe_dump_all(documents, sort_keys=False))
    for (ns, name, port), count in (endpoints or {}).items():
        resources = resources.with_endpoints(
            ServiceEndpoints(
                ns, name, port, tuple(Endpoint("127.0.0.1", 10000 + i) for i in range(count))
            )
        )
    return resources
