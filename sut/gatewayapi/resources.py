"""Gateway API objects as immutable values, and `Resources`: the whole world the translator sees.

Every class here is frozen and validates on construction, so an object that exists is
well-formed in the sense of the CRD schema (the loader turns YAML into these and reports the
field path when it cannot). Semantic checks that the spec turns into status conditions (a
missing backend, a forbidden cross-namespace reference, an invalid regex) are not made here:
they belong to translation, which reports them as conditions instead of refusing the input.

Defaults follow the CRDs (`weight: 1`, `allowedRoutes.namespaces.from: Same`, a rule without
matches matches `PathPrefix /`, ...), so a value built in Python equals the one loaded from the
YAML a user would write.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import attrs

__all__ = [
    "CORE_GROUP",
    "ENVOY_GATEWAY_GROUP",
    "GATEWAY_GROUP",
    "LOAD_BALANCER_TYPES",
    "POLICY_TARGET_KINDS",
    "AllowedRoutes",
    "BackendRef",
    "BackendTrafficPolicy",
    "Endpoint",
    "Gateway",
    "GatewayClass",
    "HTTPHeader",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteRule",
    "HeaderMatch",
    "HeaderModifier",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Labels",
    "Listener",
    "ListenerTLS",
    "Namespace",
    "ObjectKey",
    "ObjectMeta",
    "ParentReference",
    "PathMatch",
    "PathModifier",
    "PolicyTargetReference",
    "QueryParamMatch",
    "ReferenceGrant",
    "ReferenceGrantFrom",
    "ReferenceGrantTo",
    "RequestRedirect",
    "Resources",
    "RouteGroupKind",
    "RouteMatch",
    "RouteNamespaces",
    "Secret",
    "SecretObjectReference",
    "Service",
    "ServiceEndpoints",
    "ServicePort",
    "URLRewrite",
    "hostname_error",
    "parse_duration",
    "precise_hostname_error",
]

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""
ENVOY_GATEWAY_GROUP = "gateway.envoyproxy.io"

# Patterns copied from the CRD OpenAPI schema (apis/v1/shared_types.go).
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PRECISE_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
_SECTION_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_UNITS = {
    "h": datetime.timedelta(hours=1),
    "m": datetime.timedelta(minutes=1),
    "s": datetime.timedelta(seconds=1),
    "ms": datetime.timedelta(milliseconds=1),
}

T = TypeVar("T")


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


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _freeze(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(items)


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    """In order, each item once (naming one target twice means naming it once)."""
    return tuple(dict.fromkeys(items))


def _str_tuple(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


def _valid_port(port: int, what: str) -> None:
    _check(isinstance(port, int) and 1 <= port <= 65535, f"{what} must be in 1..65535, got {port}")


# --------------------------------------------------------------------------- metadata


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
        _check(keys == sorted(set(keys)), "labels must be sorted with unique keys")

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

    name: str
    namespace: str = ""
    labels: Labels = attrs.field(default=Labels(), converter=_labels_converter)
    generation: int = 1
    creation_timestamp: datetime.datetime | None = attrs.field(
        default=None, converter=_timestamp_converter
    )

    def __attrs_post_init__(self) -> None:
        _check(1 <= len(self.name) <= 253, f"metadata.name {self.name!r} must be 1..253 chars")
        if self.namespace:
            _check(
                bool(_NAMESPACE.match(self.namespace)) and len(self.namespace) <= 63,
                f"metadata.namespace {self.namespace!r} is not an RFC 1123 label",
            )
        _check(self.generation >= 0, "metadata.generation must be >= 0")

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.namespace, self.name)


# --------------------------------------------------------------------------- cluster objects


@attrs.frozen
class Namespace:
    metadata: ObjectMeta

    @property
    def key(self) -> ObjectKey:
        return ObjectKey("", self.metadata.name)


@attrs.frozen
class GatewayClass:
    metadata: ObjectMeta
    controller_name: str

    @property
    def key(self) -> ObjectKey:
        return ObjectKey("", self.metadata.name)


# --------------------------------------------------------------------------- Gateway


@attrs.frozen
class SecretObjectReference:
    """A Listener's certificateRef; `namespace` None means the Gateway's namespace."""

    name: str
    namespace: str | None = None
    group: str = CORE_GROUP
    kind: str = "Secret"


@attrs.frozen
class ListenerTLS:
    mode: str = "Terminate"
    certificate_refs: tuple[SecretObjectReference, ...] = attrs.field(default=(), converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(self.mode in ("Terminate", "Passthrough"), f"unknown tls mode {self.mode!r}")
        _check(len(self.certificate_refs) <= 64, "at most 64 certificateRefs")


_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@attrs.frozen
class LabelSelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        _check(self.operator in _SELECTOR_OPERATORS, f"unknown operator {self.operator!r}")
        if self.operator in ("In", "NotIn"):
            _check(bool(self.values), f"operator {self.operator} needs values")
        else:
            _check(not self.values, f"operator {self.operator} takes no values")

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@attrs.frozen
class LabelSelector:
    """A metav1.LabelSelector; the empty selector matches every namespace, as in Kubernetes."""

    match_labels: Labels = attrs.field(default=Labels(), converter=_labels_converter)
    match_expressions: tuple[LabelSelectorRequirement, ...] = attrs.field(
        default=(), converter=_freeze
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels.items) and all(
            requirement.matches(labels) for requirement in self.match_expressions
        )


@attrs.frozen
class RouteNamespaces:
    from_: str = "Same"
    selector: LabelSelector | None = None

    def __attrs_post_init__(self) -> None:
        _check(self.from_ in ("All", "Same", "Selector"), f"unknown from {self.from_!r}")


@attrs.frozen(order=True)
class RouteGroupKind:
    kind: str
    group: str = GATEWAY_GROUP


@attrs.frozen
class AllowedRoutes:
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = attrs.field(default=(), converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(len(self.kinds) <= 8, "at most 8 allowedRoutes.kinds")


@attrs.frozen
class Listener:
    name: str
    port: int
    protocol: str
    hostname: str | None = None
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    def __attrs_post_init__(self) -> None:
        _check(bool(_SECTION_NAME.match(self.name)), f"listener name {self.name!r} is invalid")
        _valid_port(self.port, "listener port")
        if self.hostname is not None:
            error = hostname_error(self.hostname)
            _check(error is None, f"listener hostname {self.hostname!r}: {error}")
        if self.protocol in ("HTTP", "TCP", "UDP"):
            _check(self.tls is None, f"tls must not be specified for protocol {self.protocol}")
        if self.protocol == "HTTPS" and self.tls is not None:
            _check(self.tls.mode == "Terminate", "tls mode must be Terminate for protocol HTTPS")


@attrs.frozen
class Gateway:
    metadata: ObjectMeta
    gateway_class_name: str
    listeners: tuple[Listener, ...] = attrs.field(converter=_freeze)
    addresses: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "a Gateway is namespaced")
        _check(1 <= len(self.listeners) <= 64, "a Gateway needs 1..64 listeners")
        names = [listener.name for listener in self.listeners]
        _check(len(names) == len(set(names)), "listener names must be unique within the Gateway")
        combos = [(item.port, item.protocol, item.hostname) for item in self.listeners]
        _check(
            len(combos) == len(set(combos)),
            "combination of port, protocol and hostname must be unique for each listener",
        )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def listener(self, name: str) -> Listener | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None


# --------------------------------------------------------------------------- HTTPRoute


@attrs.frozen
class ParentReference:
    name: str
    namespace: str | None = None
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    section_name: str | None = None
    port: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.port is not None:
            _valid_port(self.port, "parentRef port")


_PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
_VALUE_TYPES = ("Exact", "RegularExpression")
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def path_value_error(path_type: str, value: str) -> str | None:
    """The CRD's CEL rules on HTTPPathMatch (and path modifiers): why `value` is invalid."""
    if len(value) > 1024:
        return "must be at most 1024 characters"
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
    type: str = "PathPrefix"
    value: str = "/"

    def __attrs_post_init__(self) -> None:
        _check(self.type in _PATH_TYPES, f"unknown path match type {self.type!r}")
        error = path_value_error(self.type, self.value)
        _check(error is None, f"path {self.value!r}: {error}")
        _check(bool(self.value), "path value must not be empty")


