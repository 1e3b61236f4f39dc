"""Kubernetes YAML -> `Resources`, all or nothing.

Each document is read through a `_Field` cursor that knows its path (`spec.rules[0].matches[1]`),
so every complaint names the document (file, index, kind, namespace/name) and the field. The CRD
defaults are applied here; the CRD's schema and CEL rules are enforced either here or by the value
classes' own validation, whose message is then wrapped with the same location. Nothing is
half-applied: the first error aborts the whole load.

One object defined twice with identical content (the same manifest applied from two files) is
kept once, as `kubectl apply` would leave it; two different objects of one kind and
namespace/name are an error naming both documents.

With `skip_unrelated`, objects a gateway has no use for are left out with a note instead of
refused: every kind of an API group this loader does not read (apps/v1 Deployment, ...), and the
listed kinds of the groups it does read that it does not serve (v1 ServiceAccount, GRPCRoute,
Envoy Gateway's ClientTrafficPolicy, ...). Any other kind of those groups is still an error, so
a misspelt `HTTPRoutes` or `Servce` is never silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

from sut.errors import ManifestError
from sut.gatewayapi.resources import (
    CORE_GROUP,
    ENVOY_GATEWAY_GROUP,
    GATEWAY_GROUP,
    LOAD_BALANCER_TYPES,
    AllowedRoutes,
    BackendRef,
    BackendTrafficPolicy,
    Gateway,
    GatewayClass,
    HeaderMatch,
    HeaderModifier,
    HTTPHeader,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteRule,
    Labels,
    LabelSelector,
    LabelSelectorRequirement,
    Listener,
    ListenerTLS,
    Namespace,
    ObjectMeta,
    ParentReference,
    PathMatch,
    PathModifier,
    PolicyTargetReference,
    QueryParamMatch,
    ReferenceGrant,
    ReferenceGrantFrom,
    ReferenceGrantTo,
    RequestRedirect,
    Resources,
    RouteGroupKind,
    RouteMatch,
    RouteNamespaces,
    Secret,
    SecretObjectReference,
    Service,
    ServicePort,
    URLRewrite,
    hostname_error,
    parse_duration,
)

__all__ = ["load_manifests", "parse_documents"]

SkipNote = Callable[[str], None]
"""Receives one note per skipped object: `file#index (apiVersion Kind name)`."""

T = TypeVar("T")

_GATEWAY_VERSIONS = (f"{GATEWAY_GROUP}/v1", f"{GATEWAY_GROUP}/v1beta1")
_GRANT_VERSIONS = (f"{GATEWAY_GROUP}/v1beta1", f"{GATEWAY_GROUP}/v1")
_ENVOY_GATEWAY_VERSIONS = (f"{ENVOY_GATEWAY_GROUP}/v1alpha1",)

_UNSERVED_GATEWAY_API_KINDS = frozenset(
    {
        "BackendLBPolicy",
        "BackendTLSPolicy",
        "GRPCRoute",
        "ListenerSet",
        "TCPRoute",
        "TLSRoute",
        "UDPRoute",
        "XBackendTrafficPolicy",
        "XListenerSet",
        "XMesh",
    }
)
_UNREAD_KINDS: dict[str, frozenset[str]] = {
    CORE_GROUP: frozenset(
        {
            "ConfigMap",
            "Endpoints",
            "LimitRange",
            "PersistentVolumeClaim",
            "Pod",
            "ReplicationController",
            "ResourceQuota",
            "ServiceAccount",
        }
    ),
    GATEWAY_GROUP: _UNSERVED_GATEWAY_API_KINDS,
    "gateway.networking.x-k8s.io": _UNSERVED_GATEWAY_API_KINDS,
    ENVOY_GATEWAY_GROUP: frozenset(
        {
            "Backend",
            "ClientTrafficPolicy",
            "EnvoyExtensionPolicy",
            "EnvoyGateway",
            "EnvoyPatchPolicy",
            "EnvoyProxy",
            "HTTPRouteFilter",
            "SecurityPolicy",
        }
    ),
}
"""Per API group this loader reads, the kinds it skips under `skip_unrelated`; every kind of any
other group is skipped."""


def _unrelated(api_version: str, kind: str) -> bool:
    group = api_version.rpartition("/")[0]
    unread = _UNREAD_KINDS.get(group)
    return unread is None or kind in unread


class _Field:
    """A position inside one document: reads typed values and reports errors with the path."""

    def __init__(self, value: Any, path: str, document: _Document) -> None:
        self.value = value
        self.path = path
        self.document = document

    def fail(self, message: str) -> NoReturn:
        raise ManifestError(message, document=self.document.describe(), field=self.path)

    def child(self, key: str) -> _Field:
        path = f"{self.path}.{key}" if self.path else key
        value = self.value.get(key) if isinstance(self.value, Mapping) else None
        return _Field(value, path, self.document)

    @property
    def present(self) -> bool:
        return self.value is not None

    def mapping(self, allowed: Iterable[str] | None = None) -> _Field:
        if not isinstance(self.value, Mapping):
            self.fail(f"must be an object, got {_type_name(self.value)}")
        if allowed is not None:
            allowed_set = set(allowed)
            for key in self.value:
                if key not in allowed_set:
                    self.child(str(key)).fail(
                        f"unknown field (known: {', '.join(sorted(allowed_set))})"
                    )
        return self

    def items(self, max_items: int | None = None) -> list[_Field]:
        if self.value is None:
            return []
        if not isinstance(self.value, list):
            self.fail(f"must be a list, got {_type_name(self.value)}")
        if max_items is not None and len(self.value) > max_items:
            self.fail(f"must have at most {max_items} items, got {len(self.value)}")
        return [
            _Field(item, f"{self.path}[{i}]", self.document) for i, item in enumerate(self.value)
        ]

    def string(
        self,
        *,
        default: str | None = None,
        required: bool = False,
        enum: Sequence[str] | None = None,
        min_length: int = 0,
        max_length: int | None = None,
    ) -> str | None:
        if self.value is None:
            if required:
                self.fail("is required")
            return default
        if not isinstance(self.value, str):
            self.fail(f"must be a string, got {_type_name(self.value)}")
        if enum is not None and self.value not in enum:
            self.fail(f"unsupported value {self.value!r}: must be one of {', '.join(enum)}")
        if len(self.value) < min_length:
            self.fail(f"must be at least {min_length} characters")
        if max_length is not None and len(self.value) > max_length:
            self.fail(f"must be at most {max_length} characters")
        return self.value

    def required_string(self, **kwargs: Any) -> str:
        value = self.string(required=True, **kwargs)
        assert value is not None
        return value

    def integer(
        self,
        *,
        default: int | None = None,
        required: bool = False,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        if self.value is None:
            if required:
                self.fail("is required")
            return default
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"must be an integer, got {_type_name(self.value)}")
        if minimum is not None and self.value < minimum:
            self.fail(f"must be >= {minimum}, got {self.value}")
        if maximum is not None and self.value > maximum:
            self.fail(f"must be <= {maximum}, got {self.value}")
        return int(self.value)

    def string_map(self) -> dict[str, str]:
        if self.value is None:
            return {}
        self.mapping()
        result: dict[str, str] = {}
        for key, value in self.value.items():
            if not isinstance(key, str):
                self.fail(f"keys must be strings, got {_type_name(key)}")
            if not isinstance(value, str):
                self.child(key).fail(f"must be a string, got {_type_name(value)}")
            result[key] = value
        return result

    def build(self, factory: Callable[..., T], **kwargs: Any) -> T:
        """Construct a value class, turning its validation error into a located ManifestError."""
        try:
            return factory(**kwargs)
        except (ValueError, TypeError) as error:
            self.fail(str(error))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "integer"}.get(
        type(value), type(value).__name__
    )


class _Document:
    """One YAML document; `describe()` says where it is and, once read, what it defines."""

    def __init__(self, source: str, index: int, body: Any) -> None:
        self.source = source
        self.index = index
        self.body = body
        self.kind: str | None = None
        self.namespace: str | None = None
        self.name: str | None = None

    @property
    def where(self) -> str:
        return f"{self.source}#{self.index}"

    def describe(self) -> str:
        where = self.where
        if self.kind:
            target = "/".join(part for part in (self.namespace, self.name) if part)
            where += f" ({self.kind}{' ' + target if target else ''})"
        return where


# --------------------------------------------------------------------------- entry points


def load_manifests(
    *sources: str | os.PathLike[str],
    skip_unrelated: bool = False,
    on_skip: SkipNote | None = None,
) -> Resources:
    """Load YAML manifests (file paths, or YAML text) into one `Resources`.

    A `str` containing a newline or starting with `apiVersion`/`---` is YAML text; anything else
    is a path. Raises ManifestError on the first problem and applies nothing. With
    `skip_unrelated`, objects a gateway does not read are left out (see the module docstring)
    and `on_skip` receives a note naming each one.
    """
    located: list[tuple[object, _Document]] = []
    for number, source in enumerate(sources):
        if isinstance(source, os.PathLike) or not _looks_like_yaml(source):
            path = Path(source)
            try:
                text = path.read_text()
            except OSError as error:
                raise ManifestError(f"cannot read manifest: {error}", document=str(path)) from error
            name = str(path)
        else:
            text, name = source, f"<manifest {number}>"
        located.extend(_documents(text, name, skip_unrelated, on_skip))
    return _collect(located)


def _looks_like_yaml(text: str) -> bool:
    stripped = text.lstrip()
    return "\n" in text or stripped.startswith(("apiVersion", "---", "kind", "{"))


def parse_documents(
    text: str,
    *,
    source: str = "<manifest>",
    skip_unrelated: bool = False,
    on_skip: SkipNote | None = None,
) -> list[object]:
    """Every object in one multi-document YAML text, in order (skipping as `load_manifests`)."""
    return [item for item, _ in _documents(text, source, skip_unrelated, on_skip)]


def _documents(
    text: str, source: str, skip_unrelated: bool, on_skip: SkipNote | None
) -> list[tuple[object, _Document]]:
    try:
        bodies = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise ManifestError(f"invalid YAML: {error}", document=source) from error
    located: list[tuple[object, _Document]] = []
    skip = (on_skip or _ignore) if skip_unrelated else None
    for index, body in enumerate(bodies):
        if body is None:
            continue
        located.extend(_parse(_Document(source, index, body), skip))
    return located


def _ignore(note: str) -> None:
    del note


def _collect(located: Iterable[tuple[object, _Document]]) -> Resources:
    """One `Resources`; an object defined twice must be defined identically."""
    kept: dict[tuple[type, Any], tuple[Any, _Document]] = {}
    for item, document in located:
        identity = (type(item), getattr(item, "key", None))
        previous = kept.get(identity)
        if previous is None:
            kept[identity] = (item, document)
        elif previous[0] != item:
            raise ManifestError(
                f"{document.kind} {identity[1]} is already defined differently in"
                f" {previous[1].where}; an object may be repeated only with identical content",
                document=document.describe(),
            )
    buckets: dict[type, list[Any]] = {}
    for item, _ in kept.values():
        buckets.setdefault(type(item), []).append(item)
    try:
        return Resources(
            namespaces=buckets.get(Namespace, ()),
            gateway_classes=buckets.get(GatewayClass, ()),
            gateways=buckets.get(Gateway, ()),
            http_routes=buckets.get(HTTPRoute, ()),
            services=buckets.get(Service, ()),
            reference_grants=buckets.get(ReferenceGrant, ()),
            secrets=buckets.get(Secret, ()),
            backend_traffic_policies=buckets.get(BackendTrafficPolicy, ()),
        )
    except ValueError as error:
        raise ManifestError(str(error), document="manifests") from error


# --------------------------------------------------------------------------- per kind


def _parse(document: _Document, skip: SkipNote | None) -> Iterator[tuple[object, _Document]]:
    root = _Field(document.body, "", document)
    root.mapping()
    api_version = root.child("apiVersion").required_string()
    kind = root.child("kind").required_string()
    document.kind = kind
    if kind == "List" and api_version == "v1":
        for item in root.child("items").items():
            inner = _Document(document.where, int(item.path[6:-1]), item.value)
            yield from _parse(inner, skip)
        return
    if skip is not None and _unrelated(api_version, kind):
        raw_metadata = document.body.get("metadata")
        name = raw_metadata.get("name") if isinstance(raw_metadata, Mapping) else None
        skip(f"{document.where} ({api_version} {kind}{' ' + str(name) if name else ''})")
        return
    parser = _PARSERS.get(kind)
    if parser is None:
        root.child("kind").fail(
            f"unsupported kind {kind!r} (supported: {', '.join(sorted(_PARSERS))})"
        )
    versions, namespaced, parse = parser
    if api_version not in versions:
        root.child("apiVersion").fail(
            f"unsupported apiVersion {api_version!r} for {kind} (supported: {', '.join(versions)})"
        )
    root.mapping(("apiVersion", "kind", "metadata", "spec", "status", "data", "stringData", "type"))
    metadata = _metadata(root.child("metadata"), namespaced)
    document.namespace = metadata.namespace or None
    document.name = metadata.name
    yield parse(root, metadata), document


def _metadata(field: _Field, namespaced: bool) -> ObjectMeta:
    field.mapping()
    name = field.child("name").required_string(min_length=1, max_length=253)
    namespace = ""
    if namespaced:
        namespace = field.child("namespace").string(default="default") or "default"
    elif field.child("namespace").present:
        field.child("namespace").fail("must not be set on a cluster-scoped object")
    labels = field.child("labels").string_map()
    generation = field.child("generation").integer(default=1, minimum=0)
    created = field.child("creationTimestamp")
    timestamp: datetime.datetime | str | None = None
    if created.present:
        if isinstance(created.value, datetime.datetime | str):
            timestamp = created.value
        else:
            created.fail("must be an RFC 3339 timestamp")
    try:
        return ObjectMeta(
            name=name,
            namespace=namespace,
            labels=Labels.of(labels),
            generation=generation or 0,
            creation_timestamp=timestamp,
        )
    except ValueError as error:
        field.fail(str(error))


def _parse_namespace(root: _Field, metadata: ObjectMeta) -> Namespace:
    return Namespace(metadata)


def _parse_gateway_class(root: _Field, metadata: ObjectMeta) -> GatewayClass:
    spec = root.child("spec").mapping(("controllerName", "description", "parametersRef"))
    controller = spec.child("controllerName").required_string(min_length=1, max_length=253)
    if "/" not in controller:
        spec.child("controllerName").fail("must be a domain-prefixed path (example.com/bar)")
    return GatewayClass(metadata, controller)


# ---- Gateway


def _parse_gateway(root: _Field, metadata: ObjectMeta) -> Gateway:
    spec = root.child("spec").mapping(
        ("gatewayClassName", "listeners", "addresses", "infrastructure")
    )
    class_name = spec.child("gatewayClassName").required_string(min_length=1, max_length=253)
    listener_fields = spec.child("listeners").items(max_items=64)
    if not listener_fields:
        spec.child("listeners").fail("at least one listener is required")
    listeners = [_listener(item) for item in listener_fields]
    addresses: list[str] = []
    for item in spec.child("addresses").items(max_items=16):
        item.mapping(("type", "value"))
        kind = item.child("type").string(default="IPAddress") or "IPAddress"
        addresses.append(f"{kind}:{item.child('value').string(default='')}")
    return spec.build(
        Gateway,
        metadata=metadata,
        gateway_class_name=class_name,
        listeners=listeners,
        addresses=addresses,
    )


def _listener(field: _Field) -> Listener:
    field.mapping(("name", "hostname", "port", "protocol", "tls", "allowedRoutes"))
    name = field.child("name").required_string(min_length=1, max_length=253)
    port = field.child("port").integer(required=True, minimum=1, maximum=65535)
    protocol = field.child("protocol").required_string(min_length=1, max_length=255)
    hostname = field.child("hostname").string()
    if hostname is not None and (error := hostname_error(hostname)):
        field.child("hostname").fail(f"{hostname!r}: {error}")
    tls_field = field.child("tls")
    tls = _listener_tls(tls_field) if tls_field.present else None
    if protocol in ("HTTP", "TCP", "UDP") and tls is not None:
        tls_field.fail(f"tls must not be specified for protocol {protocol}")
    allowed = _allowed_routes(field.child("allowedRoutes"))
    assert port is not None
    return field.build(
        Listener,
        name=name,
        port=port,
        protocol=protocol,
        hostname=hostname,
        tls=tls,
        allowed_routes=allowed,
    )


def _listener_tls(field: _Field) -> ListenerTLS:
    field.mapping(("mode", "certificateRefs", "options", "frontendValidation"))
    mode = field.child("mode").string(default="Terminate", enum=("Terminate", "Passthrough"))
    refs = []
    for item in field.child("certificateRefs").items(max_items=64):
        item.mapping(("group", "kind", "name", "namespace"))
        refs.append(
            item.build(
                SecretObjectReference,
                name=item.child("name").required_string(min_length=1, max_length=253),
                namespace=item.child("namespace").string(),
                group=item.child("group").string(default=CORE_GROUP),
                kind=item.child("kind").string(default="Secret"),
            )
        )
    options = field.child("options").string_map()
    # CEL on ListenerTLSConfig: "certificateRefs or options must be specified when mode is
    # Terminate".
    if mode == "Terminate" and not refs and not options:
        field.fail("certificateRefs or options must be specified when mode is Terminate")
    return field.build(ListenerTLS, mode=mode, certificate_refs=refs)


def _allowed_routes(field: _Field) -> AllowedRoutes:
    if not field.present:
        return AllowedRoutes()
    field.mapping(("namespaces", "kinds"))
    namespaces = RouteNamespaces()
    ns_field = field.child("namespaces")
    if ns_field.present:
        ns_field.mapping(("from", "selector"))
        from_ = ns_field.child("from").string(default="Same", enum=("All", "Same", "Selector"))
        selector_field = ns_field.child("selector")
        selector = _label_selector(selector_field) if selector_field.present else None
        if from_ == "Selector" and selector is None:
            selector_field.fail("is required when from is Selector")
        namespaces = RouteNamespaces(from_=from_ or "Same", selector=selector)
    kinds = []
    for item in field.child("kinds").items(max_items=8):
        item.mapping(("group", "kind"))
        kinds.append(
            RouteGroupKind(
                kind=item.child("kind").required_string(min_length=1, max_length=63),
                group=item.child("group").string(default=GATEWAY_GROUP) or "",
            )
        )
    return AllowedRoutes(namespaces=namespaces, kinds=tuple(kinds))


def _label_selector(field: _Field) -> LabelSelector:
    field.mapping(("matchLabels", "matchExpressions"))
    labels = field.child("matchLabels").string_map()
    expressions = []
    for item in field.child("matchExpressions").items():
        item.mapping(("key", "operator", "values"))
        values = []
        for value in item.child("values").items():
            values.append(value.required_string())
        expressions.append(
            item.build(
                LabelSelectorRequirement,
                key=item.child("key").required_string(min_length=1),
                operator=item.child("operator").required_string(
                    enum=("In", "NotIn", "Exists", "DoesNotExist")
                ),
                values=values,
            )
        )
    return LabelSelector(match_labels=Labels.of(labels), match_expressions=tuple(expressions))


# ---- HTTPRoute


def _parse_http_route(root: _Field, metadata: ObjectMeta) -> HTTPRoute:
    spec = root.child("spec").mapping(("parentRefs", "hostnames", "rules", "useDefaultGateways"))
    parents = [_parent_ref(item) for item in spec.child("parentRefs").items(max_items=32)]
    hostnames = []
    for item in spec.child("hostnames").items(max_items=16):
        hostname = item.required_string(min_length=1, max_length=253)
        error = hostname_error(hostname)
        if error:
            item.fail(f"{hostname!r}: {error}")
        hostnames.append(hostname)
    rules_field = spec.child("rules")
    if rules_field.present:
        rule_fields = rules_field.items(max_items=16)
        if not rule_fields:
            rules_field.fail("must have at least 1 item")
        rules = [_rule(item) for item in rule_fields]
    else:
        rules = [HTTPRouteRule()]
    return spec.build(
        HTTPRoute, metadata=metadata, parent_refs=parents, hostnames=hostnames, rules=rules
    )


def _parent_ref(field: _Field) -> ParentReference:
    field.mapping(("group", "kind", "namespace", "name", "sectionName", "port"))
    return field.build(
        ParentReference,
        name=field.child("name").required_string(min_length=1, max_length=253),
        namespace=field.child("namespace").string(),
        group=field.child("group").string(default=GATEWAY_GROUP),
        kind=field.child("kind").string(default="Gateway"),
        section_name=field.child("sectionName").string(),
        port=field.child("port").integer(minimum=1, maximum=65535),
    )


_UNSUPPORTED_RULE_FIELDS = ("timeouts", "retry", "sessionPersistence")


def _rule(field: _Field) -> HTTPRouteRule:
    field.mapping(("name", "matches", "filters", "backendRefs", *_UNSUPPORTED_RULE_FIELDS))
    matches_field = field.child("matches")
    if matches_field.present:
        matches = [_match(item) for item in matches_field.items(max_items=64)]
        if not matches:
            matches = [RouteMatch()]
    else:
        matches = [RouteMatch()]
    filters = [_filter(item) for item in field.child("filters").items(max_items=16)]
    backends = [_backend_ref(item) for item in field.child("backendRefs").items(max_items=16)]
    unsupported = [name for name in _UNSUPPORTED_RULE_FIELDS if field.child(name).present]
    return field.build(
        HTTPRouteRule,
        name=field.child("name").string(),
        matches=matches,
        filters=filters,
        backend_refs=backends,
        unsupported_fields=unsupported,
    )


def _match(field: _Field) -> RouteMatch:
    field.mapping(("path", "headers", "queryParams", "method"))
    path = PathMatch()
    path_field = field.child("path")
    if path_field.present:
        path_field.mapping(("type", "value"))
        path_type = path_field.child("type").string(
            default="PathPrefix", enum=("Exact", "PathPrefix", "RegularExpression")
        )
        value = path_field.child("value").string(default="/", min_length=1, max_length=1024)
        path = path_field.child("value").build(PathMatch, type=path_type, value=value)
    headers = [
        _value_match(item, HeaderMatch, 4096) for item in field.child("headers").items(max_items=16)
    ]
    queries = [
        _value_match(item, QueryParamMatch, 1024)
        for item in field.child("queryParams").items(max_items=16)
    ]
    method = field.child("method").string(
        enum=("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
    )
    return field.build(RouteMatch, path=path, headers=headers, query_params=queries, method=method)


def _value_match(field: _Field, factory: Callable[..., T], max_length: int) -> T:
    field.mapping(("type", "name", "value"))
    return field.build(
        factory,
        name=field.child("name").required_string(min_length=1, max_length=256),
        value=field.child("value").required_string(min_length=1, max_length=max_length),
        type=field.child("type").string(default="Exact", enum=("Exact", "RegularExpression")),
    )


_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
    "ExternalAuth": "externalAuth",
}


def _filter(field: _Field) -> HTTPRouteFilter:
    field.mapping(("type", *_FILTER_FIELDS.values()))
    filter_type = field.child("type").required_string(enum=tuple(_FILTER_FIELDS))
    for other_type, key in _FILTER_FIELDS.items():
        # CEL: "filter.<x> must be nil if the filter.type is not <X>" and "must be specified".
        present = field.child(key).present
        if other_type == filter_type and not present:
            field.child(key).fail(f"must be specified for {filter_type} filter.type")
        if other_type != filter_type and present:
            field.child(key).fail(f"must be nil if the filter.type is not {other_type}")
    payload = field.child(_FILTER_FIELDS[filter_type])
    kwargs: dict[str, Any] = {}
    if filter_type == "RequestHeaderModifier":
        kwargs["request_header_modifier"] = _header_modifier(payload)
    elif filter_type == "ResponseHeaderModifier":
        kwargs["response_header_modifier"] = _header_modifier(payload)
    elif filter_type == "RequestRedirect":
        kwargs["request_redirect"] = _redirect(payload)
    elif filter_type == "URLRewrite":
        kwargs["url_rewrite"] = _url_rewrite(payload)
    else:
        payload.mapping()
    return field.build(HTTPRouteFilter, type=filter_type, **kwargs)


def _header_modifier(field: _Field) -> HeaderModifier:
    field.mapping(("set", "add", "remove"))

    def headers(part: str) -> list[HTTPHeader]:
        result = []
        for item in field.child(part).items(max_items=16):
            item.mapping(("name", "value"))
            result.append(
                item.build(
                    HTTPHeader,
                    name=item.child("name").required_string(min_length=1, max_length=256),
                    value=item.child("value").required_string(min_length=1, max_length=4096),
                )
            )
        return result

    remove = [
        item.required_string(min_length=1, max_length=256)
        for item in field.child("remove").items(max_items=16)
    ]
    return field.build(HeaderModifier, set=headers("set"), add=headers("add"), remove=remove)


def _path_modifier(field: _Field) -> PathModifier:
    field.mapping(("type", "replaceFullPath", "replacePrefixMatch"))
    return field.build(
        PathModifier,
        type=field.child("type").required_string(enum=("ReplaceFullPath", "ReplacePrefixMatch")),
        replace_full_path=field.child("replaceFullPath").string(max_length=1024),
        replace_prefix_match=field.child("replacePrefixMatch").string(max_length=1024),
    )


def _redirect(field: _Field) -> RequestRedirect:
    field.mapping(("scheme", "hostname", "path", "port", "statusCode"))
    path_field = field.child("path")
    return field.build(
        RequestRedirect,
        scheme=field.child("scheme").string(enum=("http", "https")),
        hostname=field.child("hostname").string(min_length=1, max_length=253),
        path=_path_modifier(path_field) if path_field.present else None,
        port=field.child("port").integer(minimum=1, maximum=65535),
        status_code=field.child("statusCode").integer(default=302),
    )


def _url_rewrite(field: _Field) -> URLRewrite:
    field.mapping(("hostname", "path"))
    path_field = field.child("path")
    return field.build(
        URLRewrite,
        hostname=field.child("hostname").string(min_length=1, max_length=253),
        path=_path_modifier(path_field) if path_field.present else None,
    )


def _backend_ref(field: _Field) -> BackendRef:
    field.mapping(("group", "kind", "name", "namespace", "port", "weight", "filters"))
    filters = [_filter(item) for item in field.child("filters").items(max_items=16)]
    return field.build(
        BackendRef,
        name=field.child("name").required_string(min_length=1, max_length=253),
        namespace=field.child("namespace").string(),
        port=field.child("port").integer(minimum=1, maximum=65535),
        group=field.child("group").string(default=CORE_GROUP),
        kind=field.child("kind").string(default="Service"),
        weight=field.child("weight").integer(default=1, minimum=0, maximum=1_000_000),
        filters=filters,
    )


# ---- core kinds


def _parse_service(root: _Field, metadata: ObjectMeta) -> Service:
    spec = root.child("spec").mapping()
    ports = []
    for item in spec.child("ports").items():
        item.mapping(("name", "port", "protocol", "targetPort", "appProtocol", "nodePort"))
        target = item.child("targetPort").value
        if target is not None and not isinstance(target, int | str):
            item.child("targetPort").fail("must be an integer or a string")
        ports.append(
            item.build(
                ServicePort,
                port=item.child("port").integer(required=True, minimum=1, maximum=65535),
                name=item.child("name").string(),
                protocol=item.child("protocol").string(default="TCP", enum=("TCP", "UDP", "SCTP")),
                target_port=target,
            )
        )
    return spec.build(Service, metadata=metadata, ports=ports)


def _parse_reference_grant(root: _Field, metadata: ObjectMeta) -> ReferenceGrant:
    spec = root.child("spec").mapping(("from", "to"))
    froms = []
    for item in spec.child("from").items(max_items=16):
        item.mapping(("group", "kind", "namespace"))
        froms.append(
            ReferenceGrantFrom(
                group=item.child("group").string(required=True, max_length=253) or "",
                kind=item.child("kind").required_string(min_length=1, max_length=63),
                namespace=item.child("namespace").required_string(min_length=1, max_length=63),
            )
        )
    tos = []
    for item in spec.child("to").items(max_items=16):
        item.mapping(("group", "kind", "name"))
        tos.append(
            ReferenceGrantTo(
                group=item.child("group").string(required=True, max_length=253) or "",
                kind=item.child("kind").required_string(min_length=1, max_length=63),
                name=item.child("name").string(),
            )
        )
    return spec.build(ReferenceGrant, metadata=metadata, from_=froms, to=tos)


def _parse_secret(root: _Field, metadata: ObjectMeta) -> Secret:
    secret_type = root.child("type").string(default="Opaque") or "Opaque"
    data: dict[str, bytes] = {}
    data_field = root.child("data")
    for key, value in data_field.string_map().items():
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            data_field.child(key).fail("must be base64-encoded")
    for key, value in root.child("stringData").string_map().items():
        data[key] = value.encode()
    return Secret(metadata=metadata, type=secret_type, data=tuple(sorted(data.items())))


# ---- Envoy Gateway policies

_BTP_UNSUPPORTED_FIELDS = (
    "mergeType",
    "rateLimit",
    "bandwidthLimit",
    "faultInjection",
    "admissionControl",
    "useClientProtocol",
    "compression",
    "compressor",
    "responseOverride",
    "httpUpgrade",
    "requestBuffer",
    "telemetry",
    "routingType",
    "retry",
    "proxyProtocol",
    "tcpKeepalive",
    "healthCheck",
    "circuitBreaker",
    "connection",
    "dns",
    "http2",
)
"""BackendTrafficPolicySpec fields of Envoy Gateway (api/v1alpha1) not implemented here: a policy
setting one loads, and translation refuses it in its status (never half-applied)."""
_LOAD_BALANCER_EXTRAS = ("consistentHash", "endpointOverride", "slowStart", "zoneAware")


def _parse_backend_traffic_policy(root: _Field, metadata: ObjectMeta) -> BackendTrafficPolicy:
    spec = root.child("spec").mapping(
        (
            "targetRef",
            "targetRefs",
            "targetSelectors",
            "loadBalancer",
            "timeout",
            *_BTP_UNSUPPORTED_FIELDS,
        )
    )
    if spec.child("targetSelectors").present:
        spec.child("targetSelectors").fail("is not supported: name the targets in targetRefs")
    single, many = spec.child("targetRef"), spec.child("targetRefs")
    if single.present == many.present:
        spec.fail("either targetRef or targetRefs must be used")
    if single.present:
        targets = [_policy_target(single)]
    else:
        items = many.items()
        if not items:
            many.fail("must have at least 1 item")
        targets = [_policy_target(item) for item in items]
    unsupported = [
        spec.child(name).path for name in _BTP_UNSUPPORTED_FIELDS if spec.child(name).present
    ]
    load_balancer = None
    balancer = spec.child("loadBalancer")
    if balancer.present:
        balancer.mapping(("type", *_LOAD_BALANCER_EXTRAS))
        load_balancer = balancer.child("type").required_string(enum=LOAD_BALANCER_TYPES)
        # The CRD's CEL rules on LoadBalancer.
        if (load_balancer == "ConsistentHash") != balancer.child("consistentHash").present:
            balancer.fail(
                "If LoadBalancer type is consistentHash, consistentHash field needs to be set."
            )
        if load_balancer in ("Random", "ConsistentHash") and balancer.child("slowStart").present:
            balancer.fail(
                "Currently SlowStart is only supported for RoundRobin and LeastRequest load"
                " balancers."
            )
        unsupported += [
            balancer.child(name).path
            for name in _LOAD_BALANCER_EXTRAS
            if balancer.child(name).present
        ]
    connect_timeout = None
    timeout = spec.child("timeout")
    if timeout.present:
        timeout.mapping(("tcp", "http"))
        if timeout.child("http").present:
            unsupported.append(timeout.child("http").path)
        tcp = timeout.child("tcp")
        if tcp.present:
            tcp.mapping(("connectTimeout",))
            text = tcp.child("connectTimeout").string()
            if text is not None:
                connect_timeout = tcp.child("connectTimeout").build(parse_duration, value=text)
    return spec.build(
        BackendTrafficPolicy,
        metadata=metadata,
        target_refs=targets,
        load_balancer=load_balancer,
        connect_timeout=connect_timeout,
        unsupported_fields=unsupported,
    )


def _policy_target(field: _Field) -> PolicyTargetReference:
    field.mapping(("group", "kind", "name", "sectionName"))
    if field.child("sectionName").present:
        field.child("sectionName").fail("is not supported: target a whole Gateway or HTTPRoute")
    return field.build(
        PolicyTargetReference,
        group=field.child("group").string(required=True, max_length=253),
        kind=field.child("kind").required_string(min_length=1, max_length=63),
        name=field.child("name").required_string(min_length=1, max_length=253),
    )


_PARSERS: dict[str, tuple[tuple[str, ...], bool, Callable[[_Field, ObjectMeta], object]]] = {
    "Namespace": (("v1",), False, _parse_namespace),
    "GatewayClass": (_GATEWAY_VERSIONS, False, _parse_gateway_class),
    "Gateway": (_GATEWAY_VERSIONS, True, _parse_gateway),
    "HTTPRoute": (_GATEWAY_VERSIONS, True, _parse_http_route),
    "ReferenceGrant": (_GRANT_VERSIONS, True, _parse_reference_grant),
    "Service": (("v1",), True, _parse_service),
    "Secret": (("v1",), True, _parse_secret),
    "BackendTrafficPolicy": (_ENVOY_GATEWAY_VERSIONS, True, _parse_backend_traffic_policy),
}
