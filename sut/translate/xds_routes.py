"""Stage 2, routes: IR RouteConfigs -> Envoy RouteConfigurations, as Envoy Gateway spells them.

Path matches: Exact is `path`, RegularExpression `safe_regex`, PathPrefix "/" is `prefix` and any
other PathPrefix `path_separated_prefix` (whole segments). The weight share of invalid backends
is a twin route answering 500 for that runtime fraction. ReplacePrefixMatch is `prefix_rewrite`,
or a `regex_rewrite` when the replacement is "/".
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from sut.translate.ir import (
    DirectResponse,
    Forward,
    HeaderMutation,
    PathRewrite,
    Redirect,
    Route,
    RouteConfig,
    RouteMatchIR,
    StringMatch,
    VirtualHost,
)
from sut.translate.regex import rewrite_regex_for_prefix

__all__ = ["INVALID_BACKEND_ROUTE_SUFFIX", "route_configuration"]

INVALID_BACKEND_ROUTE_SUFFIX = "/invalid-backend-share"
"""Suffix of the route that answers 500 for the weight share of invalid backendRefs."""

_FRACTION_DENOMINATOR = 1_000_000
_REDIRECT_CODES = {
    301: route_components_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_components_pb2.RedirectAction.FOUND,
    303: route_components_pb2.RedirectAction.SEE_OTHER,
    307: route_components_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_components_pb2.RedirectAction.PERMANENT_REDIRECT,
}


def route_configuration(
    config: RouteConfig, *, validate_clusters: bool = True
) -> route_pb2.RouteConfiguration:
    """`validate_clusters`: over ADS, a RouteConfiguration naming a cluster Envoy does not have
    must be NACKed (and so noticed) instead of loading and answering 503 NC at request time: the
    stream sends a Cluster before any route that names it. Over separate per-type streams no
    order holds between the CDS and RDS streams (the xDS spec leaves it to ADS), so a route may
    rightly arrive before its Cluster; validating would make Envoy NACK a correct update that
    nothing sends again, so per type the route loads and answers 503 until the Cluster comes."""
    result = route_pb2.RouteConfiguration(
        name=config.name,
        ignore_port_in_host_matching=True,
        virtual_hosts=[_virtual_host(host) for host in config.virtual_hosts],
    )
    if validate_clusters:
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