def _header_name_ok(name: str) -> None:
    _check(
        1 <= len(name) <= 256 and bool(_HEADER_NAME.match(name)),
        f"header name {name!r} must match {_HEADER_NAME.pattern}",
    )


@attrs.frozen
class HeaderMatch:
    name: str
    value: str
    type: str = "Exact"

    def __attrs_post_init__(self) -> None:
        _header_name_ok(self.name)
        _check(self.type in _VALUE_TYPES, f"unknown header match type {self.type!r}")
        _check(1 <= len(self.value) <= 4096, "header match value must be 1..4096 characters")


@attrs.frozen
class QueryParamMatch:
    name: str
    value: str
    type: str = "Exact"

    def __attrs_post_init__(self) -> None:
        _header_name_ok(self.name)
        _check(self.type in _VALUE_TYPES, f"unknown query param match type {self.type!r}")
        _check(1 <= len(self.value) <= 1024, "query param value must be 1..1024 characters")


@attrs.frozen
class RouteMatch:
    """An HTTPRouteMatch: every condition present must hold."""

    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = attrs.field(default=(), converter=_freeze)
    query_params: tuple[QueryParamMatch, ...] = attrs.field(default=(), converter=_freeze)
    method: str | None = None

    def __attrs_post_init__(self) -> None:
        _check(len(self.headers) <= 16, "at most 16 header matches")
        _check(len(self.query_params) <= 16, "at most 16 query param matches")
        # listType=map with listMapKey=name: the API server refuses duplicate names.
        header_names = [header.name for header in self.headers]
        _check(len(header_names) == len(set(header_names)), "duplicate header match name")
        query_names = [query.name for query in self.query_params]
        _check(len(query_names) == len(set(query_names)), "duplicate query param match name")
        if self.method is not None:
            _check(self.method in _METHODS, f"unknown method {self.method!r}")


