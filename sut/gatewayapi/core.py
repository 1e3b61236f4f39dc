"""Core (v1) kinds a gateway reads: Namespace, Service, Secret, and the endpoints behind Services.

Endpoints are supplied by the harness (its pods), never by manifests: `ServiceEndpoints` has no
document form.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.meta import ObjectKey, ObjectMeta, namespaced, string_map
from sut.gatewayapi.schema import FieldError, as_tuple, between, length, one_of, unique

__all__ = [
    "Endpoint",
    "Namespace",
    "Secret",
    "Service",
    "ServiceEndpoints",
    "ServicePort",
    "read_namespace",
    "read_secret",
]

_PORT = between(1, 65535)


@attrs.frozen
class Namespace:
    metadata: ObjectMeta

    @property
    def key(self) -> ObjectKey:
        return ObjectKey("", self.metadata.name)


@attrs.frozen
class ServicePort:
    port: int = attrs.field(validator=_PORT)
    name: str | None = None
    protocol: str = attrs.field(default="TCP", validator=one_of("TCP", "UDP", "SCTP"))
    target_port: int | str | None = None


@attrs.frozen
class Service:
    metadata: ObjectMeta = attrs.field(validator=namespaced)
    ports: tuple[ServicePort, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        validator=unique(lambda port: (port.port, port.protocol), "duplicate Service port"),
    )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def port(self, number: int) -> ServicePort | None:
        for item in self.ports:
            if item.port == number and item.protocol == "TCP":
                return item
        return None


def _sorted_unique_keys(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    del instance
    keys = [key for key, _ in value]
    if keys != sorted(set(keys)):
        raise FieldError(attribute.name, "secret data must be sorted with unique keys")


@attrs.frozen
class Secret:
    """A Secret with its data already base64-decoded."""

    metadata: ObjectMeta = attrs.field(validator=namespaced)
    type: str = "Opaque"
    data: tuple[tuple[str, bytes], ...] = attrs.field(
        default=(), converter=as_tuple, validator=_sorted_unique_keys
    )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def get(self, name: str) -> bytes | None:
        for key, value in self.data:
            if key == name:
                return value
        return None


@attrs.frozen(order=True)
class Endpoint:
    address: str = attrs.field(validator=length(1))
    port: int = attrs.field(validator=_PORT)


def _sorted_endpoints(items: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(sorted(set(items)))


@attrs.frozen
class ServiceEndpoints:
    """The ready endpoints behind one Service port; the harness supplies them, manifests don't."""

    namespace: str
    service: str
    port: int = attrs.field(validator=_PORT)
    endpoints: tuple[Endpoint, ...] = attrs.field(default=(), converter=_sorted_endpoints)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.namespace, self.service, self.port)


def read_namespace(root: dict[str, Any], metadata: ObjectMeta) -> Namespace:
    """A Namespace is its metadata; its spec (finalizers) means nothing to a gateway."""
    del root
    return Namespace(metadata)


def read_secret(root: dict[str, Any], metadata: ObjectMeta) -> Secret:
    """`data` is base64 (decoded here), `stringData` plain text that wins over it."""
    secret_type = root.get("type", "Opaque")
    if not isinstance(secret_type, str):
        raise decode.Invalid(f"must be a string, got {decode.type_name(secret_type)}", ("type",))
    data: dict[str, bytes] = {}
    for part in ("data", "stringData"):
        if part not in root:
            continue
        try:
            values = string_map(root[part])
        except decode.Invalid as error:
            raise error.under(part) from None
        for key, value in values.items():
            if part == "stringData":
                data[key] = value.encode()
                continue
            try:
                data[key] = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise decode.Invalid("must be base64-encoded", (part, key)) from None
    try:
        return Secret(metadata=metadata, type=secret_type, data=tuple(sorted(data.items())))
    except ValueError as error:
        raise decode.Invalid(str(error)) from None


decode.shape(Service, computed=("metadata",), open=True)  # type, selector, clusterIP, ...
decode.shape(ServicePort, accepted=("appProtocol", "nodePort"))
