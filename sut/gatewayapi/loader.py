"""Kubernetes YAML -> `Resources`, all or nothing.

Each kind's decoder (derived from its value classes, see `decode`) reports the path of the
first problem (`spec.rules[0].matches[1]`); this module adds the document (file, index, kind,
namespace/name) and turns it into a ManifestError. The CRD defaults and rules live on the value
classes. Nothing is half-applied: the first error aborts the whole load.

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

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from sut.errors import ManifestError
from sut.gatewayapi import decode
from sut.gatewayapi.core import Namespace, Secret, Service, read_namespace, read_secret
from sut.gatewayapi.gateway import Gateway, GatewayClass
from sut.gatewayapi.grant import ReferenceGrant
from sut.gatewayapi.httproute import HTTPRoute
from sut.gatewayapi.meta import ObjectMeta
from sut.gatewayapi.policy import BackendTrafficPolicy, read_backend_traffic_policy
from sut.gatewayapi.resources import Resources
from sut.gatewayapi.schema import CORE_GROUP, ENVOY_GATEWAY_GROUP, GATEWAY_GROUP
from sut.gatewayapi.yaml_reader import decode_utf8, load_all

__all__ = ["SkipNote", "load_manifests", "parse_documents"]

SkipNote = Callable[[str], None]
"""Receives one note per skipped object: `file#index (apiVersion Kind name)`."""

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
                text = decode_utf8(path.read_bytes())
            except OSError as error:
                raise ManifestError(f"cannot read manifest: {error}", document=str(path)) from error
            except ValueError as error:
                raise ManifestError(str(error), document=str(path)) from error
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
        bodies = load_all(text)
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

Reader = Callable[[dict[str, Any], ObjectMeta], object]
"""A kind's decoder: the document's root (nulls dropped) and its metadata -> the value."""


def _parse(document: _Document, skip: SkipNote | None) -> Iterator[tuple[object, _Document]]:
    try:
        root = decode.mapping(document.body)
        api_version = _required_string(root, "apiVersion")
        kind = _required_string(root, "kind")
    except decode.Invalid as error:
        raise _located(error, document) from None
    document.kind = kind
    if kind == "List" and api_version == "v1":
        try:
            entries = decode.structure(root.get("items", []), tuple[Any, ...])
        except decode.Invalid as error:
            raise _located(error.under("items"), document) from None
        for index, entry in enumerate(entries):
            yield from _parse(_Document(document.where, index, entry), skip)
        return
    if skip is not None and _unrelated(api_version, kind):
        raw_metadata = root.get("metadata")
        name = raw_metadata.get("name") if isinstance(raw_metadata, Mapping) else None
        skip(f"{document.where} ({api_version} {kind}{' ' + str(name) if name else ''})")
        return
    try:
        yield _read(document, root, api_version, kind), document
    except decode.Invalid as error:
        raise _located(error, document) from None


def _required_string(root: dict[str, Any], key: str) -> str:
    if key not in root:
        raise decode.Invalid("is required", (key,))
    value = root[key]
    if not isinstance(value, str):
        raise decode.Invalid(f"must be a string, got {decode.type_name(value)}", (key,))
    return value


def _read(document: _Document, root: dict[str, Any], api_version: str, kind: str) -> object:
    if kind not in _KINDS:
        raise decode.Invalid(
            f"unsupported kind {kind!r} (supported: {', '.join(sorted(_KINDS))})", ("kind",)
        )
    versions, namespaced, read = _KINDS[kind]
    if api_version not in versions:
        raise decode.Invalid(
            f"unsupported apiVersion {api_version!r} for {kind} (supported: {', '.join(versions)})",
            ("apiVersion",),
        )
    decode.only(root, _ROOT_KEYS)
    metadata = _metadata(root.get("metadata"), namespaced)
    document.namespace = metadata.namespace or None
    document.name = metadata.name
    return read(root, metadata)


def _metadata(value: Any, namespaced: bool) -> ObjectMeta:
    """The kind's scope decides the namespace: "default" when unset, or none at all."""
    try:
        metadata = decode.decode(ObjectMeta, value)
        if not namespaced and metadata.namespace:
            raise decode.Invalid("must not be set on a cluster-scoped object", ("namespace",))
    except decode.Invalid as error:
        raise error.under("metadata") from None
    if namespaced and not metadata.namespace:
        return attrs.evolve(metadata, namespace="default")
    return metadata


def _located(error: decode.Invalid, document: _Document) -> ManifestError:
    return ManifestError(error.message, document=document.describe(), field=error.where)


_ROOT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status", "data", "stringData", "type")
_GATEWAY_VERSIONS = (f"{GATEWAY_GROUP}/v1", f"{GATEWAY_GROUP}/v1beta1")
_GRANT_VERSIONS = (f"{GATEWAY_GROUP}/v1beta1", f"{GATEWAY_GROUP}/v1")
_ENVOY_GATEWAY_VERSIONS = (f"{ENVOY_GATEWAY_GROUP}/v1alpha1",)

_KINDS: dict[str, tuple[tuple[str, ...], bool, Reader]] = {
    "Namespace": (("v1",), False, read_namespace),
    "GatewayClass": (_GATEWAY_VERSIONS, False, decode.from_spec(GatewayClass)),
    "Gateway": (_GATEWAY_VERSIONS, True, decode.from_spec(Gateway)),
    "HTTPRoute": (_GATEWAY_VERSIONS, True, decode.from_spec(HTTPRoute)),
    "ReferenceGrant": (_GRANT_VERSIONS, True, decode.from_spec(ReferenceGrant)),
    "Service": (("v1",), True, decode.from_spec(Service)),
    "Secret": (("v1",), True, read_secret),
    "BackendTrafficPolicy": (_ENVOY_GATEWAY_VERSIONS, True, read_backend_traffic_policy),
}
"""Per kind this loader reads: its apiVersions, whether it is namespaced, and its reader."""
