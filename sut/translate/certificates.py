"""Stage 1, certificates: the TLS certificates of an HTTPS listener, or why it has none.

Rules of this module: a certificateRef must name a core Secret (else InvalidCertificateRef), in
the Gateway's namespace or one a ReferenceGrant opens to Gateways (else RefNotPermitted); the
Secret must exist, have type kubernetes.io/tls and hold one PEM certificate chain (tls.crt) and
one PEM private key (tls.key), else InvalidCertificateRef: Envoy would NACK the listener. The
first problem is the one reported; the valid certificates are served regardless.
"""

from __future__ import annotations

import base64
import binascii
import re

from sut.gatewayapi import CORE_GROUP, GATEWAY_GROUP, Gateway, Listener, Reason, Resources, Secret
from sut.translate.ir import TLSCertificate

__all__ = ["certificate_problem", "resolve_certificates"]


def resolve_certificates(
    gateway: Gateway, spec: Listener, resources: Resources
) -> tuple[list[TLSCertificate], tuple[str, str] | None]:
    """The listener's valid certificates, and the first (reason, message) of a ref that failed."""
    assert spec.tls is not None
    certificates: list[TLSCertificate] = []
    problem: tuple[str, str] | None = None
    for ref in spec.tls.certificate_refs:
        namespace = ref.namespace or gateway.metadata.namespace
        found: tuple[str, str] | None = None
        if (ref.group, ref.kind) != (CORE_GROUP, "Secret"):
            found = (
                Reason.INVALID_CERTIFICATE_REF,
                f"certificateRef {ref.group}/{ref.kind} {ref.name} is not a core Secret",
            )
        elif not resources.reference_permitted(
            from_group=GATEWAY_GROUP,
            from_kind="Gateway",
            from_namespace=gateway.metadata.namespace,
            to_group=CORE_GROUP,
            to_kind="Secret",
            to_namespace=namespace,
            to_name=ref.name,
        ):
            found = (
                Reason.REF_NOT_PERMITTED,
                f"certificateRef to Secret {namespace}/{ref.name} is not permitted by any"
                " ReferenceGrant",
            )
        else:
            secret = resources.secret(namespace, ref.name)
            if secret is None:
                found = (Reason.INVALID_CERTIFICATE_REF, f"Secret {namespace}/{ref.name} not found")
            else:
                malformed = certificate_problem(secret)
                if malformed:
                    found = (Reason.INVALID_CERTIFICATE_REF, malformed)
                else:
                    certificates.append(
                        TLSCertificate(
                            name=f"{namespace}/{ref.name}",
                            certificate_chain=secret.get("tls.crt") or b"",
                            private_key=secret.get("tls.key") or b"",
                        )
                    )
        if found and problem is None:
            problem = found
    return certificates, problem


_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----", re.DOTALL
)


def _der_sequence_ok(der: bytes) -> bool:
    """A DER SEQUENCE whose length field matches the data: the framing every cert/key has."""
    if len(der) < 2 or der[0] != 0x30:
        return False
    length = der[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(der) < 2 + count:
            return False
        length = int.from_bytes(der[2 : 2 + count], "big")
        offset = 2 + count
    return offset + length == len(der)


def _pem_types(data: bytes) -> list[str]:
    types = []
    for match in _PEM_BLOCK.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            return []
        if not _der_sequence_ok(der):
            return []
        types.append(match.group(1).decode())
    return types


def certificate_problem(secret: Secret) -> str | None:
    """Why a Secret cannot serve as a listener certificate (Envoy would NACK it), or None."""
    where = f"Secret {secret.metadata.namespace}/{secret.metadata.name}"
    if secret.type != "kubernetes.io/tls":
        return f"{where} has type {secret.type}, not kubernetes.io/tls"
    chain = secret.get("tls.crt")
    key = secret.get("tls.key")
    if not chain or not key:
        return f"{where} lacks tls.crt or tls.key"
    cert_types = _pem_types(chain)
    if not cert_types or any(kind != "CERTIFICATE" for kind in cert_types):
        return f"{where} tls.crt is not a PEM certificate chain"
    key_types = _pem_types(key)
    if len(key_types) != 1 or not key_types[0].endswith("PRIVATE KEY"):
        return f"{where} tls.key is not one PEM private key"
    return None
