"""Gateway API resources as immutable values, the YAML loader, and status conditions.

One module per kind (or API group) holds its value classes and the rules the CRD states on
them; `decode` derives every document decoder from those classes, `loader` reads manifests,
`resources` is the store translation reads.
"""

from __future__ import annotations

from sut.gatewayapi.core import (
    Endpoint,
    Namespace,
    Secret,
    Service,
    ServiceEndpoints,
    ServicePort,
)
from sut.gatewayapi.filters import (
    HeaderModifier,
    HTTPHeader,
    HTTPRouteFilter,
    PathModifier,
    RequestRedirect,
    URLRewrite,
)
from sut.gatewayapi.gateway import (
    AllowedRoutes,
    Gateway,
    GatewayClass,
    LabelSelector,
    LabelSelectorRequirement,
    Listener,
    ListenerTLS,
    RouteGroupKind,
    RouteNamespaces,
    SecretObjectReference,
)
from sut.gatewayapi.grant import ReferenceGrant, ReferenceGrantFrom, ReferenceGrantTo
from sut.gatewayapi.httproute import (
    BackendRef,
    HeaderMatch,
    HTTPRoute,
    HTTPRouteRule,
    ParentReference,
    PathMatch,
    QueryParamMatch,
    RouteMatch,
)
from sut.gatewayapi.loader import SkipNote, load_manifests, parse_documents
from sut.gatewayapi.meta import Labels, ObjectKey, ObjectMeta
from sut.gatewayapi.policy import (
    LOAD_BALANCER_TYPES,
    POLICY_TARGET_KINDS,
    BackendTrafficPolicy,
    PolicyTargetReference,
)
from sut.gatewayapi.resources import Resources
from sut.gatewayapi.schema import (
    CORE_GROUP,
    ENVOY_GATEWAY_GROUP,
    GATEWAY_GROUP,
    hostname_error,
    parse_duration,
    precise_hostname_error,
)
from sut.gatewayapi.status import (
    BackendTrafficPolicyStatus,
    Condition,
    ConditionStatus,
    GatewayClassStatus,
    GatewayStatus,
    HTTPRouteStatus,
    ListenerStatus,
    PolicyAncestorStatus,
    Reason,
    RouteParentStatus,
    Statuses,
    find_condition,
    statuses_as_dict,
)

__all__ = [
    "CORE_GROUP",
    "ENVOY_GATEWAY_GROUP",
    "GATEWAY_GROUP",
    "LOAD_BALANCER_TYPES",
    "POLICY_TARGET_KINDS",
    "AllowedRoutes",
    "BackendRef",
    "BackendTrafficPolicy",
    "BackendTrafficPolicyStatus",
    "Condition",
    "ConditionStatus",
    "Endpoint",
    "Gateway",
    "GatewayClass",
    "GatewayClassStatus",
    "GatewayStatus",
    "HTTPHeader",
    "HTTPRoute",
    "HTTPRouteFilter",
    "HTTPRouteRule",
    "HTTPRouteStatus",
    "HeaderMatch",
    "HeaderModifier",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Labels",
    "Listener",
    "ListenerStatus",
    "ListenerTLS",
    "Namespace",
    "ObjectKey",
    "ObjectMeta",
    "ParentReference",
    "PathMatch",
    "PathModifier",
    "PolicyAncestorStatus",
    "PolicyTargetReference",
    "QueryParamMatch",
    "Reason",
    "ReferenceGrant",
    "ReferenceGrantFrom",
    "ReferenceGrantTo",
    "RequestRedirect",
    "Resources",
    "RouteGroupKind",
    "RouteMatch",
    "RouteNamespaces",
    "RouteParentStatus",
    "Secret",
    "SecretObjectReference",
    "Service",
    "ServiceEndpoints",
    "ServicePort",
    "SkipNote",
    "Statuses",
    "URLRewrite",
    "find_condition",
    "hostname_error",
    "load_manifests",
    "parse_documents",
    "parse_duration",
    "precise_hostname_error",
    "statuses_as_dict",
]
