"""Stage 2: IR -> Envoy protos (xds-protos), named as Envoy Gateway names them.

Pure and deterministic: equal IR gives byte-equal serializations. Listeners load their
RouteConfigurations over RDS and clusters their endpoints over EDS, both on the ADS stream;
HTTPS certificates come over SDS. The readiness listener is built here too, with an inline route
configuration, so error handling elsewhere can recognise and leave it alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import attrs
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.health_check.v3 import health_check_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from sut.translate.build import rewrite_regex_for_prefix
from sut.translate.ir import (
    IR,
    Cluster,
    DirectResponse,
    FilterChain,
    Forward,
    HeaderMutation,
    IRListener,
    PathRewrite,
    Redirect,
    Route,
    RouteConfig,
    RouteMatchIR,
    StringMatch,
    TLSCertificate,
    VirtualHost,
)
from sut.translate.options import TranslateOptions

__all__ = [
    "INVALID_BACKEND_ROUTE_SUFFIX",
    "XdsResources",
    "readiness_listener_name",
    "to_xds",
]

INVALID_BACKEND_ROUTE_SUFFIX = "/invalid-backend-share"
"""Suffix of the route that answers 500 for the weight share of invalid backendRefs."""

_FRACTION_DENOMINATOR = 1_000_000
_LB_POLICIES = {
    "RoundRobin": cluster_pb2.Cluster.ROUND_ROBIN,
    "LeastRequest": cluster_pb2.Cluster.LEAST_REQUEST,
    "Random": cluster_pb2.Cluster.RANDOM,
}
_REDIRECT_CODES = {
    301: route_components_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_components_pb2.RedirectAction.FOUND,
    303: route_components_pb2.RedirectAction.SEE_OTHER,
    307: route_components_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_components_pb2.RedirectAction.PERMANENT_REDIRECT,
}


@attrs.frozen
class XdsResources:
    """Every Envoy resource of one translation, each tuple sorted by name.

    The messages are protobufs and therefore mutable: treat them as read-only (copy before
    changing one, as the extension hooks do).
    """

    listeners: tuple[listener_pb2.Listener, ...]
    route_configurations: tuple[route_pb2.RouteConfiguration, ...]
    clusters: tuple[cluster_pb2.Cluster, ...]
    cluster_load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    secrets: tuple[secret_pb2.Secret, ...]
    readiness_listener: str
    """Name of the readiness listener among `listeners`; error handling must leave it alone."""

    def messages(self) -> Iterator[Message]:
        """All resources in make-before-break (ADS) order: CDS, EDS, LDS, RDS, SDS."""
        yield from self.clusters
        yield from self.cluster_load_assignments
        yield from self.listeners
        yield from self.route_configurations
        yield from self.secrets

    def listener(self, name: str) -> listener_pb2.Listener | None:
        return next((item for item in self.listeners if item.name == name), None)

    def route_configuration(self, name: str) -> route_pb2.RouteConfiguration | None:
        return next((item for item in self.route_configurations if item.name == name), None)

    def cluster(self, name: str) -> cluster_pb2.Cluster | None:
        return next((item for item in self.clusters if item.name == name), None)

    def cluster_load_assignment(self, name: str) -> endpoint_pb2.ClusterLoadAssignment | None:
        return next(
            (item for item in self.cluster_load_assignments if item.cluster_name == name), None
        )

    def secret(self, name: str) -> secret_pb2.Secret | None:
        return next((item for item in self.secrets if item.name == name), None)


def readiness_listener_name(options: TranslateOptions) -> str:
    return f"envoy-gateway-proxy-ready-{options.bind_address}-{options.readiness_port}"


def to_xds(ir: IR, options: TranslateOptions | None = None) -> XdsResources:
    """Stage 2: Envoy protos for the IR plus the readiness listener."""
    options = options or TranslateOptions()
    listeners = [_listener(item, options) for item in ir.listeners]
    listeners.append(_readiness_listener(options))
    routes = [_route_configuration(config) for config in ir.route_configs()]
    return XdsResources(
        listeners=tuple(sorted(listeners, key=lambda item: item.name)),
        route_configurations=tuple(sorted(routes, key=lambda item: item.name)),
        clusters=tuple(_cluster(item, options) for item in ir.clusters),
        cluster_load_assignments=tuple(_load_assignment(item) for item in ir.clusters),
        secrets=tuple(_secret(item) for item in ir.secrets),
        readiness_listener=readiness_listener_name(options),
    )


# --------------------------------------------------------------------------- common pieces


def _ads(options: TranslateOptions | None = None) -> config_source_pb2.ConfigSource:
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )
    if options is not None:
        timeout = duration_pb2.Duration()
        timeout.FromTimedelta(options.initial_fetch_timeout)
        source.initial_fetch_timeout.CopyFrom(timeout)
    return source


def _typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(
            address=address, port_value=port, protocol=address_pb2.SocketAddress.TCP
        )
    )


def _router_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(
        name="envoy.filters.http.router", typed_config=_typed(router_pb2.Router())
    )


# --------------------------------------------------------------------------- listeners


def _loopback_address(item: IRListener) -> str:
    """A stable 127.x.y.z per (Gateway, port): distinct listeners never share an address."""
    digest = hashlib.sha256(f"{item.gateway.namespace}/{item.gateway.name}:{item.port}".encode())
    first, second, third = digest.digest()[:3]
    return f"127.{first}.{second}.{third % 253 + 2}"


def _listener(item: IRListener, options: TranslateOptions) -> listener_pb2.Listener:
    port = 0 if options.bind_port_zero else item.port
    address = _loopback_address(item) if options.loopback_per_listener else options.bind_address
    listener = listener_pb2.Listener(name=item.name, address=_socket_address(address, port))
    prefix = f"{'https' if item.protocol == 'HTTPS' else 'http'}-{item.port}"
    if item.protocol == "HTTP":
        listener.default_filter_chain.CopyFrom(
            _filter_chain(item.filter_chains[0], prefix, options)
        )
    else:
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name="envoy.filters.listener.tls_inspector",
                typed_config=_typed(tls_inspector_pb2.TlsInspector()),
            )
        )
        for chain in item.filter_chains:
            listener.filter_chains.append(_filter_chain(chain, prefix, options))
    return listener


def _filter_chain(
    chain: FilterChain, stat_prefix: str, options: TranslateOptions
) -> listener_components_pb2.FilterChain:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        rds=hcm_pb2.Rds(route_config_name=chain.route_config.name, config_source=_ads(options)),
        http_filters=[_router_filter()],
    )
    result = listener_components_pb2.FilterChain(
        name=chain.name,
        filters=[
            listener_components_pb2.Filter(
                name="envoy.filters.network.http_connection_manager",
                typed_config=_typed(manager),
            )
        ],
    )
    if chain.server_names:
        result.filter_chain_match.server_names.extend(chain.server_names)
    if chain.certificates:
        context = tls_pb2.DownstreamTlsContext(
            common_tls_context=tls_pb2.CommonTlsContext(
                tls_certificate_sds_secret_configs=[
                    secret_pb2.SdsSecretConfig(name=name, sds_config=_ads())
                    for name in chain.certificates
                ]
            )
        )
        result.transport_socket.CopyFrom(
            base_pb2.TransportSocket(
                name="envoy.transport_sockets.tls", typed_config=_typed(context)
            )
        )
    return result


def _readiness_listener(options: TranslateOptions) -> listener_pb2.Listener:
    """Answers GET /ready with 200 while Envoy is live (health_check filter, as Envoy Gateway)."""
    health = health_check_pb2.HealthCheck(
        headers=[
            route_components_pb2.HeaderMatcher(
                name=":path", string_match=string_pb2.StringMatcher(exact="/ready")
            )
        ]
    )
    health.pass_through_mode.CopyFrom(wrappers_pb2.BoolValue(value=False))
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix="eg-ready-http",
        route_config=route_pb2.RouteConfiguration(
            name="ready_route",
            virtual_hosts=[
                route_components_pb2.VirtualHost(
                    name="ready_route",
                    domains=["*"],
                    routes=[
                        route_components_pb2.Route(
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            direct_response=route_components_pb2.DirectResponseAction(status=500),
                        )
                    ],
                )
            ],
        ),
        http_filters=[
            hcm_pb2.HttpFilter(name="envoy.filters.http.health_check", typed_config=_typed(health)),
            _router_filter(),
        ],
    )
    return listener_pb2.Listener(
        name=readiness_listener_name(options),
        address=_socket_address(options.bind_address, options.readiness_port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=_typed(manager),
                    )
                ]
            )
        ],
    )


# --------------------------------------------------------------------------- routes


def _route_configuration(config: RouteConfig) -> route_pb2.RouteConfiguration:
    result = route_pb2.RouteConfiguration(
        name=config.name,
        ignore_port_in_host_matching=True,
        virtual_hosts=[_virtual_host(host) for host in config.virtual_hosts],
    )
    # validate_clusters: a RouteConfiguration naming a cluster Envoy does not have must be
    # NACKed (and so noticed) instead of loading and answering 503 NC at request time.
    result.validate_clusters.CopyFrom(wrappers_pb2.BoolValue(value=True))
    return result


def _virtual_host(host: VirtualHost) -> route_components_pb2.VirtualHost:
    routes: list[route_components_pb2.Route] = []
    for route in host.routes:
        routes.extend(_routes(route))
    return route_components_pb2.VirtualHost(name=host.name, domains=[host.domain], routes=routes)


def _string_matcher(match: StringMatch) -> string_pb2.StringMatcher:
    if match.kind == "RegularExpression":
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.value))
    return string_pb2.StringMatcher(exact=match.value)


def _route_match(match: RouteMatchIR) -> route_components_pb2.RouteMatch:
    result = route_components_pb2.RouteMatch()
    path = match.path
    if path.kind == "Exact":
        result.path = path.value
    elif path.kind == "RegularExpression":
        result.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=path.value))
    elif path.value == "/":
        result.prefix = "/"
    else:
        # Whole-segment prefix: "/foo" matches /foo, /foo/, /foo/bar but not /foobar; a trailing
        # "/" in the manifest is ignored, as the spec says.
        result.path_separated_prefix = path.value.removesuffix("/")
    for name, header in match.headers:
        result.headers.append(
            route_components_pb2.HeaderMatcher(name=name, string_match=_string_matcher(header))
        )
    if match.method is not None:
        result.headers.append(
            route_components_pb2.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method)
            )
        )
    for name, query in match.query_params:
        result.query_parameters.append(
            route_components_pb2.QueryParameterMatcher(
                name=name, string_match=_string_matcher(query)
            )
        )
    return result


def _header_options(mutation: HeaderMutation) -> list[base_pb2.HeaderValueOption]:
    options = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=value),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for name, value in mutation.set
    ]
    options += [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, value=value),
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
        )
        for name, value in mutation.add
    ]
    return options


def _apply_headers(
    target: route_components_pb2.Route | route_components_pb2.WeightedCluster.ClusterWeight,
    request: HeaderMutation,
    response: HeaderMutation,
) -> None:
    target.request_headers_to_add.extend(_header_options(request))
    target.request_headers_to_remove.extend(request.remove)
    target.response_headers_to_add.extend(_header_options(response))
    target.response_headers_to_remove.extend(response.remove)


def _routes(route: Route) -> list[route_components_pb2.Route]:
    result = route_components_pb2.Route(name=route.name, match=_route_match(route.match))
    _apply_headers(result, route.request_headers, route.response_headers)
    action = route.action
    extra: list[route_components_pb2.Route] = []
    if isinstance(action, DirectResponse):
        result.direct_response.CopyFrom(
            route_components_pb2.DirectResponseAction(status=action.status)
        )
    elif isinstance(action, Redirect):
        result.redirect.CopyFrom(_redirect_action(action))
    else:
        result.route.CopyFrom(_route_action(action))
        numerator = round(action.invalid_weight * _FRACTION_DENOMINATOR / action.total_weight)
        if numerator > 0:
            # The invalid backends' share answers 500 (HTTPRouteRule.BackendRefs). Envoy has no
            # weighted direct response, so a twin route with the same match catches that
            # fraction of requests first; the rest fall through to the weighted clusters.
            share = route_components_pb2.Route(
                name=route.name + INVALID_BACKEND_ROUTE_SUFFIX, match=_route_match(route.match)
            )
            share.match.runtime_fraction.default_value.CopyFrom(
                percent_pb2.FractionalPercent(
                    numerator=numerator, denominator=percent_pb2.FractionalPercent.MILLION
                )
            )
            _apply_headers(share, route.request_headers, route.response_headers)
            share.direct_response.CopyFrom(route_components_pb2.DirectResponseAction(status=500))
            extra.append(share)
    return [*extra, result]


def _substitution(value: str) -> str:
    """RE2 rewrite strings treat backslash as an escape (\\1 is a group): double it."""
    return value.replace("\\", "\\\\")


def _regex_rewrite(pattern: str, substitution: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex=pattern), substitution=_substitution(substitution)
    )


def _prefix_rewrite(
    rewrite: PathRewrite,
) -> tuple[str | None, regex_pb2.RegexMatchAndSubstitute | None]:
    """ReplacePrefixMatch with whole-segment semantics, as (prefix_rewrite, regex_rewrite).

    The route matched `prefix` (trailing "/" dropped) by path segments, so the path is prefix +
    rest, rest being empty or starting with "/". New path = replacement (trailing "/" dropped) +
    rest, and "/" when that is empty; that is the spec's table for /foo -> /xyz, /xyz/, "" and /.
    """
    prefix = rewrite.matched_prefix.rstrip("/")
    replacement = rewrite.value.rstrip("/")
    if not replacement:
        if not prefix:
            return None, None
        return None, _regex_rewrite(rewrite_regex_for_prefix(prefix), "/")
    if not prefix:  # the route matched prefix "/" itself: keep the slash after the replacement
        return replacement + "/", None
    return replacement, None


def _route_action(action: Forward) -> route_components_pb2.RouteAction:
    result = route_components_pb2.RouteAction()
    if action.single_cluster:
        result.cluster = action.backends[0].cluster
    else:
        for backend in action.backends:
            weight = route_components_pb2.WeightedCluster.ClusterWeight(name=backend.cluster)
            weight.weight.CopyFrom(wrappers_pb2.UInt32Value(value=backend.weight))
            _apply_headers(weight, backend.request_headers, backend.response_headers)
            result.weighted_clusters.clusters.append(weight)
    if action.rewrite_hostname is not None:
        result.host_rewrite_literal = action.rewrite_hostname
    rewrite = action.rewrite_path
    if rewrite is not None:
        if rewrite.kind == "ReplaceFullPath":
            result.regex_rewrite.CopyFrom(_regex_rewrite("^/.*$", rewrite.value))
        else:
            prefix, regex = _prefix_rewrite(rewrite)
            if prefix is not None:
                result.prefix_rewrite = prefix
            if regex is not None:
                result.regex_rewrite.CopyFrom(regex)
    return result


def _redirect_action(action: Redirect) -> route_components_pb2.RedirectAction:
    result = route_components_pb2.RedirectAction(response_code=_REDIRECT_CODES[action.status_code])
    if action.scheme is not None:
        result.scheme_redirect = action.scheme
    if action.hostname is not None:
        result.host_redirect = action.hostname
    if action.port is not None:
        result.port_redirect = action.port
    if action.path is not None:
        if action.path.kind == "ReplaceFullPath":
            result.path_redirect = action.path.value
        else:
            prefix, regex = _prefix_rewrite(action.path)
            if prefix is not None:
                result.prefix_rewrite = prefix
            if regex is not None:
                result.regex_rewrite.CopyFrom(regex)
    return result


# --------------------------------------------------------------------------- clusters, secrets


def _cluster(item: Cluster, options: TranslateOptions) -> cluster_pb2.Cluster:
    """EDS cluster; a BackendTrafficPolicy's settings replace the defaults (LEAST_REQUEST, the
    options' connect timeout), as in Envoy Gateway."""
    timeout = duration_pb2.Duration()
    connect_timeout = item.settings.connect_timeout
    timeout.FromTimedelta(options.connect_timeout if connect_timeout is None else connect_timeout)
    return cluster_pb2.Cluster(
        name=item.name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=_ads(options), service_name=item.name
        ),
        connect_timeout=timeout,
        lb_policy=_LB_POLICIES[item.settings.load_balancer or "LeastRequest"],
    )


def _load_assignment(item: Cluster) -> endpoint_pb2.ClusterLoadAssignment:
    result = endpoint_pb2.ClusterLoadAssignment(cluster_name=item.name)
    if item.endpoints:
        result.endpoints.append(
            endpoint_components_pb2.LocalityLbEndpoints(
                lb_endpoints=[
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=_socket_address(endpoint.address, endpoint.port)
                        )
                    )
                    for endpoint in item.endpoints
                ]
            )
        )
    return result


def _secret(item: TLSCertificate) -> secret_pb2.Secret:
    return secret_pb2.Secret(
        name=item.name,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=item.certificate_chain),
            private_key=base_pb2.DataSource(inline_bytes=item.private_key),
        ),
    )