# Header values in modifiers: the (experimental-channel) CRD pattern; Envoy refuses control chars.
_HEADER_VALUE = re.compile(r"^[!-~]+([\t ]?[!-~]+)*$")


@attrs.frozen
class HTTPHeader:
    name: str
    value: str

    def __attrs_post_init__(self) -> None:
        _header_name_ok(self.name)
        _check(
            1 <= len(self.value) <= 4096 and bool(_HEADER_VALUE.match(self.value)),
            f"header value {self.value!r} must be 1..4096 printable ASCII characters",
        )


@attrs.frozen
class HeaderModifier:
    set: tuple[HTTPHeader, ...] = attrs.field(default=(), converter=_freeze)
    add: tuple[HTTPHeader, ...] = attrs.field(default=(), converter=_freeze)
    remove: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        for part, items in (("set", self.set), ("add", self.add), ("remove", self.remove)):
            _check(len(items) <= 16, f"at most 16 entries in {part}")
        for name in self.remove:
            _header_name_ok(name)
        _check(len({h.name for h in self.set}) == len(self.set), "duplicate name in set")
        _check(len({h.name for h in self.add}) == len(self.add), "duplicate name in add")
        _check(len(set(self.remove)) == len(self.remove), "duplicate name in remove")


@attrs.frozen
class PathModifier:
    type: str
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    def __attrs_post_init__(self) -> None:
        _check(
            self.type in ("ReplaceFullPath", "ReplacePrefixMatch"),
            f"unknown path modifier type {self.type!r}",
        )
        if self.type == "ReplaceFullPath":
            _check(self.replace_full_path is not None, "replaceFullPath must be specified")
            _check(self.replace_prefix_match is None, "type must be 'ReplacePrefixMatch'")
        else:
            _check(self.replace_prefix_match is not None, "replacePrefixMatch must be specified")
            _check(self.replace_full_path is None, "type must be 'ReplaceFullPath'")
        for value in (self.replace_full_path, self.replace_prefix_match):
            _check(value is None or len(value) <= 1024, "path modifier values are <= 1024 chars")

    @property
    def value(self) -> str:
        return (
            self.replace_full_path
            if self.replace_full_path is not None
            else (self.replace_prefix_match or "")
        )


