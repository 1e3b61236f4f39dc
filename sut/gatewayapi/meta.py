"""Object identity: ObjectKey, Labels and the ObjectMeta fields translation depends on."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.schema import FieldError, between, length, optional, pattern

__all__ = ["Labels", "ObjectKey", "ObjectMeta", "namespaced", "string_map"]


@attrs.frozen(order=True)
class ObjectKey:
    """Namespace and name: how objects refer to each other. `str()` gives `ns/name`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def _labels_converter(value: Labels | Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
    if isinstance(value, Labels):
        return value
    return Labels.of(value)


@attrs.frozen
class Labels:
    """Kubernetes labels as a sorted tuple of pairs, so equal label sets compare equal."""

    items: tuple[tuple[str, str], ...] = ()

    def __attrs_post_init__(self) -> None:
        keys = [key for key, _ in self.items]
        if keys != sorted(set(keys)):
            raise FieldError("items", "labels must be sorted with unique keys")

    @classmethod
    def of(cls, value: Mapping[str, str] | Iterable[tuple[str, str]]) -> Labels:
        pairs = dict(value.items() if isinstance(value, Mapping) else value)
        return cls(tuple(sorted(pairs.items())))

    def get(self, key: str) -> str | None:
        for item_key, item_value in self.items:
            if item_key == key:
                return item_value
        return None

    def as_dict(self) -> dict[str, str]:
        return dict(self.items)

    def __contains__(self, key: object) -> bool:
        return any(item_key == key for item_key, _ in self.items)


def _timestamp_converter(value: datetime.datetime | str | None) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


@attrs.frozen
class ObjectMeta:
    """The metadata fields translation depends on; `namespace` is "" for cluster-scoped kinds."""

    name: str = attrs.field(validator=length(1, 253))
    namespace: str = attrs.field(
        default="",
        validator=optional(
            pattern(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "is not an RFC 1123 label", 0, 63)
        ),
    )
    labels: Labels = attrs.field(default=Labels(), converter=_labels_converter)
    generation: int = attrs.field(default=1, validator=between(0))
    creation_timestamp: datetime.datetime | None = attrs.field(
        default=None, converter=_timestamp_converter
    )

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.namespace, self.name)


def namespaced(instance: Any, attribute: attrs.Attribute[Any], value: ObjectMeta) -> None:
    """The validator of a namespaced kind's `metadata`."""
    if not value.namespace:
        raise FieldError(attribute.name, f"a {type(instance).__name__} is namespaced")


def string_map(value: Any) -> dict[str, str]:
    """A `map[string]string` of a document (labels, matchLabels, Secret stringData)."""
    if not isinstance(value, Mapping):
        raise decode.Invalid(f"must be an object, got {decode.type_name(value)}")
    for key, item in value.items():
        if not isinstance(item, str):  # a null value too: a label is a string
            raise decode.Invalid(f"must be a string, got {decode.type_name(item)}", (str(key),))
    return {str(key): item for key, item in value.items()}


def _timestamp(value: Any) -> datetime.datetime:
    # YAML reads an unquoted timestamp as a datetime, a quoted one as a string.
    if not isinstance(value, datetime.datetime | str):
        raise decode.Invalid("must be an RFC 3339 timestamp")
    try:
        result = _timestamp_converter(value)
    except ValueError as error:
        raise decode.Invalid(f"must be an RFC 3339 timestamp: {error}") from None
    assert result is not None
    return result


decode.hook(Labels, lambda value: Labels.of(string_map(value)))
decode.shape(
    ObjectMeta,
    open=True,  # uid, annotations, managedFields, ...: valid, not read
    hooks={"creation_timestamp": _timestamp},
)
