"""`Resources`: the whole world the translator sees, as one immutable value.

Objects are kept sorted by key, so two worlds holding the same objects compare equal however
they were built, and the harness can apply one operation at a time and compare whole worlds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import attrs

from sut.gatewayapi.core import Endpoint, Namespace, Secret, Service, ServiceEndpoints
from sut.gatewayapi.gateway import Gateway, GatewayClass
from sut.gatewayapi.grant import ReferenceGrant, ReferenceGrantTo
from sut.gatewayapi.httproute import HTTPRoute
from sut.gatewayapi.meta import ObjectKey
from sut.gatewayapi.policy import BackendTrafficPolicy
from sut.gatewayapi.schema import as_tuple

__all__ = ["Resources"]


@attrs.frozen
class Resources:
    """Everything translation reads: Gateway API objects plus endpoints, sorted by key.

    Immutable: `with_object`/`without_object` (and the shorthands the harness calls) return new
    collections, so the harness can apply one operation at a time and compare worlds with `==`.
    """

    namespaces: tuple[Namespace, ...] = attrs.field(default=(), converter=as_tuple)
    gateway_classes: tuple[GatewayClass, ...] = attrs.field(default=(), converter=as_tuple)
    gateways: tuple[Gateway, ...] = attrs.field(default=(), converter=as_tuple)
    http_routes: tuple[HTTPRoute, ...] = attrs.field(default=(), converter=as_tuple)
    services: tuple[Service, ...] = attrs.field(default=(), converter=as_tuple)
    reference_grants: tuple[ReferenceGrant, ...] = attrs.field(default=(), converter=as_tuple)
    secrets: tuple[Secret, ...] = attrs.field(default=(), converter=as_tuple)
    endpoints: tuple[ServiceEndpoints, ...] = attrs.field(default=(), converter=as_tuple)
    backend_traffic_policies: tuple[BackendTrafficPolicy, ...] = attrs.field(
        default=(), converter=as_tuple
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

    def with_route(self, route: HTTPRoute) -> Resources:
        return self.with_object(route)

    def without_route(self, namespace: str, name: str) -> Resources:
        return self.without_object(HTTPRoute, ObjectKey(namespace, name))

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