_REDIRECT_CODES = (301, 302, 303, 307, 308)


@attrs.frozen
class RequestRedirect:
    scheme: str | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = None
    status_code: int = 302

    def __attrs_post_init__(self) -> None:
        _check(self.scheme in (None, "http", "https"), f"unknown scheme {self.scheme!r}")
        if self.hostname is not None:
            error = precise_hostname_error(self.hostname)
            _check(error is None, f"redirect hostname {self.hostname!r}: {error}")
        if self.port is not None:
            _valid_port(self.port, "redirect port")
        _check(self.status_code in _REDIRECT_CODES, f"unsupported statusCode {self.status_code}")


@attrs.frozen
class URLRewrite:
    hostname: str | None = None
    path: PathModifier | None = None

    def __attrs_post_init__(self) -> None:
        if self.hostname is not None:
            error = precise_hostname_error(self.hostname)
            _check(error is None, f"rewrite hostname {self.hostname!r}: {error}")


FILTER_TYPES = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "ExtensionRef",
    "CORS",
    "ExternalAuth",
)


@attrs.frozen
class HTTPRouteFilter:
    """One filter; only the field named by `type` is set. Unsupported types keep no payload."""

    type: str
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None

    def __attrs_post_init__(self) -> None:
        _check(self.type in FILTER_TYPES, f"unknown filter type {self.type!r}")
        payloads = {
            "RequestHeaderModifier": self.request_header_modifier,
            "ResponseHeaderModifier": self.response_header_modifier,
            "RequestRedirect": self.request_redirect,
            "URLRewrite": self.url_rewrite,
        }
        for filter_type, payload in payloads.items():
            if filter_type == self.type:
                _check(payload is not None, f"filter {filter_type} needs its configuration")
            else:
                _check(payload is None, f"only the {self.type} field may be set")


def _filters_ok(filters: tuple[HTTPRouteFilter, ...]) -> None:
    _check(len(filters) <= 16, "at most 16 filters")
    types = [item.type for item in filters]
    _check(
        not ("RequestRedirect" in types and "URLRewrite" in types),
        "may specify either RequestRedirect or URLRewrite, but not both",
    )
    for once in (
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "CORS",
    ):
        _check(types.count(once) <= 1, f"{once} filter cannot be repeated")


