"""The intermediate representation between Gateway API resources and Envoy protos.

Stage 1 (`build_ir`) decides *what* is served: which Gateway listeners, which routes in which
order on which virtual host, which backends with which weights. Stage 2 (`to_xds`) only decides
*how* Envoy spells it. Everything is frozen, sorted and named, so equal worlds give equal IR and
the model/harness can read the IR instead of reverse-engineering protos.
"""

from __future__ import annotations

import datetime

import attrs

from sut.gatewayapi import Endpoint, ObjectKey

__all__ = [
    "IR",
    "Cluster",
    "ClusterSettings",
    "DirectResponse",
    "FilterChain",
    "Forward",
    "HeaderMutation",
    "IRListener",
    "PathRewrite",
    "Redirect",
    "Route",
    "RouteAction",
    "RouteConfig",
    "RouteMatchIR",
    "RouteSource",
    "StringMatch",
    "TLSCertificate",
    "VirtualHost",
    "WeightedBackend",
]


@attrs.frozen
class StringMatch:
    """`kind` is Exact, PathPrefix (paths only) or RegularExpression."""

    kind: str
    value: str


@attrs.frozen
class RouteMatchIR:
    path: StringMatch
    headers: tuple[tuple[str, StringMatch], ...] = ()
    """(lower-cased header name, match); duplicates by name already dropped as the spec says."""
    query_params: tuple[tuple[str, StringMatch], ...] = ()
    method: str | None = None


@attrs.frozen
class HeaderMutation:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.set or self.add or self.remove)


@attrs.frozen
class PathRewrite:
    """ReplaceFullPath (`value` is the new path) or ReplacePrefixMatch of `matched_prefix`."""

    kind: str
    value: str
    matched_prefix: str = "/"


@attrs.frozen
class WeightedBackend:
    cluster: str
    weight: int
    request_headers: HeaderMutation = HeaderMutation()
    response_headers: HeaderMutation = HeaderMutation()


@attrs.frozen
class Forward:
    """Send to weighted backends; `invalid_weight` is the share of invalid backendRefs (-> 500)."""

    backends: tuple[WeightedBackend, ...]
    invalid_weight: int = 0
    rewrite_hostname: str | None = None
    rewrite_path: PathRewrite | None = None
    single_cluster: bool = True
    """True when the one backend's cluster is the rule's cluster (Envoy `cluster`, not weighted)."""

    @property
    def total_weight(self) -> int:
        return sum(backend.weight for backend in self.backends) + self.invalid_weight


@attrs.frozen
class Redirect:
    """Already resolved against the listener: `port` None means the Location carries no port."""

    scheme: str | None
    hostname: str | None
    port: int | None
    path: PathRewrite | None
    status_code: int


@attrs.frozen
class DirectResponse:
    status: int
    body: str = ""


RouteAction = Forward | Redirect | DirectResponse


@attrs.frozen(order=True)
class RouteSource:
    route: ObjectKey
    rule: int
    match: int


@attrs.frozen
class Route:
    name: str
    match: RouteMatchIR
    action: RouteAction
    source: RouteSource
    request_headers: HeaderMutation = HeaderMutation()
    response_headers: HeaderMutation = HeaderMutation()


@attrs.frozen
class VirtualHost:
    name: str
    domain: str
    routes: tuple[Route, ...]


@attrs.frozen
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]


@attrs.frozen
class FilterChain:
    """HTTP: the listener's only chain. HTTPS: one per Gateway listener, selected by SNI."""

    name: str
    server_names: tuple[str, ...]
    certificates: tuple[str, ...]
    """Names of TLS certificate Secrets (`<ns>/<name>`), served over SDS."""
    route_config: RouteConfig


@attrs.frozen
class IRListener:
    """One Envoy listener: all served Gateway listeners of one Gateway on one port."""

    name: str
    gateway: ObjectKey
    port: int
    protocol: str
    gateway_listeners: tuple[str, ...]
    filter_chains: tuple[FilterChain, ...]


@attrs.frozen
class ClusterSettings:
    """What a BackendTrafficPolicy sets on a cluster; None keeps the proxy default."""

    load_balancer: str | None = None
    """RoundRobin, LeastRequest or Random (Envoy Gateway's LoadBalancerType)."""
    connect_timeout: datetime.timedelta | None = None

    def __attrs_post_init__(self) -> None:
        if self.load_balancer not in (None, "RoundRobin", "LeastRequest", "Random"):
            raise ValueError(f"load balancer {self.load_balancer!r} cannot be translated")
        if self.connect_timeout is not None and self.connect_timeout <= datetime.timedelta(0):
            raise ValueError("connect_timeout must be positive (Envoy refuses anything else)")


@attrs.frozen
class Cluster:
    name: str
    service: ObjectKey
    service_port: int
    endpoints: tuple[Endpoint, ...]
    settings: ClusterSettings = ClusterSettings()


@attrs.frozen
class TLSCertificate:
    name: str
    certificate_chain: bytes = attrs.field(repr=False)
    private_key: bytes = attrs.field(repr=False)


@attrs.frozen
class IR:
    listeners: tuple[IRListener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    secrets: tuple[TLSCertificate, ...] = ()

    def listener(self, name: str) -> IRListener | None:
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None

    def route_configs(self) -> tuple[RouteConfig, ...]:
        seen: dict[str, RouteConfig] = {}
        for listener in self.listeners:
            for chain in listener.filter_chains:
                seen.setdefault(chain.route_config.name, chain.route_config)
        return tuple(seen[name] for name in sorted(seen))
