"""ReferenceGrant and invalid references through real Envoy (manifests/references.yaml).

Spec: a reference to an object in another namespace is valid only when a ReferenceGrant in the
target namespace permits it, from the referring kind and namespace to the target kind (and name
when given) (apis/v1beta1/referencegrant_types.go). HTTPRouteRule.BackendRefs: "When a
HTTPBackendRef is invalid, 500 status codes MUST be returned for requests that would have
otherwise been routed to an invalid backend. If multiple backends are specified, and some are
invalid, the proportion of requests that would otherwise have been routed to an invalid backend
MUST receive a 500 status code." Route ResolvedRefs reasons: BackendNotFound, InvalidKind,
RefNotPermitted. A rule without backendRefs and without a response-producing filter returns an
error (conformance HTTPRouteOmittedBackendRefs: 500).

Listener certificates (GatewayTLSConfig.CertificateRefs): a cross-namespace Secret needs a
ReferenceGrant, else "ResolvedRefs" False with "RefNotPermitted"; a missing Secret gives
InvalidCertificateRef. Such listeners are not programmed: a handshake for their SNI fails.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from sut.gatewayapi import find_condition
from tests.e2e.served import Served, served_manifest

GATEWAY = "gateways/refs"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with served_manifest("references.yaml") as served:
        yield served


@pytest.mark.parametrize(
    ("path", "backend"),
    [("/local", "app/web"), ("/granted", "backends/granted")],
)
def test_permitted_backends_answer(served: Served, path: str, backend: str) -> None:
    reply = served.get(GATEWAY, 80, "any.example.com", path)
    assert reply.status == 200, reply
    assert reply.backend == backend


@pytest.mark.parametrize(
    "path",
    [
        "/not-named-in-grant",  # RefNotPermitted: the grant names another Service
        "/grant-for-other-namespace",  # RefNotPermitted: the grant is for another namespace
        "/grant-for-other-kind",  # RefNotPermitted: the grant is for Gateways
        "/missing-service",  # BackendNotFound
        "/missing-port",  # BackendNotFound: the Service has no such port
        "/unknown-kind",  # InvalidKind
        "/all-invalid",
        "/no-backends",
    ],
)
def test_invalid_backends_answer_500(served: Served, path: str) -> None:
    for _ in range(3):
        reply = served.get(GATEWAY, 80, "any.example.com", path)
        assert reply.status == 500, reply
        assert reply.echo is None


def test_invalid_backend_keeps_its_share_of_traffic(served: Served) -> None:
    """Equal weights, one backend invalid: about half the requests get 500, the rest 200."""
    statuses = [
        served.get(GATEWAY, 80, "any.example.com", "/half-invalid").status for _ in range(80)
    ]
    assert set(statuses) == {200, 500}
    # Binomial(80, 0.5): outside 20..60 with probability < 1e-5.
    assert 20 <= statuses.count(500) <= 60, statuses.count(500)


def test_invalid_backend_with_weight_zero_gets_no_traffic(served: Served) -> None:
    for _ in range(30):
        reply = served.get(GATEWAY, 80, "any.example.com", "/invalid-without-weight")
        assert reply.status == 200, reply
        assert reply.backend == "app/web"


def test_route_resolved_refs_reports_the_problem(served: Served) -> None:
    status = served.statuses.http_route("app", "refs")
    assert status is not None
    parent = status.parents[0]
    accepted = find_condition(parent.conditions, "Accepted")
    resolved = find_condition(parent.conditions, "ResolvedRefs")
    assert accepted is not None and accepted.is_true
    assert resolved is not None and resolved.status == "False"
    assert resolved.reason in ("RefNotPermitted", "BackendNotFound", "InvalidKind")


def _secret_der(served: Served, namespace: str, name: str) -> bytes:
    secret = served.resources.secret(namespace, name)
    assert secret is not None
    pem = secret.get("tls.crt")
    assert pem is not None
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_certificate_granted_by_reference_grant_is_served(served: Served) -> None:
    presented = served.peer_certificate(GATEWAY, 443, "foo.example.com")
    assert presented == _secret_der(served, "certs", "foo-cert")
    reply = served.get(GATEWAY, 443, "foo.example.com", "/granted", scheme="https")
    assert reply.status == 200, reply
    assert reply.backend == "backends/granted"
    assert reply.request_header("x-forwarded-proto") == "https"


@pytest.mark.parametrize(
    ("listener", "sni", "reason"),
    [
        ("cert-not-granted", "bar.example.com", "RefNotPermitted"),
        ("cert-missing", "missing.example.com", "InvalidCertificateRef"),
    ],
)
def test_listener_with_unusable_certificate_is_not_served(
    served: Served, listener: str, sni: str, reason: str
) -> None:
    gateway = served.statuses.gateway("gateways", "refs")
    assert gateway is not None
    status = gateway.listener(listener)
    assert status is not None
    resolved = status.condition("ResolvedRefs")
    programmed = status.condition("Programmed")
    assert resolved is not None and (resolved.status, resolved.reason) == ("False", reason)
    assert programmed is not None and programmed.status == "False"
    assert served.peer_certificate(GATEWAY, 443, sni) is None
    reply = served.get(GATEWAY, 443, sni, "/local", scheme="https")
    assert reply.status is None, reply
