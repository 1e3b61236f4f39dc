"""Stage 1, rule planning: what each HTTPRoute rule becomes, independent of where it lands.

Rules of this module:

- Rules that cannot be implemented (unsupported filter or field, an RE2-invalid regex, a header
  modifier Envoy refuses) carry a `problem` and are dropped from the IR (the route status says
  so, see `attachment`).
- Backends: non-Service kinds are InvalidKind; cross-namespace without a ReferenceGrant is
  RefNotPermitted; a missing Service or port is BackendNotFound. Invalid backends keep their
  weight share, which answers 500; a rule without traffic-carrying valid backends answers 500.
- A redirect depends on the listener and the virtual host it lands on, so it is resolved per
  virtual host (`redirect`), not here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

from sut.gatewayapi import (
    CORE_GROUP,
    GATEWAY_GROUP,
    BackendRef,
    HeaderModifier,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteRule,
    Listener,
    ObjectKey,
    Reason,
    Resources,
)
from sut.translate.ir import (
    Cluster,
    DirectResponse,
    Forward,
    HeaderMutation,
    PathRewrite,
    Redirect,
    RouteAction,
    WeightedBackend,
)
from sut.translate.options import TranslateOptions
from sut.translate.regex import check_regex, rewrite_regex_for_prefix

__all__ = ["RoutePlan", "RulePlan", "plan_route", "redirect"]

_SUPPORTED_RULE_FILTERS = (
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
)
_SUPPORTED_BACKEND_FILTERS = ("RequestHeaderModifier", "ResponseHeaderModifier")


@attrs.frozen
class RulePlan:
    """Everything about one rule that does not depend on the listener it lands on."""

    index: int
    rule: HTTPRouteRule
    problem: str | None
    action: RouteAction | None  # Forward or DirectResponse; None for a redirect
    request_headers: HeaderMutation
    response_headers: HeaderMutation
    clusters: tuple[Cluster, ...]


def _mutation(modifier: HeaderModifier | None) -> HeaderMutation:
    if modifier is None:
        return HeaderMutation()
    return HeaderMutation(
        set=tuple((header.name, header.value) for header in modifier.set),
        add=tuple((header.name, header.value) for header in modifier.add),
        remove=tuple(modifier.remove),
    )


def _modifier_problem(modifier: HeaderModifier | None) -> str | None:
    if modifier is None:
        return None
    names = [h.name.lower() for h in (*modifier.set, *modifier.add)] + [
        name.lower() for name in modifier.remove
    ]
    if "host" in names:
        return "header modifiers cannot change the Host header (Envoy refuses it); use URLRewrite"
    if len(names) != len(set(names)):
        return "a header modifier names one header in more than one action"
    return None


def _filter_of(filters: Iterable[HTTPRouteFilter], kind: str) -> HTTPRouteFilter | None:
    for item in filters:
        if item.type == kind:
            return item
    return None


def _path_rewrite_problem(rewrite: PathRewrite | None, options: TranslateOptions) -> str | None:
    if rewrite is None or rewrite.kind != "ReplacePrefixMatch":
        return None
    if rewrite.value.rstrip("/") or not rewrite.matched_prefix.rstrip("/"):
        return None
    verdict = check_regex(
        rewrite_regex_for_prefix(rewrite.matched_prefix.rstrip("/")),
        options.max_regex_program_size,
    )
    if not verdict.ok:
        return f"ReplacePrefixMatch cannot be expressed for this prefix: {verdict.error}"
    return None


def _path_rewrite(rule: HTTPRouteRule, modifier_kind: str, value: str) -> PathRewrite:
    prefix = rule.matches[0].path.value if modifier_kind == "ReplacePrefixMatch" else "/"
    return PathRewrite(kind=modifier_kind, value=value, matched_prefix=prefix)


def _rule_problem(rule: HTTPRouteRule, options: TranslateOptions) -> str | None:
    if rule.unsupported_fields:
        return f"rule fields not supported: {', '.join(rule.unsupported_fields)}"
    for item in rule.filters:
        if item.type not in _SUPPORTED_RULE_FILTERS:
            return f"filter type {item.type} is not supported"
        problem = _modifier_problem(item.request_header_modifier) or _modifier_problem(
            item.response_header_modifier
        )
        if problem:
            return problem
    for ref in rule.backend_refs:
        for item in ref.filters:
            if item.type not in _SUPPORTED_BACKEND_FILTERS:
                return f"filter type {item.type} is not supported on a backendRef"
            problem = _modifier_problem(item.request_header_modifier) or _modifier_problem(
                item.response_header_modifier
            )
            if problem:
                return problem
    for index, match in enumerate(rule.matches):
        checks: list[tuple[str, str]] = []
        if match.path.type == "RegularExpression":
            checks.append(("path", match.path.value))
        checks += [
            (f"header {h.name}", h.value) for h in match.headers if h.type == "RegularExpression"
        ]
        checks += [
            (f"query param {q.name}", q.value)
            for q in match.query_params
            if q.type == "RegularExpression"
        ]
        for what, pattern in checks:
            verdict = check_regex(pattern, options.max_regex_program_size)
            if not verdict.ok:
                return f"match {index} {what} regex {pattern!r}: {verdict.error}"
    for item in rule.filters:
        modifier = None
        if item.request_redirect is not None:
            modifier = item.request_redirect.path
        if item.url_rewrite is not None:
            modifier = item.url_rewrite.path
        if modifier is not None:
            problem = _path_rewrite_problem(
                _path_rewrite(rule, modifier.type, modifier.value), options
            )
            if problem:
                return problem
    return None


@attrs.frozen
class _BackendVerdict:
    ref: BackendRef
    namespace: str
    problem: tuple[str, str] | None  # (reason, message)


def _judge_backend(route: HTTPRoute, ref: BackendRef, resources: Resources) -> _BackendVerdict:
    namespace = ref.namespace or route.metadata.namespace
    where = f"{ref.group or 'core'}/{ref.kind} {namespace}/{ref.name}"
    if not ref.is_service:
        return _BackendVerdict(ref, namespace, (Reason.INVALID_KIND, f"{where}: unsupported kind"))
    if not resources.reference_permitted(
        from_group=GATEWAY_GROUP,
        from_kind="HTTPRoute",
        from_namespace=route.metadata.namespace,
        to_group=CORE_GROUP,
        to_kind="Service",
        to_namespace=namespace,
        to_name=ref.name,
    ):
        return _BackendVerdict(
            ref,
            namespace,
            (Reason.REF_NOT_PERMITTED, f"{where}: not permitted by any ReferenceGrant"),
        )
    service = resources.service(namespace, ref.name)
    if service is None:
        return _BackendVerdict(ref, namespace, (Reason.BACKEND_NOT_FOUND, f"{where}: not found"))
    assert ref.port is not None
    if service.port(ref.port) is None:
        return _BackendVerdict(
            ref, namespace, (Reason.BACKEND_NOT_FOUND, f"{where}: no TCP port {ref.port}")
        )
    return _BackendVerdict(ref, namespace, None)


def _plan_rule(  # noqa: PLR0917 - one call site, every argument is distinct
    route: HTTPRoute,
    index: int,
    rule: HTTPRouteRule,
    verdicts: Sequence[_BackendVerdict],
    resources: Resources,
    options: TranslateOptions,
) -> RulePlan:
    problem = _rule_problem(rule, options)
    request = _filter_of(rule.filters, "RequestHeaderModifier")
    response = _filter_of(rule.filters, "ResponseHeaderModifier")
    request_headers = _mutation(request.request_header_modifier if request else None)
    response_headers = _mutation(response.response_header_modifier if response else None)
    if problem is not None or _filter_of(rule.filters, "RequestRedirect") is not None:
        return RulePlan(index, rule, problem, None, request_headers, response_headers, ())
    rule_cluster = f"httproute/{route.metadata.namespace}/{route.metadata.name}/rule/{index}"
    carrying = [(j, v) for j, v in enumerate(verdicts) if v.problem is None and v.ref.weight > 0]
    invalid_weight = sum(v.ref.weight for v in verdicts if v.problem is not None)
    if not carrying:
        return RulePlan(
            index, rule, None, DirectResponse(500), request_headers, response_headers, ()
        )
    single = len(carrying) == 1 and not carrying[0][1].ref.filters
    backends: list[WeightedBackend] = []
    clusters: list[Cluster] = []
    named: set[str] = set()
    for j, verdict in carrying:
        ref = verdict.ref
        assert ref.port is not None
        # A Cluster is named by where it sends traffic, not by its place in the rule: a rule
        # that moves to another Service gets another Cluster, so while the proxy still routes
        # by the old rule, the old name still leads to the old Service (make-before-break);
        # reusing the name would send old matches to new backends for a moment.
        name = f"{rule_cluster}/backend/{verdict.namespace}/{ref.name}/{ref.port}"
        if name in named:
            name = f"{name}/{j}"
        named.add(name)
        clusters.append(
            Cluster(
                name=name,
                service=ObjectKey(verdict.namespace, ref.name),
                service_port=ref.port,
                endpoints=resources.service_endpoints(verdict.namespace, ref.name, ref.port),
            )
        )
        backend_request = _filter_of(ref.filters, "RequestHeaderModifier")
        backend_response = _filter_of(ref.filters, "ResponseHeaderModifier")
        backends.append(
            WeightedBackend(
                cluster=name,
                weight=ref.weight,
                request_headers=_mutation(
                    backend_request.request_header_modifier if backend_request else None
                ),
                response_headers=_mutation(
                    backend_response.response_header_modifier if backend_response else None
                ),
            )
        )
    rewrite = _filter_of(rule.filters, "URLRewrite")
    rewrite_path = None
    rewrite_hostname = None
    if rewrite is not None and rewrite.url_rewrite is not None:
        rewrite_hostname = rewrite.url_rewrite.hostname
        if rewrite.url_rewrite.path is not None:
            modifier = rewrite.url_rewrite.path
            rewrite_path = _path_rewrite(rule, modifier.type, modifier.value)
    action = Forward(
        backends=tuple(backends),
        invalid_weight=invalid_weight,
        rewrite_hostname=rewrite_hostname,
        rewrite_path=rewrite_path,
        single_cluster=single,
    )
    return RulePlan(index, rule, None, action, request_headers, response_headers, tuple(clusters))


@attrs.frozen
class RoutePlan:
    """The plans of a route's rules, and the first problem among its backendRefs."""

    rules: tuple[RulePlan, ...]
    refs_problem: tuple[str, str] | None  # (reason, message) for ResolvedRefs=False