@attrs.frozen
class BackendRef:
    name: str
    port: int | None = None
    namespace: str | None = None
    group: str = CORE_GROUP
    kind: str = "Service"
    weight: int = 1
    filters: tuple[HTTPRouteFilter, ...] = attrs.field(default=(), converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(0 <= self.weight <= 1_000_000, f"weight must be in 0..1000000, got {self.weight}")
        if self.port is not None:
            _valid_port(self.port, "backendRef port")
        # CEL on BackendObjectReference: "Must have port for Service reference".
        if self.group == CORE_GROUP and self.kind == "Service":
            _check(self.port is not None, "must have port for Service reference")
        _filters_ok(self.filters)

    @property
    def is_service(self) -> bool:
        return self.group == CORE_GROUP and self.kind == "Service"


def _default_matches() -> tuple[RouteMatch, ...]:
    return (RouteMatch(),)


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
    matches: tuple[RouteMatch, ...] = attrs.field(factory=_default_matches, converter=_freeze)
    filters: tuple[HTTPRouteFilter, ...] = attrs.field(default=(), converter=_freeze)
    backend_refs: tuple[BackendRef, ...] = attrs.field(default=(), converter=_freeze)
    name: str | None = None
    unsupported_fields: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    """Valid fields routeproof does not implement (timeouts, retry, ...): the rule is dropped."""

    def __attrs_post_init__(self) -> None:
        _check(len(self.matches) <= 64, "at most 64 matches per rule")
        _check(len(self.backend_refs) <= 16, "at most 16 backendRefs")
        _filters_ok(self.filters)
        if self.backend_refs:
            _check(
                all(item.type != "RequestRedirect" for item in self.filters),
                "RequestRedirect filter must not be used together with backendRefs",
            )
        prefix_replace = _uses_prefix_replace(self.filters) or any(
            _uses_prefix_replace(ref.filters) for ref in self.backend_refs
        )
        if prefix_replace:
            _check(
                len(self.matches) == 1 and self.matches[0].path.type == "PathPrefix",
                "when using replacePrefixMatch, exactly one PathPrefix match must be specified",
            )


def _default_rules() -> tuple[HTTPRouteRule, ...]:
    return (HTTPRouteRule(),)


@attrs.frozen
class HTTPRoute:
    metadata: ObjectMeta
    parent_refs: tuple[ParentReference, ...] = attrs.field(default=(), converter=_freeze)
    hostnames: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    rules: tuple[HTTPRouteRule, ...] = attrs.field(factory=_default_rules, converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "an HTTPRoute is namespaced")
        _check(len(self.parent_refs) <= 32, "at most 32 parentRefs")
        _check(len(self.hostnames) <= 16, "at most 16 hostnames")
        for hostname in self.hostnames:
            error = hostname_error(hostname)
            _check(error is None, f"hostname {hostname!r}: {error}")
        _check(1 <= len(self.rules) <= 16, "an HTTPRoute has 1..16 rules")
        total = sum(len(rule.matches) for rule in self.rules)
        _check(total <= 128, f"the total number of matches across all rules is {total} > 128")
        names = [rule.name for rule in self.rules if rule.name is not None]
        _check(len(names) == len(set(names)), "rule names must be unique within the route")
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
            _check(
                len(with_section) == 1
                and len(with_port) == 1
                and (True in with_section | with_port),
                "sectionName or port must be specified when parentRefs includes 2 or more"
                " references to the same parent",
            )
            pairs = [(ref.section_name, ref.port) for ref in refs]
            _check(
                len(pairs) == len(set(pairs)),
                "sectionName or port must be unique when parentRefs includes 2 or more"
                " references to the same parent",
            )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key


# --------------------------------------------------------------------------- core objects


@attrs.frozen
class ServicePort:
    port: int
    name: str | None = None
    protocol: str = "TCP"
    target_port: int | str | None = None

    def __attrs_post_init__(self) -> None:
        _valid_port(self.port, "service port")
        _check(self.protocol in ("TCP", "UDP", "SCTP"), f"unknown protocol {self.protocol!r}")


@attrs.frozen
class Service:
    metadata: ObjectMeta
    ports: tuple[ServicePort, ...] = attrs.field(default=(), converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "a Service is namespaced")
        numbers = [(port.port, port.protocol) for port in self.ports]
        _check(len(numbers) == len(set(numbers)), "duplicate Service port")

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def port(self, number: int) -> ServicePort | None:
        for item in self.ports:
            if item.port == number and item.protocol == "TCP":
                return item
        return None


@attrs.frozen
class ReferenceGrantFrom:
    group: str
    kind: str
    namespace: str


@attrs.frozen
class ReferenceGrantTo:
    group: str
    kind: str
    name: str | None = None


@attrs.frozen
class ReferenceGrant:
    metadata: ObjectMeta
    from_: tuple[ReferenceGrantFrom, ...] = attrs.field(converter=_freeze)
    to: tuple[ReferenceGrantTo, ...] = attrs.field(converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "a ReferenceGrant is namespaced")
        _check(1 <= len(self.from_) <= 16, "a ReferenceGrant has 1..16 from entries")
        _check(1 <= len(self.to) <= 16, "a ReferenceGrant has 1..16 to entries")

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def permits(
        self, from_group: str, from_kind: str, from_namespace: str, to: ReferenceGrantTo
    ) -> bool:
        allowed_from = any(
            (item.group, item.kind, item.namespace) == (from_group, from_kind, from_namespace)
            for item in self.from_
        )
        allowed_to = any(
            (item.group, item.kind) == (to.group, to.kind) and item.name in (None, to.name)
            for item in self.to
        )
        return allowed_from and allowed_to


@attrs.frozen
class Secret:
    """A Secret with its data already base64-decoded."""

    metadata: ObjectMeta
    type: str = "Opaque"
    data: tuple[tuple[str, bytes], ...] = attrs.field(default=(), converter=_freeze)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "a Secret is namespaced")
        keys = [key for key, _ in self.data]
        _check(keys == sorted(set(keys)), "secret data must be sorted with unique keys")

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
    address: str
    port: int

    def __attrs_post_init__(self) -> None:
        _valid_port(self.port, "endpoint port")
        _check(bool(self.address), "endpoint address must not be empty")


