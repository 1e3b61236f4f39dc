"""HTTPRoute: parent references, rules, matches and backend references.

Defaults follow the CRD (`weight: 1`; a rule without matches matches `PathPrefix /`; a route
without rules has one rule), so a value built in Python equals the one loaded from the YAML a
user would write. Checks the spec turns into status conditions (a missing backend, a forbidden
cross-namespace reference, an invalid regex) belong to translation, not here.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from sut.gatewayapi import decode
from sut.gatewayapi.filters import HTTPRouteFilter, filter_list
from sut.gatewayapi.meta import ObjectKey, ObjectMeta, namespaced
from sut.gatewayapi.schema import (
    CORE_GROUP,
    GATEWAY_GROUP,
    FieldError,
    as_tuple,
    between,
    each,
    header_name_error,
    hostname_error,
    items,
    length,
    one_of,
    optional,
    rule,
    unique,
)

__all__ = [
    "BackendRef",
    "HTTPRoute",
    "HTTPRouteRule",
    "HeaderMatch",
    "ParentReference",
    "PathMatch",
    "QueryParamMatch",
    "RouteMatch",
    "path_value_error",
]

_PORT = optional(between(1, 65535))
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
_UNSUPPORTED_RULE_FIELDS = ("timeouts", "retry", "sessionPersistence")


@attrs.frozen
class ParentReference:
    name: str = attrs.field(validator=length(1, 253))
    namespace: str | None = None
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    section_name: str | None = None
    port: int | None = attrs.field(default=None, validator=_PORT)


def path_value_error(path_type: str, value: str) -> str | None:
    """The CRD's CEL rules on HTTPPathMatch: why `value` is invalid for `path_type`."""
    if not 1 <= len(value) <= 1024:
        return "must be 1..1024 characters"
    if path_type not in ("Exact", "PathPrefix"):
        return None
    if not value.startswith("/"):
        return "value must be an absolute path and start with '/'"
    for bad in ("//", "/./", "/../", "%2f", "%2F", "#"):
        if bad in value:
            return f"must not contain {bad!r}"
    for bad in ("/..", "/."):
        if value.endswith(bad):
            return f"must not end with {bad!r}"
    if not _PATH_CHARS.match(value):
        return "must only contain valid path characters"
    return None


@attrs.frozen
class PathMatch:
    type: str = attrs.field(
        default="PathPrefix", validator=one_of("Exact", "PathPrefix", "RegularExpression")
    )
    value: str = "/"

    def __attrs_post_init__(self) -> None:
        error = path_value_error(self.type, self.value)
        if error is not None:
            raise FieldError("value", f"path {self.value!r}: {error}")


_VALUE_TYPE = one_of("Exact", "RegularExpression")


@attrs.frozen
class HeaderMatch:
    name: str = attrs.field(validator=rule(header_name_error))
    value: str = attrs.field(validator=length(1, 4096))
    type: str = attrs.field(default="Exact", validator=_VALUE_TYPE)


@attrs.frozen
class QueryParamMatch:
    name: str = attrs.field(validator=rule(header_name_error))
    value: str = attrs.field(validator=length(1, 1024))
    type: str = attrs.field(default="Exact", validator=_VALUE_TYPE)


def _named(message: str) -> list[Any]:
    # listType=map with listMapKey=name: the API server refuses duplicate names.
    return [items(0, 16), unique(lambda match: match.name, message)]


@attrs.frozen
class RouteMatch:
    """An HTTPRouteMatch: every condition present must hold."""

    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = attrs.field(
        default=(), converter=as_tuple, validator=_named("duplicate header match name")
    )
    query_params: tuple[QueryParamMatch, ...] = attrs.field(
        default=(), converter=as_tuple, validator=_named("duplicate query param match name")
    )
    method: str | None = attrs.field(default=None, validator=optional(one_of(*_METHODS)))


@attrs.frozen
class BackendRef:
    name: str = attrs.field(validator=length(1, 253))
    port: int | None = attrs.field(default=None, validator=_PORT)
    namespace: str | None = None
    group: str = CORE_GROUP
    kind: str = "Service"
    weight: int = attrs.field(default=1, validator=between(0, 1_000_000))
    filters: tuple[HTTPRouteFilter, ...] = attrs.field(
        default=(), converter=as_tuple, validator=filter_list
    )

    def __attrs_post_init__(self) -> None:
        # CEL on BackendObjectReference.
        if self.is_service and self.port is None:
            raise ValueError("must have port for Service reference")

    @property
    def is_service(self) -> bool:
        return self.group == CORE_GROUP and self.kind == "Service"