def plan_route(route: HTTPRoute, resources: Resources, options: TranslateOptions) -> RoutePlan:
    verdicts_by_rule = [
        [_judge_backend(route, ref, resources) for ref in rule.backend_refs] for rule in route.rules
    ]
    rules = tuple(
        _plan_rule(route, index, rule, verdicts_by_rule[index], resources, options)
        for index, rule in enumerate(route.rules)
    )
    refs_problem = next(
        (v.problem for verdicts in verdicts_by_rule for v in verdicts if v.problem), None
    )
    return RoutePlan(rules, refs_problem)


def redirect(rule: HTTPRouteRule, listener: Listener, domain: str) -> Redirect:
    """A RequestRedirect rule as it answers on `listener`, under the virtual host `domain`."""
    item = _filter_of(rule.filters, "RequestRedirect")
    assert item is not None and item.request_redirect is not None
    spec = item.request_redirect
    listener_scheme = "https" if listener.protocol == "HTTPS" else "http"
    scheme = spec.scheme or listener_scheme
    # HTTPRequestRedirectFilter.Port: the filter's port, else the scheme's well-known port when
    # a scheme is given, else the Gateway listener's port (never Envoy's own bound port).
    if spec.port is not None:
        port = spec.port
    elif spec.scheme is not None:
        port = 443 if spec.scheme == "https" else 80
    else:
        port = listener.port
    default_port = (scheme, port) in (("http", 80), ("https", 443))
    hostname = spec.hostname
    final_port: int | None = port
    if default_port:
        # "SHOULD NOT add the port" for http:80 / https:443. Envoy keeps the request's Host port
        # unless the host is rewritten, so we name the host: the filter's, or the virtual host's
        # exact domain (the request matched it). Under a wildcard domain the port stays explicit.
        if hostname is None and not domain.startswith("*"):
            hostname = domain
        if hostname is not None:
            final_port = None
    path = None
    if spec.path is not None:
        path = _path_rewrite(rule, spec.path.type, spec.path.value)
    return Redirect(
        scheme=spec.scheme,
        hostname=hostname,
        port=final_port,
        path=path,
        status_code=spec.status_code,
    )
