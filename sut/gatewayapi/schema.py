"""The CRD schema's value rules, written once as attrs validators the value classes declare.

A validator refuses a value with `FieldError`, which names the attribute (and the item of a
list), so the same rule reads `weight: must be <= 1000000, got 1000001` when Python builds a
value and `spec.rules[0].backendRefs[0].weight: ...` when the loader decodes a document.
Patterns and limits are those of the Gateway API CRDs (apis/v1/shared_types.go) and their CEL
rules.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable, Iterable, Sized
from typing import Any

import attrs

__all__ = [
    "CORE_GROUP",
    "ENVOY_GATEWAY_GROUP",
    "GATEWAY_GROUP",
    "FieldError",
    "as_tuple",
    "between",
    "each",
    "header_name_error",
    "hostname_error",
    "items",
    "length",
    "one_of",
    "optional",
    "parse_duration",
    "pattern",
    "precise_hostname_error",
    "rule",
    "unique",
]

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""
ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"

_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PRECISE_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_UNITS = {
    "h": datetime.timedelta(hours=1),
    "m": datetime.timedelta(minutes=1),
    "s": datetime.timedelta(seconds=1),
    "ms": datetime.timedelta(milliseconds=1),
}


class FieldError(ValueError):
    """A value class refusing one of its fields; `field` is the attribute's name."""

    def __init__(self, field: str, reason: str, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        where = field if index is None else f"{field}[{index}]"
        super().__init__(f"{where}: {reason}")


def as_tuple(items: Iterable[Any]) -> tuple[Any, ...]:
    """The converter of every list field: lists in, tuples kept, so values hash and compare."""
    return tuple(items)


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def rule(error_of: Callable[[Any], str | None]) -> Validator:
    """A validator from a function saying why a value is invalid (None when it is not)."""

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        del instance
        error = error_of(value)
        if error is not None:
            raise FieldError(attribute.name, error)

    return validate


def each(error_of: Callable[[Any], str | None]) -> Validator:
    """Applies `error_of` to every item of a tuple, naming the item that fails."""

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Iterable[Any]) -> None:
        del instance
        for index, item in enumerate(value):
            error = error_of(item)
            if error is not None:
                raise FieldError(attribute.name, error, index)

    return validate


def optional(validator: Validator) -> Validator:
    """`validator`, except that None (the field left unset) is always allowed."""
    return attrs.validators.optional(validator)


def one_of(*allowed: Any) -> Validator:
    """An enum of the schema."""
    listed = ", ".join(str(value) for value in allowed)

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in allowed:
            message = f"unsupported value {value!r}: must be one of {listed}"
            raise FieldError(attribute.name, message)

    return validate


# The checks below run on every value the harness builds: each is one call when the value is
# fine, and words its complaint only when it is not.


def between(low: int, high: int | None = None) -> Validator:
    """An integer range, both ends included (`high` None: no upper bound)."""
    top = math.inf if high is None else high

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
        if not low <= value <= top:
            bound = f">= {low}" if value < low else f"<= {high}"
            raise FieldError(attribute.name, f"must be {bound}, got {value}")

    return validate


def length(low: int = 0, high: int | None = None) -> Validator:
    """A string's minLength and maxLength."""
    top = math.inf if high is None else high

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
        if not low <= len(value) <= top:
            bound = f"at least {low}" if len(value) < low else f"at most {high}"
            raise FieldError(attribute.name, f"must be {bound} characters")

    return validate


def items(low: int = 0, high: int | None = None) -> Validator:
    """A list's minItems and maxItems."""
    top = math.inf if high is None else high

    def validate(instance: Any, attribute: attrs.Attribute[Any], value: Sized) -> None:
        count = len(value)
        if not low <= count <= top:
            if count < low:
                message = f"must have at least {low} item{'s' if low > 1 else ''}"
            else:
                message = f"must have at most {high} items, got {count}"
            raise FieldError(attribute.name, message)

    return validate


def unique(key: Callable[[Any], Any], message: str) -> Validator:
    """A list whose items' `key` must differ (listType=map / set)."""

    def error_of(value: Iterable[Any]) -> str | None:
        keys = [key(item) for item in value]
        return None if len(keys) == len(set(keys)) else message

    return rule(error_of)


def pattern(regex: str, description: str, low: int = 1, high: int = 253) -> Validator:
    """A string of `low..high` characters matching `regex`."""
    compiled = re.compile(regex)

    def error_of(value: str) -> str | None:
        if not low <= len(value) <= high:
            return f"must be {low}..{high} characters"
        return None if compiled.match(value) else f"{value!r} {description}"

    return rule(error_of)


def hostname_error(value: str) -> str | None:
    """Why `value` is not a Gateway API `Hostname` (wildcard allowed), or None when it is."""
    if not 1 <= len(value) <= 253:
        return "must be 1..253 characters"
    if not _HOSTNAME.match(value):
        return "must be a lowercase RFC 1123 hostname, optionally prefixed by '*.'"
    if _IPV4.match(value):
        return "IP addresses are not allowed"
    return None


def precise_hostname_error(value: str) -> str | None:
    """Why `value` is not a `PreciseHostname` (no wildcard), or None when it is."""
    if not 1 <= len(value) <= 253:
        return "must be 1..253 characters"
    if not _PRECISE_HOSTNAME.match(value):
        return "must be a lowercase RFC 1123 hostname without wildcard"
    return None


def header_name_error(value: str) -> str | None:
    """Why `value` is not an `HTTPHeaderName`, or None when it is."""
    if 1 <= len(value) <= 256 and _HEADER_NAME.match(value):
        return None
    return f"header name {value!r} must match {_HEADER_NAME.pattern}"


def parse_duration(value: str) -> datetime.timedelta:
    """A Gateway API `Duration` ("5s", "250ms", "1h30m"; GEP-2257) as a timedelta.

    Raises ValueError naming the CRD pattern when `value` does not match it.
    """
    if not _DURATION.match(value):
        raise ValueError(
            f"{value!r} is not a Gateway API duration (pattern ^([0-9]{{1,5}}(h|m|s|ms)){{1,4}}$,"
            " e.g. 5s, 250ms, 1h30m)"
        )
    return sum(
        (int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(value)),
        datetime.timedelta(0),
    )
