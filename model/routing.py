"""What one request must get from a proxy holding a given configuration: the routing oracle.

Rules (Gateway API, in the order a request meets them):
1. The port picks the Gateway listeners; HTTPS picks among them by SNI (the most specific
   hostname wins); no listener for the SNI fails the TLS handshake.
2. A listener hostname the Host does not match answers 404.
3. A route attaches to a listener when its sectionName names it (or is unset) and its hostnames
   intersect the listener's. Its effective hostnames are that intersection (no route hostnames:
   the listener's, or any host).
4. The most specific effective hostname matching the Host selects the routes considered (exact,
   then the longest wildcard suffix, then any host), as Envoy's virtual hosts do.
5. Among them, precedence: Exact path > longest PathPrefix > more header matches > older route >
   route name > rule order > match order. PathPrefix matches whole path segments.
6. The winning rule's backends: all weights zero answers 500; a backend whose Service does not
   exist answers 500 for its share; a Service without endpoints answers 503; an endpoint whose
   pod is gone answers 503; otherwise 200 from one of the Service's pods.
7. A configuration in error (rds-error, inline-error) answers 500 to every request a listener
   accepts.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from model.world import Backend, GatewayListener, Match, Route, Rule, World

__all__ = [
    "Outcome",
    "ProxyConfig",
    "Request",
    "Served",
    "Status",
    "Unreachable",
    "effective_hostnames",
    "expected_outcomes",
    "expected_through",
    "has_misdirected_routes",
    "host_matches",
    "path_matches",
    "serving_clusters",
]


@attrs.frozen
class ProxyConfig:
    """A configuration a proxy can hold: the world it was translated from, and how."""

    world: World
    marker: int | None = None
    """Generation of the extension's change on every route, or None without it."""
    error: bool = False
    """Every route-serving listener answers 500 (failure policies rds-error and inline-error)."""


@attrs.frozen
class Request:
    port: int
    scheme: str
    host: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        extra = "".join(f" -H '{name}: {value}'" for name, value in self.headers)
        return f"{self.scheme}://{self.host}:{self.port}{self.path}{extra}"


@attrs.frozen
class Served:
    service: str
    pod: str
    marker: int | None

    def describe(self) -> str:
        tag = f", marker gen-{self.marker}" if self.marker is not None else ", no marker"
        return f"200 from {self.pod}{tag}"


@attrs.frozen
class Status:
    code: int

    def describe(self) -> str:
        return str(self.code)


@attrs.frozen
class Unreachable:
    """No listener accepts the connection (no socket, or no TLS filter chain for the SNI)."""

    def describe(self) -> str:
        return "no listener (connection refused or TLS handshake failure)"


Outcome = Served | Status | Unreachable


def host_matches(pattern: str | None, host: str) -> bool:
    """Gateway API hostname matching: `*.example.com` matches any subdomain, not the apex."""
    if pattern is None or pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def _specificity(pattern: str) -> tuple[int, int]:
    """Exact beats wildcard; a longer wildcard beats a shorter one; '*' comes last."""
    if pattern == "*":
        return (0, 0)
    if pattern.startswith("*."):
        return (1, len(pattern))
    return (2, len(pattern))


def _listener_for(config: ProxyConfig, request: Request) -> GatewayListener | Unreachable | None:
    on_port = [item for item in config.world.listeners if item.port == request.port]
    if not on_port:
        return Unreachable()
    if request.scheme == "https":
        https = [
            item
            for item in on_port
            if item.protocol == "HTTPS" and host_matches(item.hostname, request.host)
        ]
        if not https:
            return Unreachable()
        return max(https, key=lambda item: _specificity(item.hostname or "*"))
    http = [item for item in on_port if item.protocol == "HTTP"]
    if not http:
        return Unreachable()
    matching = [item for item in http if host_matches(item.hostname, request.host)]
    if not matching:
        return None
    return max(matching, key=lambda item: _specificity(item.hostname or "*"))


def _intersection(route_hostname: str, listener_hostname: str | None) -> str | None:
    """The hostnames both a route and a listener accept, as one hostname, or None."""
    if listener_hostname is None:
        return route_hostname
    route_wild = route_hostname.startswith("*.")
    listener_wild = listener_hostname.startswith("*.")
    if not route_wild and not listener_wild:
        return route_hostname if route_hostname == listener_hostname else None
    if not route_wild:
        return route_hostname if host_matches(listener_hostname, route_hostname) else None
    if not listener_wild:
        return listener_hostname if host_matches(route_hostname, listener_hostname) else None
    if route_hostname.endswith(listener_hostname[1:]):
        return route_hostname
    if listener_hostname.endswith(route_hostname[1:]):
        return listener_hostname
    return None


def effective_hostnames(route: Route, listener: GatewayListener) -> tuple[str, ...]:
    """Rule 3: the hostnames a route serves on a listener; empty when it does not attach."""
    if route.section is not None and route.section != listener.name:
        return ()
    if not route.hostnames:
        return (listener.hostname or "*",)
    found = {_intersection(name, listener.hostname) for name in route.hostnames}
    found.discard(None)
    return tuple(sorted(name for name in found if name is not None))


def has_misdirected_routes(world: World) -> bool:
    """Do HTTPS listeners share a port? Then each answers 421 for the others' hostnames, with a
    route the gateway adds on its own: a route PostRouteModify is called for, HTTPRoute or not."""
    ports = [listener.port for listener in world.listeners if listener.protocol == "HTTPS"]
    return len(ports) != len(set(ports))


