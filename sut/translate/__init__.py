"""Pure translation: Gateway API resources -> IR (+ status) -> Envoy protos.

Stage 1 (`build_ir` in `build`) composes `listeners`, `certificates`, `planning`, `attachment`,
`virtualhosts`, `precedence`, `policies` and `status`. Stage 2 (`to_xds` in `xds`, routes in
`xds_routes`) reads only the IR; `to_proxyless` (in `proxyless`) is its twin for proxyless gRPC
clients. The stages share `ir`, `options`, `regex` (RE2 as Envoy runs it) and
`envoy_protos` (proto pieces the control plane and extension server use too).
"""

from __future__ import annotations

from sut.translate.build import build_ir
from sut.translate.ir import (
    IR,
    Cluster,
    ClusterSettings,
    DirectResponse,
    FilterChain,
    Forward,
    HeaderMutation,
    IRListener,
    PathRewrite,
    Redirect,
    Route,
    RouteAction,
    RouteConfig,
    RouteMatchIR,
    RouteSource,
    StringMatch,
    TLSCertificate,
    VirtualHost,
    WeightedBackend,
)
from sut.translate.options import TranslateOptions
from sut.translate.policies import PolicyResolution, resolve_backend_traffic_policies
from sut.translate.precedence import precedence_key
from sut.translate.proxyless import ProxylessResources, grpc_port, to_proxyless
from sut.translate.regex import MAX_PROGRAM_SIZE, RegexVerdict, check_regex
from sut.translate.translation import Translation, translate
from sut.translate.xds import (
    INVALID_BACKEND_ROUTE_SUFFIX,
    XdsResources,
    readiness_listener_name,
    to_xds,
)

__all__ = [
    "INVALID_BACKEND_ROUTE_SUFFIX",
    "IR",
    "MAX_PROGRAM_SIZE",
    "Cluster",
    "ClusterSettings",
    "DirectResponse",
    "FilterChain",
    "Forward",
    "HeaderMutation",
    "IRListener",
    "PathRewrite",
    "PolicyResolution",
    "ProxylessResources",
    "Redirect",
    "RegexVerdict",
    "Route",
    "RouteAction",
    "RouteConfig",
    "RouteMatchIR",
    "RouteSource",
    "StringMatch",
    "TLSCertificate",
    "TranslateOptions",
    "Translation",
    "VirtualHost",
    "WeightedBackend",
    "XdsResources",
    "build_ir",
    "check_regex",
    "grpc_port",
    "precedence_key",
    "readiness_listener_name",
    "resolve_backend_traffic_policies",
    "to_proxyless",
    "to_xds",
    "translate",
]