def _sorted_endpoints(items: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    return tuple(sorted(set(items)))


@attrs.frozen
class ServiceEndpoints:
    """The ready endpoints behind one Service port; the harness supplies them, manifests don't."""

    namespace: str
    service: str
    port: int
    endpoints: tuple[Endpoint, ...] = attrs.field(default=(), converter=_sorted_endpoints)

    def __attrs_post_init__(self) -> None:
        _valid_port(self.port, "service port")

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.namespace, self.service, self.port)


# --------------------------------------------------------------------------- Envoy Gateway policies

POLICY_TARGET_KINDS = (
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "UDPRoute",
    "TCPRoute",
    "TLSRoute",
)
"""Kinds a BackendTrafficPolicy may target (the CRD's CEL rule); only Gateway and HTTPRoute
exist in `Resources`, so a target of another kind is never found."""

LOAD_BALANCER_TYPES = ("ConsistentHash", "LeastRequest", "Random", "RoundRobin")
"""`spec.loadBalancer.type` values the CRD allows (ConsistentHash is not implemented here)."""


@attrs.frozen(order=True)
class PolicyTargetReference:
    """A `LocalPolicyTargetReference`: the target lives in the policy's own namespace."""

    kind: str
    name: str
    group: str = GATEWAY_GROUP

    def __attrs_post_init__(self) -> None:
        _check(
            self.group == GATEWAY_GROUP,
            f"this policy can only have a targetRefs[*].group of {GATEWAY_GROUP}",
        )
        _check(
            self.kind in POLICY_TARGET_KINDS,
            "this policy can only have a targetRefs[*].kind of " + "/".join(POLICY_TARGET_KINDS),
        )
        _check(1 <= len(self.name) <= 253, f"target name {self.name!r} must be 1..253 chars")


@attrs.frozen
class BackendTrafficPolicy:
    """Envoy Gateway's BackendTrafficPolicy, reduced to the cluster settings translated here.

    `load_balancer` and `connect_timeout` are None when the policy leaves them unset (the proxy
    default then applies). `unsupported_fields` names the Envoy Gateway fields the manifest sets
    that this gateway does not implement (as `spec.retry`, `spec.loadBalancer.slowStart`):
    translation refuses such a policy in its status instead of applying half of it.
    """

    metadata: ObjectMeta
    target_refs: tuple[PolicyTargetReference, ...] = attrs.field(converter=_unique)
    load_balancer: str | None = None
    connect_timeout: datetime.timedelta | None = None
    unsupported_fields: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)

    def __attrs_post_init__(self) -> None:
        _check(bool(self.metadata.namespace), "a BackendTrafficPolicy is namespaced")
        _check(bool(self.target_refs), "either targetRef or targetRefs must be used")
        if self.load_balancer is not None:
            _check(
                self.load_balancer in LOAD_BALANCER_TYPES,
                f"unknown loadBalancer type {self.load_balancer!r}",
            )
        if self.connect_timeout is not None:
            _check(
                self.connect_timeout >= datetime.timedelta(0), "connectTimeout must not be negative"
            )

    @property
    def key(self) -> ObjectKey:
        return self.metadata.key

    def problem(self) -> str | None:
        """Why translation cannot apply this policy as written (a status message), or None."""
        if self.unsupported_fields:
            return "fields not supported: " + ", ".join(self.unsupported_fields)
        if self.load_balancer == "ConsistentHash":
            return "loadBalancer type ConsistentHash is not supported"
        if self.connect_timeout is not None and self.connect_timeout <= datetime.timedelta(0):
            # Envoy requires Cluster.connect_timeout > 0 and would refuse the whole update.
            return "timeout.tcp.connectTimeout must be greater than zero"
        return None


# --------------------------------------------------------------------------- Resources


