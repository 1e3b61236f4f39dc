"""GatewayClass, Gateway and its Listeners, with the CRDs' defaults and rules.

Semantic checks that the spec turns into Listener conditions (a missing Secret, an unknown
route kind, a protocol this gateway does not serve) belong to translation, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.meta import Labels, ObjectKey, ObjectMeta, namespaced, string_map
from sut.gatewayapi.schema import (
    CORE_GROUP,
    GATEWAY_GROUP,
    FieldError,
    as_tuple,
    between,
    hostname_error,
    items,
    length,
    one_of,
    optional,
    pattern,
    rule,
    unique,
)

__all__ = [
    "AllowedRoutes",
    "Gateway",
    "GatewayClass",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Listener",
    "ListenerTLS",
    "RouteGroupKind",
    "RouteNamespaces",
    "SecretObjectReference",
]

_SECTION_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _controller_name_error(value: str) -> str | None:
    if not 1 <= len(value) <= 253:
        return "must be 1..253 characters"
    return None if "/" in value else "must be a domain-prefixed path (example.com/bar)"


@attrs.frozen
class GatewayClass:
    metadata: ObjectMeta
    controller_name: str = attrs.field(validator=rule(_controller_name_error))

    @property
    def key(self) -> ObjectKey:
        return ObjectKey("", self.metadata.name)


@attrs.frozen
class SecretObjectReference:
    """A Listener's certificateRef; `namespace` None means the Gateway's namespace."""

    name: str = attrs.field(validator=length(1, 253))
    namespace: str | None = None
    group: str = CORE_GROUP
    kind: str = "Secret"


@attrs.frozen
class ListenerTLS:
    mode: str = attrs.field(default="Terminate", validator=one_of("Terminate", "Passthrough"))
    certificate_refs: tuple[SecretObjectReference, ...] = attrs.field(
        default=(), converter=as_tuple, validator=items(0, 64)
    )


def _tls_document(document: dict[str, Any]) -> dict[str, Any]:
    # CEL on ListenerTLSConfig; `options` is read here only, as the class does not keep it.
    try:
        options = string_map(document.get("options", {}))
    except decode.Invalid as error:
        raise error.under("options") from None
    terminate = document.get("mode", "Terminate") == "Terminate"
    if terminate and document.get("certificateRefs", []) == [] and not options:
        raise decode.Invalid("certificateRefs or options must be specified when mode is Terminate")
    return document


@attrs.frozen
class LabelSelectorRequirement:
    key: str = attrs.field(validator=length(1))
    operator: str = attrs.field(validator=one_of("In", "NotIn", "Exists", "DoesNotExist"))
    values: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)

    def __attrs_post_init__(self) -> None:
        if self.operator in ("In", "NotIn") and not self.values:
            raise FieldError("values", f"operator {self.operator} needs values")
        if self.operator not in ("In", "NotIn") and self.values:
            raise FieldError("values", f"operator {self.operator} takes no values")

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


def _labels(value: Labels | Mapping[str, str]) -> Labels:
    return value if isinstance(value, Labels) else Labels.of(value)


@attrs.frozen
class LabelSelector:
    """A metav1.LabelSelector; the empty selector matches every namespace, as in Kubernetes."""

    match_labels: Labels = attrs.field(default=Labels(), converter=_labels)
    match_expressions: tuple[LabelSelectorRequirement, ...] = attrs.field(
        default=(), converter=as_tuple
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


@attrs.frozen
class RouteNamespaces:
    from_: str = attrs.field(default="Same", validator=one_of("All", "Same", "Selector"))
    selector: LabelSelector | None = None

    def __attrs_post_init__(self) -> None:
        if self.from_ == "Selector" and self.selector is None:
            raise FieldError("selector", "is required when from is Selector")


@attrs.frozen(order=True)
class RouteGroupKind:
    kind: str = attrs.field(validator=length(1, 63))
    group: str = GATEWAY_GROUP


@attrs.frozen
class AllowedRoutes:
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = attrs.field(
        default=(), converter=as_tuple, validator=items(0, 8)
    )


@attrs.frozen
class Listener:
    name: str = attrs.field(validator=pattern(_SECTION_NAME, "must be an RFC 1123 subdomain"))
    port: int = attrs.field(validator=between(1, 65535))
    protocol: str = attrs.field(validator=length(1, 255))
    hostname: str | None = attrs.field(default=None, validator=optional(rule(hostname_error)))
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    def __attrs_post_init__(self) -> None:
        if self.protocol in ("HTTP", "TCP", "UDP") and self.tls is not None:
            raise FieldError("tls", f"tls must not be specified for protocol {self.protocol}")
        if self.protocol == "HTTPS" and self.tls is not None and self.tls.mode != "Terminate":
            raise FieldError("tls", "tls mode must be Terminate for protocol HTTPS")


def _unique_combinations(instance: Any, attribute: Any, value: tuple[Listener, ...]) -> None:
    del instance
    combos = [(item.port, item.protocol, item.hostname) for item in value]
    if len(combos) != len(set(combos)):
        raise FieldError(
            attribute.name,
            "combination of port, protocol and hostname must be unique for each listener",
        )


@attrs.frozen
class Gateway:
    metadata: ObjectMeta = attrs.field(validator=namespaced)
    gateway_class_name: str = attrs.field(validator=length(1, 253))
    listeners: tuple[Listener, ...] = attrs.field(
        converter=as_tuple,
        validator=[
            items(1, 64),
            unique(lambda item: item.name, "listener names must be unique within the Gateway"),
            _unique_combinations,
        ],
    )
    addresses: tuple[str, ...] = attrs.field(default=(), converter=as_tuple, validator=items(0, 16))
    """`type:value` of each `spec.addresses` entry."""

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def listener(self, name: str) -> Listener | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None


@attrs.frozen
class _GatewayAddress:
    """One `spec.addresses` entry; the Gateway keeps it as `type:value`."""

    type: str = "IPAddress"
    value: str = ""


def _addresses(value: Any) -> tuple[str, ...]:
    read = decode.structure(value, tuple[_GatewayAddress, ...])
    return tuple(f"{item.type}:{item.value}" for item in read)


decode.shape(GatewayClass, computed=("metadata",), accepted=("description", "parametersRef"))
decode.shape(
    Gateway, computed=("metadata",), accepted=("infrastructure",), hooks={"addresses": _addresses}
)
decode.shape(ListenerTLS, accepted=("options", "frontendValidation"), prepare=_tls_document)