def _uses_prefix_replace(filters: tuple[HTTPRouteFilter, ...]) -> bool:
    for item in filters:
        modifier = None
        if item.request_redirect is not None:
            modifier = item.request_redirect.path
        elif item.url_rewrite is not None:
            modifier = item.url_rewrite.path
        if modifier is not None and modifier.type == "ReplacePrefixMatch":
            return True
    return False


@attrs.frozen
class HTTPRouteRule:
    matches: tuple[RouteMatch, ...] = attrs.field(
        factory=lambda: (RouteMatch(),), converter=as_tuple, validator=items(0, 64)
    )
    filters: tuple[HTTPRouteFilter, ...] = attrs.field(
        default=(), converter=as_tuple, validator=filter_list
    )
    backend_refs: tuple[BackendRef, ...] = attrs.field(
        default=(), converter=as_tuple, validator=items(0, 16)
    )
    name: str | None = None
    unsupported_fields: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    """Valid fields routeproof does not implement (timeouts, retry, ...): the rule is dropped."""

    def __attrs_post_init__(self) -> None:
        # CEL on HTTPRouteRule.
        if self.backend_refs and any(item.type == "RequestRedirect" for item in self.filters):
            raise ValueError("RequestRedirect filter must not be used together with backendRefs")
        prefix_replace = _uses_prefix_replace(self.filters) or any(
            _uses_prefix_replace(ref.filters) for ref in self.backend_refs
        )
        if prefix_replace and not (
            len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix"
        ):
            raise ValueError(
                "when using replacePrefixMatch, exactly one PathPrefix match must be specified"
            )


def _rule_document(document: dict[str, Any]) -> dict[str, Any]:
    if document.get("matches") == []:
        del document["matches"]  # an empty list means the default match, as no list does
    present = [name for name in _UNSUPPORTED_RULE_FIELDS if document.pop(name, None) is not None]
    return {**document, "unsupported_fields": tuple(present)}


@attrs.frozen
class HTTPRoute:
    metadata: ObjectMeta = attrs.field(validator=namespaced)
    parent_refs: tuple[ParentReference, ...] = attrs.field(
        default=(), converter=as_tuple, validator=items(0, 32)
    )
    hostnames: tuple[str, ...] = attrs.field(
        default=(), converter=as_tuple, validator=[items(0, 16), each(hostname_error)]
    )
    rules: tuple[HTTPRouteRule, ...] = attrs.field(
        factory=lambda: (HTTPRouteRule(),), converter=as_tuple, validator=items(1, 16)
    )

    def __attrs_post_init__(self) -> None:
        total = sum(len(rule.matches) for rule in self.rules)
        if total > 128:
            raise ValueError(f"the total number of matches across all rules is {total} > 128")
        names = [rule.name for rule in self.rules if rule.name is not None]
        if len(names) != len(set(names)):
            raise FieldError("rules", "rule names must be unique within the route")
        self._check_distinct_parents()

    def _check_distinct_parents(self) -> None:
        # CEL on CommonRouteSpec.parentRefs: two refs to one parent need distinct sectionNames
        # (or ports); either all of them set the optional fields or none does.
        groups: dict[tuple[str, str, str, str], list[ParentReference]] = {}
        for ref in self.parent_refs:
            key = (ref.group, ref.kind, ref.namespace or "", ref.name)
            groups.setdefault(key, []).append(ref)
        for refs in groups.values():
            if len(refs) < 2:
                continue
            with_section = {ref.section_name is not None for ref in refs}
            with_port = {ref.port is not None for ref in refs}
            if not (
                len(with_section) == 1 and len(with_port) == 1 and True in with_section | with_port
            ):
                raise ValueError(
                    "sectionName or port must be specified when parentRefs includes 2 or more"
                    " references to the same parent"
                )
            pairs = [(ref.section_name, ref.port) for ref in refs]
            if len(pairs) != len(set(pairs)):
                raise ValueError(
                    "sectionName or port must be unique when parentRefs includes 2 or more"
                    " references to the same parent"
                )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key


decode.shape(
    HTTPRouteRule,
    accepted=_UNSUPPORTED_RULE_FIELDS,
    computed=("unsupported_fields",),
    prepare=_rule_document,
)
decode.shape(HTTPRoute, computed=("metadata",), accepted=("useDefaultGateways",))