def path_matches(match: Match, path: str) -> bool:
    bare = path.split("?", 1)[0]
    if match.path_kind == "Exact":
        return bare == match.path
    prefix = match.path.rstrip("/")
    if not prefix:
        return True
    return bare == prefix or bare.startswith(prefix + "/")


def _precedence(
    route: Route, rule_index: int, match_index: int, match: Match
) -> tuple[int, int, int, int, str, int, int]:
    exact = 0 if match.path_kind == "Exact" else 1
    return (
        exact,
        -len(match.path.rstrip("/") if match.path_kind == "PathPrefix" else match.path),
        -len(match.headers),
        route.created,
        route.name,
        rule_index,
        match_index,
    )


def expected_outcomes(
    config: ProxyConfig | None,
    request: Request,
    live_pods: frozenset[str],
    endpoints: Iterable[World] = (),
) -> frozenset[Outcome]:
    """Every outcome the request may get; more than one only where load balancing chooses.

    `endpoints` are further worlds whose Service endpoints the proxy may hold alongside the
    routes of `config`: endpoints travel in resources of their own (ClusterLoadAssignment),
    which xDS updates independently of the routes that name their Cluster."""
    matched = _match(config, request)
    if not isinstance(matched, tuple):
        return matched
    _route, _rule_index, rule = matched
    assert config is not None
    return _backend_outcomes(config, rule.backends, live_pods, tuple(endpoints))


def serving_clusters(
    config: ProxyConfig | None, request: Request
) -> frozenset[tuple[str, int, str]]:
    """What serves the request in `config`, as a gateway names its Clusters: (route, rule index,
    Service) of each weighted backend of the rule the request matches; empty when no rule does.
    Two configurations that serve a request from different ones make the proxy fetch a Cluster
    it may not hold yet, even when the answer stays the same."""
    matched = _match(config, request)
    if not isinstance(matched, tuple):
        return frozenset()
    route, rule_index, rule = matched
    return frozenset(
        (route.name, rule_index, backend.service) for backend in rule.backends if backend.weight > 0
    )


def _match(
    config: ProxyConfig | None, request: Request
) -> tuple[Route, int, Rule] | frozenset[Outcome]:
    """The route rule the request matches, or the outcome when none can."""
    if config is None:
        return frozenset({Unreachable()})
    listener = _listener_for(config, request)
    if isinstance(listener, Unreachable):
        return frozenset({listener})
    if config.error:
        return frozenset({Status(500)})
    if listener is None:
        return frozenset({Status(404)})
    hosts = {
        (route.name, hostname)
        for route in config.world.routes
        for hostname in effective_hostnames(route, listener)
    }
    matching_hosts = [hostname for _, hostname in hosts if host_matches(hostname, request.host)]
    if not matching_hosts:
        return frozenset({Status(404)})
    chosen_host = max(matching_hosts, key=_specificity)
    candidates = []
    for route in config.world.routes:
        if chosen_host not in effective_hostnames(route, listener):
            continue
        for rule_index, rule in enumerate(route.rules):
            for match_index, match in enumerate(rule.matches):
                candidates.append(
                    (_precedence(route, rule_index, match_index, match), route, rule_index, match)
                )
    headers = {name.lower(): value for name, value in request.headers}
    for _, route, rule_index, match in sorted(candidates, key=lambda item: item[0]):
        if path_matches(match, request.path) and all(
            headers.get(header.name.lower()) == header.value for header in match.headers
        ):
            return route, rule_index, route.rules[rule_index]
    return frozenset({Status(404)})


def expected_through(
    configs: Iterable[ProxyConfig | None], request: Request, live_pods: frozenset[str]
) -> frozenset[Outcome]:
    """Every outcome allowed while a proxy moves through `configs`: each may be the one it holds
    at the moment the request arrives (an update applies between two requests, not inside one).
    A Service's endpoints may come from any of them: the routes of one configuration can meet
    the endpoints of another, since xDS orders resource types but updates each on its own."""
    configs = tuple(configs)
    worlds = tuple(config.world for config in configs if config is not None)
    outcomes: set[Outcome] = set()
    for config in configs:
        outcomes |= expected_outcomes(config, request, live_pods, worlds)
    return frozenset(outcomes)


def _backend_outcomes(
    config: ProxyConfig,
    backends: tuple[Backend, ...],
    live_pods: frozenset[str],
    endpoints: tuple[World, ...],
) -> frozenset[Outcome]:
    weighted = [backend for backend in backends if backend.weight > 0]
    if not weighted:
        return frozenset({Status(500)})
    outcomes: set[Outcome] = set()
    for backend in weighted:
        service = config.world.service(backend.service)
        if service is None:
            outcomes.add(Status(500))
            continue
        # The routes decide that the Service exists; its endpoints may be another world's.
        views = [service] + [
            other for world in endpoints if (other := world.service(backend.service)) is not None
        ]
        for view in views:
            if not view.pods:
                outcomes.add(Status(503))
            for pod in view.pods:
                if pod in live_pods:
                    outcomes.add(Served(service.name, pod, config.marker))
                else:
                    outcomes.add(Status(503))
    return frozenset(outcomes)
