"""HTTPRouteFilter and the filters it carries (header modifiers, redirects, rewrites).

A filter is a union: `type` names the one member that is set (the CRD's CEL rules). The types
this gateway does not implement (RequestMirror, ExtensionRef, CORS, ExternalAuth) are accepted
with their payload dropped; translation reports them.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.schema import (
    FieldError,
    as_tuple,
    between,
    each,
    header_name_error,
    items,
    length,
    one_of,
    optional,
    precise_hostname_error,
    rule,
    unique,
)

__all__ = [
    "FILTER_TYPES",
    "HTTPHeader",
    "HTTPRouteFilter",
    "HeaderModifier",
    "PathModifier",
    "RequestRedirect",
    "URLRewrite",
    "filter_list",
]

# Header values in modifiers: the (experimental-channel) CRD pattern; Envoy refuses control chars.
_HEADER_VALUE = re.compile(r"^[!-~]+([\t ]?[!-~]+)*$")


def _header_value_error(value: str) -> str | None:
    if 1 <= len(value) <= 4096 and _HEADER_VALUE.match(value):
        return None
    return f"header value {value!r} must be 1..4096 printable ASCII characters"


@attrs.frozen
class HTTPHeader:
    name: str = attrs.field(validator=rule(header_name_error))
    value: str = attrs.field(validator=rule(_header_value_error))


def _headers(message: str) -> list[Any]:
    return [items(0, 16), unique(lambda header: header.name, message)]


@attrs.frozen
class HeaderModifier:
    set: tuple[HTTPHeader, ...] = attrs.field(
        default=(), converter=as_tuple, validator=_headers("duplicate name in set")
    )
    add: tuple[HTTPHeader, ...] = attrs.field(
        default=(), converter=as_tuple, validator=_headers("duplicate name in add")
    )
    remove: tuple[str, ...] = attrs.field(
        default=(),
        converter=as_tuple,
        validator=[
            items(0, 16),
            each(header_name_error),
            unique(lambda name: name, "duplicate name in remove"),
        ],
    )


@attrs.frozen
class PathModifier:
    type: str = attrs.field(validator=one_of("ReplaceFullPath", "ReplacePrefixMatch"))
    replace_full_path: str | None = attrs.field(default=None, validator=optional(length(0, 1024)))
    replace_prefix_match: str | None = attrs.field(
        default=None, validator=optional(length(0, 1024))
    )

    def __attrs_post_init__(self) -> None:
        # CEL on HTTPPathModifier: the member named by `type` is set, the other is not.
        members = {
            "ReplaceFullPath": ("replace_full_path", self.replace_full_path),
            "ReplacePrefixMatch": ("replace_prefix_match", self.replace_prefix_match),
        }
        for member_type, (field, value) in members.items():
            if member_type == self.type and value is None:
                raise FieldError(field, f"must be specified when type is {member_type}")
            if member_type != self.type and value is not None:
                raise FieldError(field, f"must not be set when type is {self.type}")

    @property
    def value(self) -> str:
        return (
            self.replace_full_path
            if self.replace_full_path is not None
            else (self.replace_prefix_match or "")
        )


@attrs.frozen
class RequestRedirect:
    scheme: str | None = attrs.field(default=None, validator=optional(one_of("http", "https")))
    hostname: str | None = attrs.field(
        default=None, validator=optional(rule(precise_hostname_error))
    )
    path: PathModifier | None = None
    port: int | None = attrs.field(default=None, validator=optional(between(1, 65535)))
    status_code: int = attrs.field(default=302, validator=one_of(301, 302, 303, 307, 308))


@attrs.frozen
class URLRewrite:
    hostname: str | None = attrs.field(
        default=None, validator=optional(rule(precise_hostname_error))
    )
    path: PathModifier | None = None


_MEMBERS = {
    "RequestHeaderModifier": "request_header_modifier",
    "ResponseHeaderModifier": "response_header_modifier",
    "RequestMirror": "request_mirror",
    "RequestRedirect": "request_redirect",
    "URLRewrite": "url_rewrite",
    "ExtensionRef": "extension_ref",
    "CORS": "cors",
    "ExternalAuth": "external_auth",
}
"""Each filter type and the member holding its configuration."""

FILTER_TYPES = tuple(_MEMBERS)


def _union_error(member_type: str, filter_type: str, present: bool) -> str | None:
    if member_type == filter_type and not present:
        return f"must be specified for {filter_type} filter.type"
    if member_type != filter_type and present:
        return f"must be nil if the filter.type is not {member_type}"
    return None


@attrs.frozen
class HTTPRouteFilter:
    """One filter; only the field named by `type` is set. Unsupported types keep no payload."""

    type: str = attrs.field(validator=one_of(*FILTER_TYPES))
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None

    def __attrs_post_init__(self) -> None:
        for member_type, field in _MEMBERS.items():
            if hasattr(self, field):
                error = _union_error(member_type, self.type, getattr(self, field) is not None)
                if error is not None:
                    raise FieldError(field, error)


_DROPPED = {
    member_type: decode.document_key(field)
    for member_type, field in _MEMBERS.items()
    if field not in attrs.fields_dict(HTTPRouteFilter)
}


def _filter_document(document: dict[str, Any]) -> dict[str, Any]:
    """The union rules for the members the class does not keep, then their payload dropped."""
    filter_type = document.get("type")
    if filter_type not in FILTER_TYPES:
        return document  # the class refuses the type itself
    for member_type, key in _DROPPED.items():
        error = _union_error(member_type, filter_type, key in document)
        if error is not None:
            raise decode.Invalid(error, (key,))
        if key in document:
            try:
                decode.mapping(document.pop(key))
            except decode.Invalid as invalid:
                raise invalid.under(key) from None
    return document


def _filter_list_error(filters: tuple[HTTPRouteFilter, ...]) -> str | None:
    if not filters:
        return None
    if len(filters) > 16:
        return f"must have at most 16 items, got {len(filters)}"
    types = [item.type for item in filters]
    if "RequestRedirect" in types and "URLRewrite" in types:
        return "may specify either RequestRedirect or URLRewrite, but not both"
    for once in (
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "CORS",
    ):
        if types.count(once) > 1:
            return f"{once} filter cannot be repeated"
    return None


filter_list = rule(_filter_list_error)
"""The validator of a list of filters (a rule's or a backendRef's): the CRD's CEL rules."""

decode.shape(HTTPRouteFilter, accepted=tuple(_DROPPED.values()), prepare=_filter_document)