@attrs.frozen
class Resources:
    """Everything translation reads: Gateway API objects plus endpoints, sorted by key.

    Immutable: the `with_*`/`without_*` methods return new collections, so the harness can apply
    one operation at a time and compare whole worlds with `==`.
    """

    namespaces: tuple[Namespace, ...] = attrs.field(default=(), converter=_freeze)
    gateway_classes: tuple[GatewayClass, ...] = attrs.field(default=(), converter=_freeze)
    gateways: tuple[Gateway, ...] = attrs.field(default=(), converter=_freeze)
    http_routes: tuple[HTTPRoute, ...] = attrs.field(default=(), converter=_freeze)
    services: tuple[Service, ...] = attrs.field(default=(), converter=_freeze)
    reference_grants: tuple[ReferenceGrant, ...] = attrs.field(default=(), converter=_freeze)
    secrets: tuple[Secret, ...] = attrs.field(default=(), converter=_freeze)
    endpoints: tuple[ServiceEndpoints, ...] = attrs.field(default=(), converter=_freeze)
    backend_traffic_policies: tuple[BackendTrafficPolicy, ...] = attrs.field(
        default=(), converter=_freeze
    )
    _index: dict[str, dict[Any, Any]] = attrs.field(
        init=False, eq=False, repr=False, hash=False, factory=dict
    )

    def __attrs_post_init__(self) -> None:
        for field in _FIELD_OF.values():
            items = sorted(getattr(self, field), key=_key_of)
            keys = [_key_of(item) for item in items]
            for previous, current in itertools.pairwise(keys):
                if previous == current:
                    raise ValueError(f"two objects named {current} in Resources.{field}")
            object.__setattr__(self, field, tuple(items))
        index: dict[str, dict[Any, Any]] = {
            "namespaces": {item.metadata.name: item for item in self.namespaces},
            "gateway_classes": {item.metadata.name: item for item in self.gateway_classes},
            "gateways": {item.key: item for item in self.gateways},
            "http_routes": {item.key: item for item in self.http_routes},
            "services": {item.key: item for item in self.services},
            "secrets": {item.key: item for item in self.secrets},
            "endpoints": {item.key: item for item in self.endpoints},
            "backend_traffic_policies": {item.key: item for item in self.backend_traffic_policies},
        }
        grants: dict[str, list[ReferenceGrant]] = {}
        for grant in self.reference_grants:
            grants.setdefault(grant.metadata.namespace, []).append(grant)
        index["grants"] = {ns: tuple(items) for ns, items in grants.items()}
        object.__setattr__(self, "_index", index)

    # ---- lookups

    def namespace(self, name: str) -> Namespace | None:
        return self._index["namespaces"].get(name)

    def namespace_labels(self, name: str) -> dict[str, str]:
        """The namespace's labels plus `kubernetes.io/metadata.name` (Kubernetes always sets it)."""
        found = self.namespace(name)
        labels = found.metadata.labels.as_dict() if found else {}
        labels["kubernetes.io/metadata.name"] = name
        return labels

    def gateway_class(self, name: str) -> GatewayClass | None:
        return self._index["gateway_classes"].get(name)

    def gateway(self, namespace: str, name: str) -> Gateway | None:
        return self._index["gateways"].get(ObjectKey(namespace, name))

    def http_route(self, namespace: str, name: str) -> HTTPRoute | None:
        return self._index["http_routes"].get(ObjectKey(namespace, name))

    def service(self, namespace: str, name: str) -> Service | None:
        return self._index["services"].get(ObjectKey(namespace, name))

    def secret(self, namespace: str, name: str) -> Secret | None:
        return self._index["secrets"].get(ObjectKey(namespace, name))

    def backend_traffic_policy(self, namespace: str, name: str) -> BackendTrafficPolicy | None:
        return self._index["backend_traffic_policies"].get(ObjectKey(namespace, name))

    def reference_grants_in(self, namespace: str) -> tuple[ReferenceGrant, ...]:
        return self._index["grants"].get(namespace, ())

    def service_endpoints(self, namespace: str, service: str, port: int) -> tuple[Endpoint, ...]:
        found = self._index["endpoints"].get((namespace, service, port))
        return found.endpoints if found else ()

    def reference_permitted(
        self,
        *,
        from_group: str,
        from_kind: str,
        from_namespace: str,
        to_group: str,
        to_kind: str,
        to_namespace: str,
        to_name: str,
    ) -> bool:
        """Same-namespace references are always allowed; others need a ReferenceGrant there."""
        if from_namespace == to_namespace:
            return True
        target = ReferenceGrantTo(to_group, to_kind, to_name)
        return any(
            grant.permits(from_group, from_kind, from_namespace, target)
            for grant in self.reference_grants_in(to_namespace)
        )

    def objects(self) -> Iterator[object]:
        """Every object, kind by kind, in key order."""
        yield from self.namespaces
        yield from self.gateway_classes
        yield from self.gateways
        yield from self.http_routes
        yield from self.services
        yield from self.reference_grants
        yield from self.secrets
        yield from self.endpoints
        yield from self.backend_traffic_policies

    # ---- functional updates

    def merged(self, other: Resources) -> Resources:
        """Objects of `other` replace objects with the same key here."""
        result = self
        for item in other.objects():
            result = result.with_object(item)
        return result

    def with_object(self, item: object) -> Resources:
        field = _FIELD_OF.get(type(item))
        if field is None:
            raise TypeError(f"not a resource: {type(item).__name__}")
        current = getattr(self, field)
        key = _key_of(item)
        kept = tuple(existing for existing in current if _key_of(existing) != key)
        return attrs.evolve(self, **{field: (*kept, item)})

    def without_object(self, kind: type, key: object) -> Resources:
        field = _FIELD_OF.get(kind)
        if field is None:
            raise TypeError(f"not a resource kind: {kind.__name__}")
        current = getattr(self, field)
        return attrs.evolve(
            self, **{field: tuple(item for item in current if _key_of(item) != key)}
        )

    def with_namespace(self, namespace: Namespace) -> Resources:
        return self.with_object(namespace)

    def with_gateway_class(self, gateway_class: GatewayClass) -> Resources:
        return self.with_object(gateway_class)

    def with_gateway(self, gateway: Gateway) -> Resources:
        return self.with_object(gateway)

    def without_gateway(self, namespace: str, name: str) -> Resources:
        return self.without_object(Gateway, ObjectKey(namespace, name))

    def with_route(self, route: HTTPRoute) -> Resources:
        return self.with_object(route)

    def without_route(self, namespace: str, name: str) -> Resources:
        return self.without_object(HTTPRoute, ObjectKey(namespace, name))

    def with_service(self, service: Service) -> Resources:
        return self.with_object(service)

    def without_service(self, namespace: str, name: str) -> Resources:
        return self.without_object(Service, ObjectKey(namespace, name))

    def with_reference_grant(self, grant: ReferenceGrant) -> Resources:
        return self.with_object(grant)

    def without_reference_grant(self, namespace: str, name: str) -> Resources:
        return self.without_object(ReferenceGrant, ObjectKey(namespace, name))

    def with_secret(self, secret: Secret) -> Resources:
        return self.with_object(secret)

    def without_secret(self, namespace: str, name: str) -> Resources:
        return self.without_object(Secret, ObjectKey(namespace, name))

    def with_endpoints(self, endpoints: ServiceEndpoints) -> Resources:
        return self.with_object(endpoints)

    def without_endpoints(self, namespace: str, service: str, port: int) -> Resources:
        return self.without_object(ServiceEndpoints, (namespace, service, port))

    def with_backend_traffic_policy(self, policy: BackendTrafficPolicy) -> Resources:
        return self.with_object(policy)

    def without_backend_traffic_policy(self, namespace: str, name: str) -> Resources:
        return self.without_object(BackendTrafficPolicy, ObjectKey(namespace, name))


_FIELD_OF: dict[type, str] = {
    Namespace: "namespaces",
    GatewayClass: "gateway_classes",
    Gateway: "gateways",
    HTTPRoute: "http_routes",
    Service: "services",
    ReferenceGrant: "reference_grants",
    Secret: "secrets",
    ServiceEndpoints: "endpoints",
    BackendTrafficPolicy: "backend_traffic_policies",
}


def _key_of(item: Any) -> Any:
    return item.key
