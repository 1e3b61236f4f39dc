"""Manifests for the control-plane tests, built in code: small worlds with known names.

Every route gets its own Gateway listener, so each hostname has its own RouteConfiguration
(HTTPS, selected by SNI) or shares the HTTP one; backends are echo Services of the same name.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from sut.gatewayapi import Resources, load_manifests

__all__ = ["GATEWAY_NAMESPACE", "NAMESPACE", "Site", "world"]

GATEWAY_NAMESPACE = "infra"
NAMESPACE = "default"
SERVICE_PORT = 8080
_TLS = Path(__file__).resolve().parents[2] / "harness" / "lockstep" / "tls"


@attrs.frozen
class Site:
    """One Gateway listener with one HTTPRoute on one hostname, sending `prefix` to `service`."""

    name: str
    protocol: str  # "HTTP" or "HTTPS"
    port: int
    hostname: str
    prefix: str = "/"
    service: str = ""

    @property
    def backend(self) -> str:
        return self.service or f"svc-{self.name}"

    @property
    def route_configuration(self) -> str:
        """The RouteConfiguration Envoy Gateway names for an HTTPS listener."""
        return f"{GATEWAY_NAMESPACE}/eg/{self.name}"

    def changed(self, prefix: str) -> Site:
        return attrs.evolve(self, prefix=prefix)


def _listener(site: Site) -> dict[str, Any]:
    listener: dict[str, Any] = {
        "name": site.name,
        "protocol": site.protocol,
        "port": site.port,
        "hostname": site.hostname,
        "allowedRoutes": {"namespaces": {"from": "All"}},
    }
    if site.protocol == "HTTPS":
        listener["tls"] = {"mode": "Terminate", "certificateRefs": [{"name": "example-tls"}]}
    return listener


def _route(site: Site) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"route-{site.name}", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [
                {"name": "eg", "namespace": GATEWAY_NAMESPACE, "sectionName": site.name}
            ],
            "hostnames": [site.hostname],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": site.prefix}}],
                    "backendRefs": [{"name": site.backend, "port": SERVICE_PORT}],
                }
            ],
        },
    }


def _secret() -> dict[str, Any]:
    def encoded(name: str) -> str:
        return base64.b64encode((_TLS / name).read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "example-tls", "namespace": GATEWAY_NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": encoded("example.crt"), "tls.key": encoded("example.key")},
    }


def world(sites: Sequence[Site]) -> Resources:
    """One Gateway `infra/eg` with a listener and an HTTPRoute per site, and their Services."""
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "eg", "namespace": GATEWAY_NAMESPACE},
            "spec": {"gatewayClassName": "eg", "listeners": [_listener(s) for s in sites]},
        }
    ]
    if any(site.protocol == "HTTPS" for site in sites):
        documents.append(_secret())
    for service in sorted({site.backend for site in sites}):
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": NAMESPACE},
                "spec": {"ports": [{"port": SERVICE_PORT}]},
            }
        )
    documents += [_route(site) for site in sites]
    return load_manifests(yaml.safe_dump_all(documents, sort_keys=False))
